"""Task families: everything the pipeline's units need to know about one kind of task.

``workbench run`` is one graph of units (train a student, export, quantize, convert for a runtime,
evaluate on a runtime, measure a group) for every kind of task. What differs between image
classification, text classification and sentence embeddings — how a teacher is loaded, what a
student is, how it is trained, what the model's inputs are, which metric judges an artifact — lives
in one registered :class:`Family` per kind, chosen from the loaded task by :func:`family_of`. The
units never branch on a task's type or a family's name.

Every unit receives a :class:`RunContext` (small, frozen, picklable: it can be sent to another
process or machine) and reloads what it needs through it; the loads are cached per process.
The families register themselves in workbench.pipeline.families (import it before ``family_of``).

Changes (H1, issue 14): Family gained ``job_config``, ``parity_inputs`` and ``eval_fn``;
``calibration(ctx, n=None)``; ``rundir_of(ctx)`` (the run directory, per process) and
``remember(ctx, task=, teacher=)`` (the orchestrator hands over what it already loaded).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..registry import Registry

FAMILIES: Registry = Registry("task family")


@dataclass(frozen=True)
class RunContext:
    """What a unit needs to find its world again: the run directory, the recipe (as TOML text), the
    folder relative paths are resolved against, and the fingerprints of the teacher and the task
    (part of every content key). Serialisable: pickles, and ``to_json`` round-trips."""

    root: str
    recipe_toml: str
    base_dir: str | None
    teacher_sha: str
    task_fp: str
    family: str

    def to_json(self) -> dict:
        """The context as a JSON-able dict (for logs and for sending to another process)."""
        return dict(root=self.root, recipe_toml=self.recipe_toml, base_dir=self.base_dir,
                    teacher_sha=self.teacher_sha, task_fp=self.task_fp, family=self.family)


@dataclass(frozen=True)
class StudentJob:
    """One training run of one student: the twin without the teacher's signal or the KD run, for one
    data regime ("full" or "few-N") and one seed."""

    student: Any  # recipe.StudentSpec
    regime: str
    seed: int
    method: str  # "labels" (the twin) or "kd"
    generation: int = 1  # [distill] mode = "self": born-again generation (2+: taught by generation - 1)
    teacher: Any = None  # ModelRef of the trained student that teaches this job; None = the run's teacher

    @property
    def name(self) -> str:
        """Unique name of the job within a run, e.g. ``cnn-s.full.kd.s0`` (born-again: ``cnn-s.full.kd.g2.s0``)."""
        gen = f".g{self.generation}" if self.generation > 1 else ""
        return f"{self.student.name}.{self.regime}.{self.method}{gen}.s{self.seed}"


class Family(Protocol):
    """One kind of task as the pipeline sees it (see the module docstring). Implementations are
    registered in :data:`FAMILIES` under ``name``.

    Members:
      name          registry name, e.g. "image-classification", "text-classification", "sentence-embedding"
      metric        what judges an artifact: "accuracy" or "cosine" (reports label columns with it)
      twin          what the no-KD twin of a KD student is, in one phrase for the report
      accepts(task) -> bool                 this family handles the loaded task
      load_teacher(recipe, task, base_dir)  -> zoo.sources.Loaded (module + sha256); a one-line
                                             RecipeError when the teacher cannot serve this task
      inputs(task, split, n, ctx=None) -> dict[str, np.ndarray]
                                            the first ``n`` examples of ``split`` as model inputs by
                                            input name (batch-1 measurement input, parity, calibration)
      export(module, out, ctx) -> float     ONNX export of a PyTorch model with its parity check;
                                            returns the max |diff| (RecipeError beyond tolerance)
      new_student(job, ctx) -> module       an untrained student of the job's spec
      train(job, ctx, weights_out, progress) -> dict
                                            trains with THE training engine, writes the weights
                                            (safetensors or a HF folder) to ``weights_out``; returns
                                            params, n_train, steps, seconds, final_loss, val and test
                                            metric of the PyTorch model ("test_metric")
      load_student(job, ctx, weights) -> module
      evaluate(path, runtime, ctx) -> dict  the task's metric of an artifact through a runtime, on
                                            the test split: {"metric", "value", "ci95", "n", ...}
      pytorch_metric(module, ctx) -> float  the same metric of a PyTorch model (cross-runtime checks)
      calibration(ctx, n=None) -> dict | np.ndarray
                                            training examples as quantization calibration data (all of
                                            them when ``n`` is None; ``len()`` is their count)
      job_config(recipe, job) -> dict       the job's training configuration as JSON (part of its key;
                                            pure: the plan computes it without loading anything)
      parity_inputs(ctx)                    the test inputs every artifact's parity is checked on
      eval_fn(ctx)                          the metric function ``auto`` judges its candidates with
    Optional, for a family with a teacher-output cache on disk (images, text; see units.teacher_outputs):
      teacher_outputs(recipe, job) -> distill.cache.OutputsSpec | None
                                            the cache entry a training job reads (pure); None: none
      fill_teacher_outputs(ctx, job, progress) -> distill.cache.CacheEntry
                                            that entry, computed when absent (the teacher_outputs unit,
                                            and a training unit that finds it missing)
    """

    name: str
    metric: str
    twin: str
    examples: str  # what one training example is called ("images", "texts")

    def accepts(self, task) -> bool: ...

    def load_teacher(self, recipe, task, base_dir: Path | None): ...

    def inputs(self, task, split: str, n: int, ctx: RunContext | None = None) -> dict[str, np.ndarray]: ...

    def export(self, module, out: Path, ctx: RunContext) -> float: ...

    def new_student(self, job: StudentJob, ctx: RunContext): ...

    def train(self, job: StudentJob, ctx: RunContext, weights_out: Path, progress) -> dict: ...

    def load_student(self, job: StudentJob, ctx: RunContext, weights: Path): ...

    def evaluate(self, path: str, runtime: str, ctx: RunContext) -> dict: ...

    def pytorch_metric(self, module, ctx: RunContext) -> float: ...

    def calibration(self, ctx: RunContext, n: int | None = None): ...

    def job_config(self, recipe, job: StudentJob) -> dict: ...

    def parity_inputs(self, ctx: RunContext): ...

    def parity(self, module, path, ctx: RunContext, atol: float | None = None) -> float: ...

    def eval_fn(self, ctx: RunContext): ...


def family_of(task) -> Family:
    """The registered family that accepts ``task``; a one-line RecipeError naming the task kinds
    ``workbench run`` handles when none does."""
    from ..errors import RecipeError

    for name in FAMILIES.names():
        fam = FAMILIES.get(name)
        if fam.accepts(task):
            return fam
    raise RecipeError(f"workbench run has no task family for {getattr(task, 'name', task)!r}; it handles: "
                      f"{', '.join(FAMILIES.names())}")


def teacher_source(recipe) -> str:
    """The recipe's ``[teacher] source`` with its ``weights`` folded in as the ``weights=`` option."""
    source = recipe.teacher.source
    if recipe.teacher.weights:
        source += ("&" if "?" in source else "?") + f"weights={recipe.teacher.weights}"
    return source


