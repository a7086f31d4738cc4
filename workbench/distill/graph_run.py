"""`workbench distill --task graph:...`: one GNN teacher into one graph-free MLP student (GLNN).

The same training as `workbench run`'s node-classification family (workbench.pipeline.families.graph_train:
KD on the teacher's soft labels over every node + cross-entropy on the labelled nodes, on the one engine),
for a single teacher, student and seed. A ``pyg:`` / ``py:`` GNN teacher without ``weights=`` is trained on
the task once and cached, as in a run. Writes student.safetensors, student.onnx (input ``features``: a batch
of node features) and card.json; the card's accuracy is the exported student's through ONNX Runtime on the
test nodes, beside the teacher's (PyTorch, whole graph).
"""
from __future__ import annotations

import time
from pathlib import Path

from ..errors import RecipeError


def load_graph_teacher(spec_text: str, task, base: Path | None, progress=None):
    """The teacher of a graph task: with ``weights=`` loaded; a ``pyg:`` / ``py:`` GNN without weights trained
    once on the task and cached (the family's trained_teacher). A black box is refused in one line."""
    from ..pipeline.families.graph_train import trained_teacher
    from ..specs import parse_spec
    from ..zoo.sources import load_model

    spec = parse_spec(spec_text, "teacher model")
    if "weights" not in spec.options and spec.kind in ("pyg", "py"):
        loaded = trained_teacher(spec, task, base, progress)
    else:
        loaded = load_model(spec_text, num_classes=task.num_classes, base_dir=base, role="teacher", task=task)
    if loaded.module is None:
        raise RecipeError(f"teacher {spec_text} is a black box: a graph student learns from a PyTorch GNN's logits "
                          "over every node; give a pyg: or py: teacher")
    return loaded


def run_graph_job(job, task, base: Path | None, progress) -> dict:
    """Distil ``job.teacher`` (a GNN) into ``job.student`` (an MLP on node features) on the graph ``task``;
    returns the card (also written to <out>/card.json)."""
    import numpy as np
    import torch

    from ..evaluate import evaluate_accuracy
    from ..export import export_onnx
    from ..fileio import write_json
    from ..pipeline.families.graph_train import fit_student, graph_logits, node_accuracy
    from ..pipeline.families.graphs import MLP_INPUT
    from ..zoo.graph import takes_graph
    from ..zoo.models import count_params
    from ..zoo.sources import load_model
    from ..zoo.weights import save_weights
    from .ddp import is_main
    from .outdir import prepare_out

    if job.hint or job.attention:
        raise RecipeError("graph students learn from the teacher's soft labels only: set --hint 0 --attention 0 "
                          "(an MLP has no layers matching a GNN's message passing)")
    torch.manual_seed(job.seed)  # the student first: a wrong student is refused before the teacher trains
    student = load_model(job.student, num_classes=task.num_classes, base_dir=base, role="student", task=task).module
    if student is None or takes_graph(student):
        raise RecipeError(f"student {job.student} must be a graph-free model of one node's features "
                          "(e.g. pyg:mlp?hidden=128&layers=2)")
    teacher = load_graph_teacher(job.teacher, task, base, progress)  # fit_student seeds its own training
    labelled = task.labelled_subset(job.few, job.seed) if job.few else task.train_idx
    cfg = job.fit_config()
    out = prepare_out(job)
    progress.info(f"distil {teacher.description} -> {job.student} on {task.name} ({len(labelled)} labelled nodes; "
                  f"KD over all {task.num_nodes} nodes, T={job.temperature}, alpha={job.alpha})")
    t0 = time.perf_counter()
    soft = graph_logits(teacher.module, task)
    with progress.bar("training the MLP student", cfg.steps or 0) as update:
        res = fit_student(student, task, cfg, labelled=labelled, teacher_logits=soft, temperature=job.temperature,
                          alpha=job.alpha, on_step=lambda step, loss: update(step, f"loss {loss:.3f}"))
    train_s = time.perf_counter() - t0
    if not is_main():
        return {}
    save_weights(student, out / "student.safetensors", metadata={"student": job.student, "teacher": job.teacher,
                                                                 "task": job.task})
    feats = np.ascontiguousarray(task.x[task.test_idx])
    diff = export_onnx(student, feats[:1], out / "student.onnx", MLP_INPUT, feats[:64])
    quality, _ = evaluate_accuracy(str(out / "student.onnx"), "ort", feats, task.y_test, MLP_INPUT)
    card = {
        "kind": "graph-distillation",
        "teacher": {"spec": job.teacher, "description": teacher.description, "sha256": teacher.sha256,
                    "params": count_params(teacher.module),
                    "test_accuracy": node_accuracy(teacher.module, task, "test")},
        "student": {"spec": job.student, "params": count_params(student), "weights": "student.safetensors",
                    "onnx": "student.onnx", "onnx_input": f"{MLP_INPUT}: a batch of node feature rows",
                    "onnx_parity_max_abs": diff},
        "task": task.summary(),
        "loss": {"kind": "glnn", "temperature": job.temperature, "alpha": job.alpha, "kd_nodes": "all",
                 "ce_nodes": int(len(labelled))},
        "fit": res.to_json(), "fit_config": cfg.to_json(), "job": job.to_json(),
        "metrics": {"test_accuracy_torch": node_accuracy(student, task, "test"),
                    "test_accuracy_onnx": quality.to_json(),
                    "test_accuracy_source": "the exported student.onnx run by ONNX Runtime on the test nodes"},
        "seconds": round(train_s, 2),
    }
    write_json(out / "card.json", card)
    card["out"] = str(out)
    return card


def summary_lines(card: dict) -> list[str]:
    """The lines `workbench distill` prints for a graph card."""
    q, t = card["metrics"]["test_accuracy_onnx"], card["teacher"]
    lo, hi = q.get("ci95") or [float("nan"), float("nan")]
    return [f"student {card['student']['spec']}: {card['student']['params']:,} params, graph-free "
            f"(teacher {t['params']:,} params, reads the whole graph)",
            f"test accuracy of student.onnx (ONNX Runtime, {q['n']} test nodes): {q['value']:.4f} "
            f"[95% CI {lo:.4f}, {hi:.4f}]; teacher {t['test_accuracy']:.4f}",
            f"trained {card['fit']['steps_run']} steps ({card['fit']['epochs_run']} passes over the nodes) "
            f"in {card['seconds']:.1f} s"]
