"""The dense-prediction family: text detection as per-pixel text masks (workbench.tasks.dense).

Teacher: ``dense:unet?width=16&depth=2`` (workbench.zoo.dense), with ``weights=FILE`` or trained once by this
family and cached (workbench.pipeline.families.dense_train), or the user's own white-box network (``py:``,
``torchscript:``, ...) checked on one page to return per-pixel logits (logit maps only, no hint, unless it has a
``forward_with_neck``). Students: ``[[students]]`` with ``arch = "dense:fcn?width=8&depth=2&hint=1.0"``
(or ``dense:unet?...``, or the torchvision backbone ``dense:mobilenet_v3_small?width_mult=..&stride=..``; ``hint`` = the weight of the neck's feature hint in the KD loss, default 0). KD: per-pixel KD on the teacher's logit maps (temperature, alpha) + cross-entropy with the
true masks + the hint; the twin: the same student on the true masks only. Every model takes ``image``
[B, 1, H, W] and returns ``logits`` [B, 2, H, W]: one input, so every runtime's exporter converts it
(ONNX, ORT mobile, ExecuTorch, LiteRT). Metric: mean per-image IoU of the text mask on the test pages with a
bootstrap CI; box F1 at IoU >= 0.5 (with its CI) is recorded beside it in every quality.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import RecipeError
from ..family import (FAMILIES, RunContext, StudentJob, WeightsStudent, recipe_of, task_of, teacher_of,
                      teacher_source)
from .dense_train import TEACHER_VERSION, fit_dense, predict, split_quality, teacher_maps, trained_teacher

_MAPS: dict = {}  # per process: (teacher sha, task fingerprint) -> the teacher's (logits, necks) of the training pages


def _quiet(progress):
    if progress is not None:
        return progress
    from ...progress import Progress

    return Progress(quiet=True)


def _student_options(spec) -> tuple[str, dict, float]:
    """(architecture, its options, hint weight) of a ``[[students]]`` table whose arch is
    ``dense:fcn?width=..&depth=..&hint=..``; a one-line RecipeError when it is anything else."""
    from ...specs import parse_spec
    from ...zoo.dense import check_options

    s = parse_spec(spec.arch, f"student {spec.name} arch")
    if s.kind != "dense":
        raise RecipeError(f"student {spec.name}: arch {spec.arch!r} is not a dense network; use arch = "
                          "\"dense:fcn?width=8&depth=2&hint=1.0\" (or dense:unet?...)")
    opts = dict(s.options)
    hint = opts.pop("hint", 0.0)
    if not isinstance(hint, (int, float)) or isinstance(hint, bool) or hint < 0:
        raise RecipeError(f"student {spec.name}: hint={hint!r} must be a number >= 0 (the feature hint's weight)")
    if "weights" in opts:
        raise RecipeError(f"student {spec.name}: a student starts untrained; drop weights= from {spec.arch}")
    return s.target, check_options(s.target, opts, f"student {spec.name}"), float(hint)


def _own_teacher(source: str, task, base_dir: Path | None, hinted: list[str]):
    """A teacher the user owns in any white-box model source (``py:FILE:Class``, ``torchscript:``, ...): loaded
    with its weights and checked on one training page to map ``image`` [1, C, H, W] to logits [1, classes, H, W].
    Without a ``forward_with_neck`` (as dense: networks have) it gives no neck, so students with ``hint`` > 0
    are refused. A black box (``onnx:``) is refused: ``workbench run`` exports and quantizes the teacher."""
    import torch

    from ...specs import parse_spec
    from ...zoo.sources import SOURCES, load_model

    kind = parse_spec(source, "teacher model").kind
    black = kind in SOURCES and SOURCES.get(kind).black_box
    loaded = None if black else load_model(source, in_channels=task.sample_shape[0], num_classes=task.num_classes,
                                           base_dir=base_dir, role="teacher", task=task)
    if loaded is None or loaded.module is None:
        raise RecipeError(f"teacher {source} is a black box; workbench run exports and quantizes the teacher, so a "
                          "dense task's teacher must be white-box: a PyTorch model (dense:unet?..., py:FILE:factory "
                          "with weights=, torchscript:FILE)")
    module = loaded.module.eval()
    x = torch.from_numpy(np.ascontiguousarray(task.x_train[:1]))
    try:
        with torch.inference_mode():
            y = module(x)
    except Exception as e:  # noqa: BLE001 - the user's network: any failure is a wrong model for this task
        raise RecipeError(f"teacher {source} failed on a page of {task.name} (input {tuple(x.shape)}): "
                          f"{type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
    want = (1, task.num_classes, *x.shape[2:])
    if not isinstance(y, torch.Tensor) or tuple(y.shape) != want:
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise RecipeError(f"teacher {source} returns {got} for a page {tuple(x.shape)}; a dense teacher returns "
                          f"per-pixel logits {want}")
    if not hasattr(module, "forward_with_neck"):
        if hinted:
            raise RecipeError(f"students {hinted} set hint > 0, but teacher {source} has no forward_with_neck "
                              "(image -> (logits, neck features)) to give the feature hint; set hint=0 or add one")
    return loaded


def dense_teacher(source: str, task, base_dir: Path | None, hinted: list[str]):
    """A dense task's teacher from its source spec: ``dense:ARCH?...`` with ``weights=`` loaded, or without them
    trained once and cached; any other white-box source is the user's own network (:func:`_own_teacher`;
    ``hinted``: the students that want its neck). A zoo.sources.LoadedModel."""
    from ...specs import parse_spec
    from ...zoo.dense import build_dense, check_options
    from ...zoo.sources import LoadedModel, file_sha256
    from ...zoo.weights import load_weights

    spec = parse_spec(source, "teacher model")
    if spec.kind != "dense":
        return _own_teacher(source, task, base_dir, hinted)
    if "weights" in spec.options:
        w = Path(str(spec.options["weights"])).expanduser()
        if not w.is_absolute() and base_dir is not None and not w.exists():
            w = base_dir / w
        if not w.is_file():
            raise RecipeError(f"teacher weights {w} not found; give a safetensors file of the {spec.target}")
        module = build_dense(spec.target, **check_options(spec.target, dict(spec.options), f"teacher {spec}"))
        load_weights(module, w)
        module.eval()
        return LoadedModel(spec=spec, module=module, sha256=file_sha256(w), weights=w, trained=True,
                           description=f"{spec.target} with weights {w.name}")
    from ...progress import Progress

    module, sha, what = trained_teacher(spec, task, Progress())
    return LoadedModel(spec=spec, module=module, sha256=sha, trained=True, description=what)


class DenseText(WeightsStudent):
    """Dense text detection (per-pixel masks), U-Net teacher -> FCN students (see the module docstring)."""

    name = "dense-text"
    metric = "mean IoU"
    twin = "the same student trained on the true masks only (per-pixel cross-entropy, no teacher maps), same budget and seeds"
    examples = "pages"
    measure_input = "one test page per call (image [1, 1, H, W] -> logits [1, 2, H, W])"

    def accepts(self, task) -> bool:
        """A ``dense:`` task (workbench.tasks.dense.DenseTask)."""
        from ...tasks.dense import DenseTask

        return isinstance(task, DenseTask)

    def check_recipe(self, recipe) -> None:
        """What a dense run cannot do, refused before any work: few-label regimes, bad student tables."""
        bad = [r for r in recipe.distill.regimes if r != "full"]
        if bad:
            raise RecipeError(f"[distill] regimes {bad}: dense tasks train on every training page; use "
                              "regimes = [\"full\"] (shrink the data with dense:pages?n_train=N instead)")
        for st in recipe.students:
            _student_options(st)

    def load_teacher(self, recipe, task, base_dir: Path | None):
        """The recipe's teacher (see :func:`dense_teacher`), after the recipe's own checks."""
        self.check_recipe(recipe)
        return dense_teacher(teacher_source(recipe), task, base_dir, [st.name for st in recipe.students if _student_options(st)[2] > 0])

    def maps(self, ctx: RunContext):
        """The teacher's logit maps and necks of every training page (once per process)."""
        k = (ctx.teacher_sha, ctx.task_fp)
        if k not in _MAPS:
            _MAPS[k] = teacher_maps(teacher_of(ctx), task_of(ctx))
        return _MAPS[k]

    # -- inputs --------------------------------------------------------------------------------------
    def inputs(self, task, split: str, n: int, ctx: RunContext | None = None) -> dict[str, np.ndarray]:
        """The first ``n`` images of ``split`` by input name."""
        return {task.input_name: np.ascontiguousarray(task.split(split)[0][:n])}

    def parity_inputs(self, ctx: RunContext) -> np.ndarray:
        """The test images every artifact's parity with its PyTorch source is checked on."""
        return task_of(ctx).x_test[: max(2, recipe_of(ctx).export.parity_samples)]

    def calibration(self, ctx: RunContext, n: int | None = None) -> np.ndarray:
        """Training pages as quantization calibration data (all, or the first ``n``)."""
        x = task_of(ctx).x_train
        return x if n is None else x[:n]

    # -- students ------------------------------------------------------------------------------------
    def fit_config(self, recipe, job: StudentJob):
        """The engine's FitConfig of ``job``: the [distill] steps, batch, lr, weight decay and its seed."""
        from ...distill.engine import FitConfig

        d = recipe.distill
        return FitConfig(steps=d.steps, batch_size=d.batch_size, lr=d.lr, weight_decay=d.weight_decay, seed=job.seed)

    def job_config(self, recipe, job: StudentJob) -> dict:
        """The training configuration of ``job`` as JSON (part of its content key)."""
        d = recipe.distill
        _, _, hint = _student_options(job.student)
        loss = ({"kind": "pixel-kd+ce+hint", "temperature": d.temperature, "alpha": d.alpha, "hint": hint}
                if job.method == "kd" else {"kind": "ce"})
        return {**self.fit_config(recipe, job).to_json(), "weights_kept": "final", "loss": loss,
                "version": TEACHER_VERSION}

    def build_student(self, spec, task, base_dir: Path | None):
        """An untrained student of the recipe's StudentSpec ``spec``."""
        from ...zoo.dense import build_dense

        arch, opts, _ = _student_options(spec)
        return build_dense(arch, in_channels=task.sample_shape[0], classes=task.num_classes, **opts)

    def new_student(self, job: StudentJob, ctx: RunContext):
        """An untrained student of the job's spec."""
        return self.build_student(job.student, task_of(ctx), None)


    def train(self, job: StudentJob, ctx: RunContext, weights_out: Path, progress=None) -> dict:
        """Train ``job`` (KD or the twin, fixed seed), write its weights (safetensors); the result row."""
        import torch

        from ...zoo.models import count_params
        from ...zoo.weights import save_weights

        progress = _quiet(progress)
        recipe, task = recipe_of(ctx), task_of(ctx)
        cfg = self.fit_config(recipe, job)
        _, _, hint = _student_options(job.student)
        torch.manual_seed(cfg.seed)
        model = self.new_student(job, ctx)
        maps = self.maps(ctx) if job.method == "kd" else None
        with progress.bar(f"training {job.name}", cfg.steps) as update:
            res = fit_dense(model, task, cfg, teacher=maps, temperature=recipe.distill.temperature,
                            alpha=recipe.distill.alpha, hint=hint, on_step=lambda s, loss: update(s, f"loss {loss:.3f}"))
        val, test = split_quality(model, task, "val"), split_quality(model, task, "test")
        out = {"job": job.name, "student": job.student.name, "regime": job.regime, "seed": job.seed,
               "method": job.method, "params": count_params(model), "n_train": int(len(task.x_train)),
               "steps": cfg.steps, "seconds": round(res.seconds, 2), "final_loss": res.final_loss,
               "val_mean_iou": val["value"], "test_mean_iou": test["value"], "test_box_f1": test["box_f1"],
               "test_accuracy_source": "PyTorch model on the test pages", "config": self.job_config(recipe, job)}
        out["test_metric"] = out["test_mean_iou"]
        save_weights(model, weights_out)
        return out

    # -- export, parity, evaluation --------------------------------------------------------------------
    def export(self, module, out: Path, ctx: RunContext) -> float:
        """ONNX export (batch-1 sample, dynamic batch) with parity on the parity test pages; the max |diff|."""
        from ...export import export_onnx

        recipe, task = recipe_of(ctx), task_of(ctx)
        ex = recipe.export
        return export_onnx(module, task.x_test[:1], out, task.input_name, self.parity_inputs(ctx),
                           atol=ex.parity_atol, rtol=ex.parity_rtol)

    def parity(self, module, path, ctx: RunContext, atol: float | None = None) -> float:
        """Max |ONNX artifact - PyTorch| of the logit maps on parity_inputs (ParityError beyond ``atol``)."""
        from ...export import onnx_parity

        return onnx_parity(module, path, self.parity_inputs(ctx), task_of(ctx).input_name, atol=atol)

    def evaluate(self, path: str, runtime: str, ctx: RunContext) -> dict:
        """Mean IoU (and box F1) of the artifact at ``path`` through ``runtime`` on the test pages."""
        from ...evaluate import run_artifact
        from ...tasks.dense_metrics import dense_quality

        task = task_of(ctx)
        return dense_quality(run_artifact(path, runtime, task.x_test, task.input_name), task.mask_test, task.boxes_test)

    def eval_fn(self, ctx: RunContext):
        """The metric ``auto`` judges candidates with: (mean IoU through ORT, per-page IoU)."""
        from ...evaluate import run_artifact
        from ...tasks.dense_metrics import mask_iou

        task = task_of(ctx)

        def fn(path):
            ious = mask_iou(run_artifact(str(path), "ort", task.x_test, task.input_name).argmax(1), task.mask_test)
            return float(ious.mean()), ious

        fn.metric = self.metric
        return fn

    def pytorch_metric(self, module, ctx: RunContext) -> float:
        """Test mean IoU of a PyTorch model."""
        task = task_of(ctx)
        from ...tasks.dense_metrics import mask_iou

        return float(mask_iou(predict(module, task.x_test).argmax(1), task.mask_test).mean())


FAMILIES.register(DenseText.name, DenseText())