def white_box_teacher(recipe, task, base_dir: Path | None, *, train=None, in_channels: int | None = None):
    """The recipe's teacher as a zoo.sources.LoadedModel: ``train(spec)`` when that gives one (a family's teacher
    trained once on the task and cached, for a spec it trains), else the source loaded as given; a one-line
    RecipeError for a black box (the run exports and quantizes its teacher)."""
    from ..errors import RecipeError
    from ..specs import parse_spec
    from ..zoo.sources import load_model

    source = teacher_source(recipe)
    loaded = train(parse_spec(source, "teacher model")) if train is not None else None
    if loaded is None:
        loaded = load_model(source, in_channels=in_channels, num_classes=task.num_classes, base_dir=base_dir,
                            role="teacher", task=task)
    if loaded.module is None:
        raise RecipeError(f"workbench run exports and quantizes the teacher, so it needs a PyTorch teacher; "
                          f"{recipe.teacher.source} is a black box (use `workbench distill` for black-box "
                          f"teachers)")
    return loaded


class WeightsStudent:
    """What every family's ``load_student`` is: a base class giving it. A trained student is the job's
    untrained architecture (``new_student``) with the safetensors weights at ``weights`` loaded into it."""

    def load_student(self, job: StudentJob, ctx: RunContext, weights: Path):
        """A trained student: its architecture with the weights at ``weights``."""
        from ..zoo.weights import load_weights

        model = self.new_student(job, ctx)
        load_weights(model, weights)
        return model


