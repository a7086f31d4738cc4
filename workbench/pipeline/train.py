"""`workbench train`: train a reference model from labels and write safetensors + a model card.

The task is any spec with array inputs and labels (``digits``, ``images:DIR?size=64``,
``npz:FILE``); the architecture gets its input channels / features and number of classes from
the task. The card names the teacher spec that loads the result in ``workbench distill`` and in
recipes (``zoo:resnet?weights=OUT.safetensors``).
"""
from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..artifact import sha256_file
from ..distill.engine import FitConfig
from ..errors import OutputError, RecipeError, SourceError
from ..fileio import write_json

AUTO = "auto"  # resnet for images, mlp for flat feature vectors
DEFAULT_FIT = FitConfig(steps=1200, batch_size=64, lr=3e-3, weight_decay=5e-4, seed=0)


@dataclass(frozen=True)
class TrainSpec:
    """What `workbench train` trains: a task spec, an architecture (name + options), the shift
    augmentation and the engine's training config (budget, optimiser, seed)."""

    task: str = "digits"
    arch: str = AUTO
    arch_options: tuple = ()  # sorted (key, value) pairs
    augment_shift: int = 2
    fit: FitConfig = field(default_factory=lambda: DEFAULT_FIT)


def parse_arch(text: str) -> tuple[str, tuple]:
    """``"cnn?width=16&depth=1"`` -> ("cnn", (("depth", 1), ("width", 16))); checks the name is registered."""
    from ..specs import parse_spec
    from ..zoo import ARCHS

    spec = parse_spec(text, "architecture")
    if spec.target:
        raise RecipeError(f"--arch {text!r}: give an architecture name with options, e.g. \"cnn?width=16\" "
                          f"(available: {AUTO}, {', '.join(ARCHS.names())})")
    if spec.kind != AUTO:
        ARCHS.get(spec.kind)
    elif spec.options:
        raise RecipeError(f"--arch {AUTO} takes no options; name the architecture, e.g. \"cnn?width=16\"")
    return spec.kind, tuple(sorted(spec.options.items()))


def choose_arch(arch: str, options: dict, task) -> tuple[str, dict]:
    """The architecture to train on ``task`` and its options: ``auto`` picks resnet for images and mlp
    for flat features; a conv net on flat features is refused; an MLP on images gets ``in_features``."""
    from math import prod

    from ..zoo import ARCHS

    images = len(task.sample_shape) == 3
    if arch == AUTO:
        arch = "resnet" if images else "mlp"
    kind = getattr(ARCHS.get(arch), "inputs", "any")
    if kind == "images" and not images:
        raise RecipeError(f"--arch {arch} is a convolutional net for images (C, H, W); {task.name} has flat "
                          f"features {tuple(task.sample_shape)}: use --arch mlp")
    if arch == "mlp" and len(task.sample_shape) != 1:
        options = {"in_features": prod(task.sample_shape), **options}
    return arch, options


def teacher_spec(arch: str, options: dict, out: Path) -> str:
    """The model-source spec that loads the trained weights (``workbench distill --teacher``, recipes)."""
    parts = [f"{k}={','.join(map(str, v)) if isinstance(v, (tuple, list)) else v}" for k, v in sorted(options.items())]
    return f"zoo:{arch}?" + "&".join([*parts, f"weights={out.as_posix()}"])


@dataclass(frozen=True)
class Prepared:
    """A checked training job: the loaded task and the architecture chosen for it."""

    spec: TrainSpec
    task: object
    arch: str
    options: dict
    out: Path


def prepare(spec: TrainSpec, out: str | Path, base_dir: Path | None = None) -> Prepared:
    """Check every input and load the task, writing nothing (bad input: one WorkbenchError)."""
    from ..tasks import ARRAYS, LABELS, load_task

    out = Path(out)
    if out.suffix != ".safetensors":
        raise OutputError(f"--out must end in .safetensors, got {out.name}")
    task = load_task(spec.task, base_dir, command="train", needs={ARRAYS, LABELS})
    arch, options = choose_arch(spec.arch, dict(spec.arch_options), task)
    return Prepared(spec, task, arch, options, out)


