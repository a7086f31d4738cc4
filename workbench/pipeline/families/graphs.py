"""The node-classification family: a GNN teacher distilled into a graph-free MLP student (GLNN).

A ``graph:`` task (workbench.tasks.graph) is one graph. The teacher is a GNN (``pyg:gcn`` / ``pyg:sage``,
or a ``py:`` factory whose module's forward takes ``(x, edge_index)``), given with weights or trained once
by this family and cached (workbench.pipeline.families.graph_train). Students are MLPs on one node's
features (``pyg:mlp?hidden=..&layers=..``): no neighbour fetching on the device. KD = GLNN's loss on the
teacher's soft labels of every node plus cross-entropy on the labelled training nodes; the twin: the same
MLP on the labelled nodes only. Metric: accuracy on the test nodes with a bootstrap CI.

No teacher-output cache on disk, so no ``teacher_outputs`` unit (workbench.pipeline.units.teacher_outputs; the
family defines no ``teacher_outputs`` / ``fill_teacher_outputs``): the soft labels are ONE forward pass of the
GNN over the whole graph, kept in memory per process (``soft_labels``), and each KD unit's process makes them
(0.45 s for pyg:gcn on a 3000-node, 24k-edge csbm graph on the loaded 2-core dev machine: small beside a KD
unit's training). A unit pays off where one teacher pass costs what a training unit does (image families: every
shifted view of the training images; text: every text through a transformer); define those two methods here
if graphs grow that large.

Models by their inputs (what the artifacts take and what the harness feeds them):
  GNN  ``x`` [N, F] float32 and ``edge_index`` [2, E] int64 of the WHOLE graph -> ``logits`` [N, C]
  MLP  ``features`` [B, F] float32 of B nodes                                     -> ``logits`` [B, C]
The measurement input (inputs.npz) holds all three: ``features`` = the test nodes' features, ``x`` and
``edge_index`` = the whole graph; so one measured call of the GNN classifies every node (the test nodes
with it) and one of an MLP classifies exactly the test nodes. A mobile runtime that converts single-input
models only (ExecuTorch, LiteRT) is skipped at preflight (the task has three inputs); ORT mobile converts both.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import RecipeError
from ...zoo.graph import takes_graph
from ..family import (FAMILIES, RunContext, StudentJob, WeightsStudent, recipe_of, task_of, teacher_of,
                      white_box_teacher)
from .graph_train import TEACHER_VERSION, fit_student, graph_logits, node_accuracy, trained_teacher

GNN_INPUTS = ("x", "edge_index")
MLP_INPUT = "features"
_SOFT: dict = {}  # per process: (teacher sha, task fingerprint) -> the teacher's logits of every node


def _quiet(progress):
    if progress is not None:
        return progress
    from ...progress import Progress

    return Progress(quiet=True)


def _session(path, runtime: str, threads: int = 1):
    from ...runtimes import get_runtime

    session = get_runtime(runtime).load(str(path), threads)
    return session, [s.name for s in session.input_specs()]


def _feeds(names, task, nodes: np.ndarray) -> dict:
    """What an artifact with inputs ``names`` is fed to classify ``nodes``: the whole graph for a GNN, the
    nodes' features for an MLP."""
    if "edge_index" in names:
        return {"x": task.x, "edge_index": task.edge_index}
    return {names[0]: np.ascontiguousarray(task.x[nodes])}


def _outputs(session, names, task, nodes: np.ndarray) -> np.ndarray:
    """Logits of ``nodes`` from an artifact's session. An MLP (one input, one node per row) goes through the
    one evaluation path (workbench.evaluate.run_session, run_artifact's batching) in batches of 512 nodes. A GNN
    does not fit it: its two inputs (``x``, ``edge_index``) are the WHOLE graph, which cannot be cut into
    batches of rows (a node's logits need its neighbours), so it is run once and the nodes' rows taken."""
    if "edge_index" in names:
        return np.asarray(session.run(_feeds(names, task, nodes))[0])[nodes]
    from ...evaluate import run_session

    return run_session(session, task.x[nodes], names[0], batch_size=512)


