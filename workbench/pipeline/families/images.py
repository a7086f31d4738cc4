"""The image-classification family: array inputs (images or feature vectors) with class labels, a
PyTorch teacher loaded from any model source, students from a project architecture or any model
source, trained from labels only (the twin) or with Hinton KD on the teacher's cached logits of every
shifted view of the training images; judged by accuracy on the test split.

Everything image-specific of ``workbench run`` lives here; the units (workbench.pipeline.units) call
it through the :class:`~workbench.pipeline.family.Family` protocol.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..family import (FAMILIES, RunContext, StudentJob, WeightsStudent, load_ref, recipe_of, rundir_of, task_of,
                      teacher_of, white_box_teacher)

_VIEWS: dict = {}  # per process: (task fingerprint, shift) -> ShiftViews
_LOGITS: dict = {}  # per process: (run root, cache key) -> teacher logits


def _base(ctx: RunContext) -> Path | None:
    return Path(ctx.base_dir) if ctx.base_dir else None


def _quiet(progress):
    if progress is not None:
        return progress
    from ...progress import Progress

    return Progress(quiet=True)


class ImageClassification(WeightsStudent):
    """Image (or fixed-shape array) classification with class labels: see the module docstring."""

    name = "image-classification"
    metric = "accuracy"
    twin = "the same student trained on labels only, same budget and seeds"
    examples = "images"  # what one training example is called in the study's labels
    distill_modes = ("standard", "reverse", "self")  # [distill] mode values it trains (workbench.pipeline.generations)

    def accepts(self, task) -> bool:
        """An array task with class labels (workbench.tasks.Task)."""
        from ...tasks import Task

        return isinstance(task, Task)

    def load_teacher(self, recipe, task, base_dir: Path | None):
        """The recipe's teacher (with its weights option) for this task; a one-line RecipeError when it is
        a black box (the run exports and quantizes it)."""
        return white_box_teacher(recipe, task, base_dir, in_channels=task.sample_shape[0])

    def inputs(self, task, split: str, n: int, ctx: RunContext | None = None) -> dict[str, np.ndarray]:
        """The first ``n`` examples of ``split`` ("train", "val", "test") by input name (``ctx`` unused:
        images need nothing of the run to become inputs)."""
        return {task.input_name: np.ascontiguousarray(getattr(task, f"x_{split}")[:n])}

    # -- training ---------------------------------------------------------------------------------
    def job_config(self, recipe, job: StudentJob) -> dict:
        """The training configuration of ``job`` as JSON (part of its content key)."""
        return {**_train_config(recipe, job).to_json(), "losses": _losses(recipe, job).to_json(),
                "augment_shift": recipe.distill.augment_shift, "weights_kept": "final"}

    def new_student(self, job: StudentJob, ctx: RunContext):
        """An untrained student: a project architecture with options, or any model source spec."""
        return self.build_student(job.student, task_of(ctx), _base(ctx))

    def build_student(self, spec, task, base_dir: Path | None):
        """An untrained student of the recipe's StudentSpec ``spec`` for ``task`` (also what preflight sizes
        against the teacher in reverse and self mode)."""
        c, n = task.sample_shape[0], task.num_classes
        if ":" in spec.arch:
            from ...zoo.sources import load_model

            return load_model(spec.arch, in_channels=c, num_classes=n, role="student", base_dir=base_dir).module
        from ...zoo import build_arch

        return build_arch(spec.arch, c, n, **dict(spec.options))


    def views(self, ctx: RunContext):
        """The shifted views of the training images (per process)."""
        task, recipe = task_of(ctx), recipe_of(ctx)
        k = (ctx.task_fp, recipe.distill.augment_shift)
        if k not in _VIEWS:
            import torch

            from ...distill.views import ShiftViews

            _VIEWS[k] = ShiftViews(torch.from_numpy(task.x_train), recipe.distill.augment_shift)
        return _VIEWS[k]

    def teacher_outputs(self, recipe, job: StudentJob):
        """What ``job`` reads of the run's teacher-output cache (plan time, pure): a KD job reads its teacher's
        logits of every shifted view of the training images; the labels-only twin reads nothing (None)."""
        from ...distill.cache import CACHE_VERSION, OutputsSpec

        if job.method != "kd":
            return None
        return OutputsSpec("logits", (("kind", "teacher-logits"), ("shift", recipe.distill.augment_shift),
                                      ("version", CACHE_VERSION)))

    def fill_teacher_outputs(self, ctx: RunContext, job: StudentJob, progress=None):
        """The cache entry ``job`` reads (see teacher_outputs), computed when it is absent: a CacheEntry."""
        from ...distill.cache import CacheEntry

        key, path, _, hit = self._logits(ctx, progress, job.teacher)
        return CacheEntry(key, (str(path.relative_to(ctx.root)),), hit)

    def teacher_logits(self, ctx: RunContext, progress=None, teacher=None):
        """The teacher's logits of every view of every training image, from the run's teacher-output cache
        (computed and stored there once). ``teacher``: the ModelRef of a trained student that teaches
        instead (a born-again generation): its logits are cached under its weights file's sha256."""
        return self._logits(ctx, progress, teacher)[2]

    def _logits(self, ctx: RunContext, progress, teacher):
        """(cache key, file, logits, hit) of the teacher's (or ``teacher``'s) logits; read when the file is there
        (kept per process while it is unchanged), computed and stored otherwise."""
        from ...artifact import sha256_file
        from ...distill.cache import cache_key, teacher_logits

        progress = _quiet(progress)
        recipe, task, rd = recipe_of(ctx), task_of(ctx), rundir_of(ctx)
        sha = ctx.teacher_sha if teacher is None else sha256_file(Path(ctx.root) / teacher.weights)
        key = cache_key(sha, ctx.task_fp, recipe.distill.augment_shift)
        path = Path(ctx.root) / "cache" / f"teacher-logits-{key}.npy"
        stat = path.stat() if path.exists() else None
        held = _LOGITS.get((ctx.root, key))
        hit = True
        if held is None or stat is None or held[0] != (stat.st_size, stat.st_mtime_ns):  # file changed: read again
            from ...fileio.cachefile import MISSING, read_entry

            views = self.views(ctx)
            n = views.n_views * len(task.y_train)
            logits = MISSING if stat is None else read_entry(  # the teacher is loaded only when it must run
                path, validate=lambda a: a.ndim == 3 and a.shape[:2] == (views.n_views, views.padded.shape[0]),
                notify=rd.notify, root=rd.root)
            hit = logits is not MISSING
            if not hit:
                who = "teacher-output" if teacher is None else f"{teacher.job.name} (next generation's teacher) output"
                with progress.bar(f"{who} cache ({views.n_views} views x {len(task.y_train)} images)", n) as update:
                    logits = teacher_logits(teacher_of(ctx) if teacher is None else load_ref(teacher, ctx), views,
                                            Path(ctx.root) / "cache", key, progress=lambda f: update(round(f * n)),
                                            notify=rd.notify, root=rd.root)
            after = path.stat()
            held = _LOGITS[(ctx.root, key)] = ((after.st_size, after.st_mtime_ns), logits)
        return key, path, held[1], hit

    def train(self, job: StudentJob, ctx: RunContext, weights_out: Path, progress=None) -> dict:
        """Train ``job`` (fixed seed), write its weights (safetensors) to ``weights_out``; the result row."""
        import torch

        from ...distill.classifier_train import accuracy
        from ...zoo.models import count_params
        from ...zoo.weights import save_weights

        progress = _quiet(progress)
        recipe, task = recipe_of(ctx), task_of(ctx)
        cfg = _train_config(recipe, job)
        torch.manual_seed(cfg.seed)
        model = self.new_student(job, ctx)
        per_class = None if job.regime == "full" else int(job.regime[4:])
        subset = None if per_class is None else task.labelled_subset(per_class, job.seed)
        logits = self.teacher_logits(ctx, progress, job.teacher) if job.method == "kd" else None
        with progress.bar(f"training {job.name}", cfg.steps) as update:
            # a fixed budget in steps, the final weights kept (no pick by the small validation split): both
            # twins get exactly the same budget, and the study compares them at it
            res = _fit(model, self.views(ctx), task.y_train, cfg, _losses(recipe, job), subset, logits, None,
                       lambda step, loss: update(step, f"loss {loss:.3f}"))
        out = {"job": job.name, "student": job.student.name, "regime": job.regime, "seed": job.seed,
               "method": job.method, "params": count_params(model),
               "n_train": int(len(subset) if subset is not None else len(task.y_train)),
               "steps": cfg.steps, "seconds": round(res.seconds, 2), "final_loss": res.final_loss,
               "val_accuracy": accuracy(model, task.x_val, task.y_val),
               "test_accuracy": accuracy(model, task.x_test, task.y_test),
               "test_accuracy_source": "PyTorch model on the test split", "config": self.job_config(recipe, job)}
        out["test_metric"] = out["test_accuracy"]  # the family protocol's name for the task's metric
        save_weights(model, weights_out)
        return out

    # -- export, evaluation, calibration -------------------------------------------------------------
    def export(self, module, out: Path, ctx: RunContext) -> float:
        """ONNX export of ``module`` (batch-1 sample, dynamic batch) with its parity check on the first
        [export] parity_samples test images; returns the max |diff|."""
        from ...export import export_onnx

        recipe, task = recipe_of(ctx), task_of(ctx)
        ex = recipe.export
        return export_onnx(module, task.x_test[:1], out, task.input_name, task.x_test[: ex.parity_samples],
                           atol=ex.parity_atol, rtol=ex.parity_rtol)

    def parity_inputs(self, ctx: RunContext) -> np.ndarray:
        """The test images every artifact's parity with its PyTorch source is checked on."""
        return task_of(ctx).x_test[: recipe_of(ctx).export.parity_samples]

    def parity(self, module, path, ctx: RunContext, atol: float | None = None) -> float:
        """Max |ONNX artifact - PyTorch| of the outputs on parity_inputs (ParityError beyond ``atol`` when given)."""
        from ...export import onnx_parity

        return onnx_parity(module, path, self.parity_inputs(ctx), task_of(ctx).input_name, atol=atol)

    def evaluate(self, path: str, runtime: str, ctx: RunContext) -> dict:
        """Accuracy of the artifact at ``path`` through ``runtime`` on the test split (Quality JSON)."""
        from ...evaluate import evaluate_accuracy

        task = task_of(ctx)
        return evaluate_accuracy(path, runtime, task.x_test, task.y_test, task.input_name)[0].to_json()

    def eval_fn(self, ctx: RunContext):
        """The metric ``auto`` judges its candidates with (accuracy on the test split)."""
        from ...quantize.auto import accuracy_eval

        task = task_of(ctx)
        return accuracy_eval(task.x_test, task.y_test, task.input_name)

    def pytorch_metric(self, module, ctx: RunContext) -> float:
        """Test-split accuracy of a PyTorch model."""
        from ...distill.classifier_train import accuracy

        task = task_of(ctx)
        return accuracy(module, task.x_test, task.y_test)

    def calibration(self, ctx: RunContext, n: int | None = None):
        """Training images as quantization calibration data (all of them when ``n`` is None; the method
        picks its own ``calib_samples`` evenly from them)."""
        x = task_of(ctx).x_train
        return x if n is None else x[:n]


def _train_config(recipe, job: StudentJob):
    """The engine's config of ``job``: the recipe's [distill] budget in steps for its regime, and its seed."""
    from ...distill.engine import FitConfig

    d = recipe.distill
    return FitConfig(steps=d.steps if job.regime == "full" else d.few_steps, batch_size=d.batch_size, lr=d.lr,
                     weight_decay=d.weight_decay, seed=job.seed)


def _losses(recipe, job: StudentJob):
    """The loss of ``job``: Hinton KD (the recipe's temperature and alpha) for a kd twin, labels only otherwise."""
    from ...distill.loss_config import LABELS_ONLY, LossConfig

    d = recipe.distill
    return LossConfig(alpha=d.alpha, temperature=d.temperature) if job.method == "kd" else LABELS_ONLY


def _fit(model, views, y, cfg, losses, subset, teacher_logits, val, on_step):
    """THE call to the training engine for this family: train_classifier (labels or KD) on the one engine."""
    from ...distill.classifier_train import train_classifier

    return train_classifier(model, views, y, cfg, losses=losses, subset=subset, teacher_logits=teacher_logits,
                            val=val, on_step=on_step, describe="training")


FAMILIES.register(ImageClassification.name, ImageClassification())