def train_reference(spec: TrainSpec, out: str | Path, on_step=None, base_dir: Path | None = None) -> dict:
    """Train ``spec.arch`` on ``spec.task`` from labels; write ``out`` (safetensors) and ``out``.card.json."""
    return fit(prepare(spec, out, base_dir), on_step)


def fit(job: Prepared, on_step=None) -> dict:
    """Train the prepared job with the engine and write its weights and card; returns the card.
    ``on_step(step, loss)`` hears the training loss about 20 times. It trains on the context's device
    (workbench.distill.device.using; the card names it) and saves the weights from the CPU."""
    return _fit(job.spec, job.task, job.arch, job.options, job.out, on_step)


def _fit(spec: TrainSpec, task, arch: str, options: dict, out: Path, on_step) -> dict:
    import torch

    from ..distill.classifier_train import accuracy, train_classifier
    from ..distill.device import current
    from ..distill.views import ShiftViews
    from ..zoo import build_arch
    from ..zoo.models import count_params
    from ..zoo.weights import save_weights

    cfg = spec.fit
    torch.manual_seed(cfg.seed)
    model = build_arch(arch, task.sample_shape[0], task.num_classes, **options)
    with torch.no_grad():
        model.eval()
        try:
            model(torch.from_numpy(task.x_train[:2]))
        except Exception as e:  # e.g. images too small for the architecture's down-sampling
            raise SourceError(f"--arch {arch} cannot run {task.name}'s inputs {tuple(task.sample_shape)}: "
                              f"{str(e).splitlines()[0][:200]}; choose another --arch or a larger image size") from None
    views = ShiftViews(torch.from_numpy(task.x_train), spec.augment_shift)
    t0 = time.perf_counter()
    result = train_classifier(model, views, task.y_train, cfg, val=(task.x_val, task.y_val), on_step=on_step,
                              describe=f"training {arch} on {spec.task}")
    test_acc = accuracy(model, task.x_test, task.y_test)
    budget = cfg.steps if cfg.steps is not None else cfg.schedule_for(len(task.y_train)).total_steps
    save_weights(model, out, metadata={"arch": arch, "options": options, "task": spec.task})
    arch_text = arch + ("?" + "&".join(f"{k}={v}" for k, v in sorted(dict(spec.arch_options).items()))
                        if spec.arch_options else "")
    card = {
        "model": out.stem,
        "file": out.name,
        "sha256": sha256_file(out),
        "architecture": {"arch": arch, "options": options, "params": count_params(model)},
        "teacher_spec": teacher_spec(arch, options, out),
        "task": {"spec": spec.task, **task.summary()},
        "recipe": {"command": f"workbench train --task {_quote(spec.task)} --arch {_quote(arch_text)} "
                              f"--seed {cfg.seed} --steps {budget} --out {out.as_posix()}",
                   "train_config": {**cfg.to_json(), "augment_shift": views.shift},
                   "optimizer": f"{cfg.optimizer}, linear warm-up then {cfg.schedule} decay",
                   "loss": "cross-entropy on labels", "kept": f"the weights of the pass with the best validation "
                                                            f"accuracy (pass {result.fit.best_epoch} of {result.fit.epochs_run})"},
        "seed": cfg.seed,
        "metrics": {"val_accuracy": result.val_accuracy, "test_accuracy": test_acc},
        "train_seconds": round(time.perf_counter() - t0, 1),
        "reproducibility": "seeded, but re-running gives close, not bit-identical, weights: multi-threaded CPU "
                           "kernels sum in varying order",
        "trained_on": {"machine": platform.machine(), "python": platform.python_version(), "torch": torch.__version__,
                       "device": current()},
    }
    write_json(out.with_suffix(".card.json"), card)
    return card


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)