def export_gnn(module, task, out: Path, atol: float, rtol: float) -> float:
    """ONNX export of a GNN with inputs ``x`` [N, F], ``edge_index`` [2, E] (both axes dynamic) and output
    ``logits`` [N, C], through the TorchScript exporter (torch.onnx.export(dynamo=False): ~1 s for a
    2-layer GCN where the dynamo exporter took 6-13 s on this 2-core machine); parity on the task's graph
    through ONNX Runtime (ParityError beyond atol + rtol * |ref|). Returns the max |diff|."""
    import contextlib
    import io
    import warnings

    import torch

    from ...errors import ExportError, ParityError
    from ...export.onnx import OPSET, strip_source_locations
    from ...fileio import atomic_path

    module.eval()
    x, ei = torch.from_numpy(task.x), torch.from_numpy(task.edge_index)
    with atomic_path(out, suffix=".onnx") as tmp:
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                torch.onnx.export(module, (x, ei), str(tmp), dynamo=False, opset_version=OPSET,
                                  input_names=list(GNN_INPUTS), output_names=["logits"],
                                  dynamic_axes={"x": {0: "nodes"}, "edge_index": {1: "edges"}, "logits": {0: "nodes"}})
        except Exception as e:
            raise ExportError(f"torch.onnx.export failed for the GNN {out.name}: {str(e).strip().splitlines()[0][:300]}; "
                              "simplify the model's forward or report the unsupported operator") from None
        strip_source_locations(tmp)
        session, names = _session(tmp, "ort")
        got = np.asarray(session.run({"x": task.x, "edge_index": task.edge_index})[0]).astype(np.float64)
        with torch.inference_mode():
            ref = module(x, ei).numpy().astype(np.float64)
        diff = float(np.abs(got - ref).max())
        if np.any(np.abs(got - ref) > atol + rtol * np.abs(ref)):
            raise ParityError(f"ONNX export {out.name}", diff, atol)
    return diff