@dataclass(frozen=True)
class ModelRef:
    """A PyTorch model by reference, so a unit in another process can load it: the teacher
    (``job`` None) or a trained student (its job and its run-relative weights path). ``key`` is the
    model's content key (part of the key of everything made from it)."""

    name: str  # "teacher" or "<student>.kd"
    key: str
    job: StudentJob | None = None
    weights: str | None = None


# -- reloading a run's world from its context, cached per process ---------------------------------
_LOADED: dict = {}


def _cached(kind: str, key, make):
    """``make()`` once per process for (kind, key)."""
    k = (kind, key)
    if k not in _LOADED:
        _LOADED[k] = make()
    return _LOADED[k]


def recipe_of(ctx: RunContext):
    """The context's Recipe, parsed from its TOML text (validated as when it was loaded)."""
    import tomllib

    from ..recipe import recipe_from_dict

    return _cached("recipe", (ctx.recipe_toml, ctx.base_dir), lambda: recipe_from_dict(
        tomllib.loads(ctx.recipe_toml), base_dir=Path(ctx.base_dir) if ctx.base_dir else None))


def task_of(ctx: RunContext):
    """The context's task, loaded once per process; a RecipeError if its data changed since the plan
    (fingerprint mismatch: the run's keys would no longer describe what it computes)."""
    from ..errors import RecipeError
    from ..tasks import load_task

    def load():
        recipe = recipe_of(ctx)
        task = load_task(recipe.task.name, Path(ctx.base_dir) if ctx.base_dir else None, command="run",
                         builtin_options={"image_size": recipe.task.image_size})
        if task.fingerprint() != ctx.task_fp:
            raise RecipeError(f"task {recipe.task.name} changed since this run was planned (fingerprint "
                              f"{task.fingerprint()} != {ctx.task_fp}); run again to re-plan")
        return task

    return _cached("task", (ctx.recipe_toml, ctx.base_dir, ctx.task_fp), load)


def teacher_of(ctx: RunContext):
    """The context's teacher (a PyTorch module in eval mode), loaded once per process."""
    def load():
        fam = FAMILIES.get(ctx.family)
        loaded = fam.load_teacher(recipe_of(ctx), task_of(ctx), Path(ctx.base_dir) if ctx.base_dir else None)
        loaded.module.eval()
        return loaded.module

    return _cached("teacher", (ctx.recipe_toml, ctx.base_dir, ctx.teacher_sha), load)


def load_ref(ref: ModelRef, ctx: RunContext):
    """The PyTorch model ``ref`` names (eval mode), loaded once per process."""
    if ref.job is None:
        return teacher_of(ctx)
    fam = FAMILIES.get(ctx.family)

    weights = Path(ctx.root) / ref.weights

    def load():
        model = fam.load_student(ref.job, ctx, weights)
        model.eval()
        return model

    stat = weights.stat() if weights.exists() else None  # retrained weights (a damaged file) load afresh
    return _cached("student", (ctx.root, ref.key, stat and (stat.st_size, stat.st_mtime_ns)), load)


def rundir_of(ctx: RunContext):
    """The context's RunDir, opened once per process (notes go to stderr unless ``remember`` gave one)."""
    from .rundir import RunDir

    return _cached("rundir", ctx.root, lambda: RunDir(ctx.root))


def remember(ctx: RunContext, task=None, teacher=None, rundir=None) -> None:
    """Seed this process's cache with what the orchestrator already loaded for ``ctx`` (the task, the
    teacher module, its RunDir), so in-process units do not load them again."""
    if task is not None:
        _LOADED[("task", (ctx.recipe_toml, ctx.base_dir, ctx.task_fp))] = task
    if teacher is not None:
        teacher.eval()
        _LOADED[("teacher", (ctx.recipe_toml, ctx.base_dir, ctx.teacher_sha))] = teacher
    if rundir is not None:
        _LOADED[("rundir", ctx.root)] = rundir