class NodeClassification(WeightsStudent):
    """Node classification on a graph, GNN teacher -> MLP student (see the module docstring)."""

    name = "node-classification"
    metric = "accuracy"
    twin = ("the same MLP trained on the labelled training nodes only (cross-entropy, no teacher soft labels), "
            "same budget and seeds")
    examples = "nodes"  # what one training example is called in the study's labels
    measure_input = ("GNN: the whole graph per call (x = all nodes' features, edge_index = all edges); "
                     "MLP: the test nodes' features per call (one batch)")

    def accepts(self, task) -> bool:
        """A ``graph:`` task (workbench.tasks.graph.GraphTask)."""
        from ...tasks.graph import GraphTask

        return isinstance(task, GraphTask)

    # -- teacher -----------------------------------------------------------------------------------------
    def check_recipe(self, recipe) -> None:
        """What a graph run cannot do, refused before any work: calibrated or ``auto`` quantization of the
        GNN (its one input is the whole graph: no per-example calibration set)."""
        from ...quantize import parse_method
        from ...quantize.auto import AUTO

        for spec in recipe.quantize.teacher:
            if spec.strip() == AUTO or parse_method(spec).needs_calibration:
                raise RecipeError(f"[quantize] teacher = {spec!r}: a GNN's input is the whole graph, so there is no "
                                  "set of examples to calibrate it on; use \"dynamic\" or \"fp16\" for the teacher "
                                  "(students take \"static\")")

    def load_teacher(self, recipe, task, base_dir: Path | None):
        """The recipe's teacher: with weights, loaded; a ``pyg:`` / ``py:`` GNN without weights is trained on
        the task once and cached (trained_teacher). A black box is refused in one line."""
        from ...progress import Progress

        self.check_recipe(recipe)

        def train(spec):
            return (trained_teacher(spec, task, base_dir, Progress())
                    if "weights" not in spec.options and spec.kind in ("pyg", "py") else None)

        return white_box_teacher(recipe, task, base_dir, train=train)

    def soft_labels(self, ctx: RunContext) -> np.ndarray:
        """The teacher's logits of every node (once per process)."""
        k = (ctx.teacher_sha, ctx.task_fp)
        if k not in _SOFT:
            _SOFT[k] = graph_logits(teacher_of(ctx), task_of(ctx))
        return _SOFT[k]

    # -- inputs ------------------------------------------------------------------------------------------
    def inputs(self, task, split: str, n: int, ctx: RunContext | None = None) -> dict[str, np.ndarray]:
        """``features`` of the first ``n`` nodes of ``split`` (for one test example, the measurement input:
        the features of every test node, see the module docstring), then the whole graph (``x``,
        ``edge_index``) the GNN reads."""
        idx = task.split_idx(split)
        nodes = idx if (split == "test" and n == 1) else idx[:n]
        return {MLP_INPUT: np.ascontiguousarray(task.x[nodes]), "x": task.x, "edge_index": task.edge_index}

    def parity_inputs(self, ctx: RunContext) -> dict[str, np.ndarray]:
        """The features of the first [export] parity_samples test nodes and the whole graph."""
        return self.inputs(task_of(ctx), "test", max(2, recipe_of(ctx).export.parity_samples), ctx)

    def calibration(self, ctx: RunContext, n: int | None = None) -> np.ndarray:
        """Node features as static-quantization calibration data for the MLPs: every node's (no labels are
        used), or ``n`` evenly spaced nodes."""
        x = task_of(ctx).x
        if n is None or n >= len(x):
            return x
        return x[np.linspace(0, len(x) - 1, n).round().astype(int)]

    # -- students ----------------------------------------------------------------------------------------
    def job_config(self, recipe, job: StudentJob) -> dict:
        """The training configuration of ``job`` as JSON (part of its content key)."""
        d = recipe.distill
        return {**self.fit_config(recipe, job).to_json(), "weights_kept": "final",
                "loss": ({"kind": "glnn", "temperature": d.temperature, "alpha": d.alpha, "kd_nodes": "all",
                          "ce_nodes": "labelled"} if job.method == "kd" else {"kind": "ce", "ce_nodes": "labelled"}),
                "version": TEACHER_VERSION}

    def fit_config(self, recipe, job: StudentJob):
        """The engine's FitConfig of ``job``: the [distill] step budget of its regime, batch, lr, its seed."""
        from ...distill.engine import FitConfig

        d = recipe.distill
        return FitConfig(steps=d.steps if job.regime == "full" else d.few_steps, batch_size=d.batch_size, lr=d.lr,
                         weight_decay=d.weight_decay, seed=job.seed)

    def new_student(self, job: StudentJob, ctx: RunContext):
        """An untrained student of the job's spec; a one-line RecipeError when it reads the graph."""
        from ...zoo.sources import load_model

        task = task_of(ctx)
        if ":" not in job.student.arch:
            raise RecipeError(f"student {job.student.name}: arch {job.student.arch!r} is not a graph student; use "
                              "arch = \"pyg:mlp?hidden=64&layers=2\" (or a py: factory of a features-only module)")
        module = load_model(job.student.arch, num_classes=task.num_classes, role="student",
                            base_dir=Path(ctx.base_dir) if ctx.base_dir else None, task=task).module
        if takes_graph(module):
            raise RecipeError(f"student {job.student.name} ({job.student.arch}) reads the graph; a graph-free student "
                              "takes one node's features: use pyg:mlp")
        return module


    def train(self, job: StudentJob, ctx: RunContext, weights_out: Path, progress=None) -> dict:
        """Train ``job`` (GLNN KD or the twin, fixed seed) and write its weights (safetensors); the result row."""
        import torch

        from ...zoo.models import count_params
        from ...zoo.weights import save_weights

        progress = _quiet(progress)
        recipe, task = recipe_of(ctx), task_of(ctx)
        cfg = self.fit_config(recipe, job)
        torch.manual_seed(cfg.seed)
        model = self.new_student(job, ctx)
        labelled = task.train_idx if job.regime == "full" else task.labelled_subset(int(job.regime[4:]), job.seed)
        soft = self.soft_labels(ctx) if job.method == "kd" else None
        with progress.bar(f"training {job.name}", cfg.steps) as update:
            res = fit_student(model, task, cfg, labelled=labelled, teacher_logits=soft,
                                          temperature=recipe.distill.temperature, alpha=recipe.distill.alpha,
                                          on_step=lambda step, loss: update(step, f"loss {loss:.3f}"))
        out = {"job": job.name, "student": job.student.name, "regime": job.regime, "seed": job.seed,
               "method": job.method, "params": count_params(model), "n_train": int(len(labelled)),
               "steps": cfg.steps, "seconds": round(res.seconds, 2), "final_loss": res.final_loss,
               "val_accuracy": node_accuracy(model, task, "val"),
               "test_accuracy": node_accuracy(model, task, "test"),
               "kd_nodes": task.num_nodes if job.method == "kd" else 0,
               "test_accuracy_source": "PyTorch model on the test nodes", "config": self.job_config(recipe, job)}
        out["test_metric"] = out["test_accuracy"]
        save_weights(model, weights_out)
        return out

    # -- export, parity, evaluation ----------------------------------------------------------------------
    def export(self, module, out: Path, ctx: RunContext) -> float:
        """ONNX export: a GNN with (x, edge_index) of the whole graph (:func:`export_gnn`), an MLP with a
        dynamic batch of node ``features``; parity checked; returns the max |diff|."""
        from ...export import export_onnx

        recipe, task = recipe_of(ctx), task_of(ctx)
        ex = recipe.export
        if takes_graph(module):
            return export_gnn(module, task, out, ex.parity_atol, ex.parity_rtol)
        feats = task.x[task.test_idx]
        return export_onnx(module, feats[:1], out, MLP_INPUT, feats[: max(2, ex.parity_samples)],
                           atol=ex.parity_atol, rtol=ex.parity_rtol)

    def parity(self, module, path, ctx: RunContext, atol: float | None = None) -> float:
        """Max |artifact (ORT) - PyTorch| of the logits: a GNN's on every node, an MLP's on the parity test
        nodes (ParityError beyond ``atol`` when given)."""
        import torch

        from ...errors import ParityError

        task = task_of(ctx)
        session, names = _session(path, "ort")
        nodes = task.test_idx[: max(2, recipe_of(ctx).export.parity_samples)]
        feeds = _feeds(names, task, nodes)
        got = np.asarray(session.run(feeds)[0]).astype(np.float64)
        with torch.inference_mode():
            ref = module(*(torch.from_numpy(feeds[k]) for k in names)).numpy().astype(np.float64)
        diff = float(np.abs(got - ref).max())
        if atol is not None and diff > atol:
            raise ParityError(f"{Path(path).name} vs its PyTorch model", diff, atol)
        return diff

    def evaluate(self, path: str, runtime: str, ctx: RunContext) -> dict:
        """Accuracy of the artifact at ``path`` through ``runtime`` on the test nodes, with a bootstrap CI."""
        from ...evaluate import Quality, bootstrap_mean_ci

        task = task_of(ctx)
        session, names = _session(path, runtime)
        logits = _outputs(session, names, task, task.test_idx)
        correct = (logits.argmax(1) == task.y_test).astype(np.float64)
        return Quality("accuracy", float(correct.mean()), bootstrap_mean_ci(correct), int(len(correct))).to_json()

    def eval_fn(self, ctx: RunContext):
        """The metric ``auto`` judges an MLP's candidates with (accuracy on the test nodes' features)."""
        from ...quantize.auto import accuracy_eval

        task = task_of(ctx)
        return accuracy_eval(task.x[task.test_idx], task.y_test, MLP_INPUT)

    def pytorch_metric(self, module, ctx: RunContext) -> float:
        """Test-node accuracy of a PyTorch model (GNN or MLP)."""
        return node_accuracy(module, task_of(ctx), "test")


FAMILIES.register(NodeClassification.name, NodeClassification())
