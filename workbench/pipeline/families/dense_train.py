"""Training for the dense-prediction family (workbench.pipeline.families.dense), on THE engine
(workbench.distill.engine.fit): the U-Net teacher and the FCN students.

- Teacher: a ``dense:unet?...`` given without ``weights=`` is trained once on the task (per-pixel
  cross-entropy, :func:`teacher_fit`; ``steps=N`` in the spec sets its step budget, the best validation mean-IoU pass kept) and cached under
  ``$WORKBENCH_CACHE/dense-teachers`` (default ``~/.cache/workbench``), keyed by the spec, the task's
  fingerprint, the budget and TEACHER_VERSION.
- Students: KD = alpha * per-pixel KD on the teacher's logit maps + (1 - alpha) * cross-entropy with the
  true masks + hint * MSE(1x1 adapter(student neck), teacher neck) (workbench.distill.dense_loss); the
  twin: cross-entropy alone. Teacher maps and necks of every training page are computed once per process.
  Final weights kept (a fixed budget, as the other families' students).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ...distill.device import torch_threads
from ...errors import RecipeError

TEACHER_VERSION = 2  # 2: BatchNorm in every conv block; bump when the teacher's training changes (part of its cache key)
TRAIN_THREADS = 1  # PyTorch threads while training (small nets on a shared 2-core machine)


TEACHER_STEPS = 600


def teacher_fit(steps: int = TEACHER_STEPS):
    """The teacher's budget: ``steps`` (default 600) steps of 32 pages, AdamW lr 3e-3, weight decay 1e-4, seed 0."""
    from ...distill.engine import FitConfig

    return FitConfig(steps=steps, batch_size=32, lr=3e-3, weight_decay=1e-4, seed=0)


def teacher_cache_dir() -> Path:
    """Where trained dense teachers are kept: ``$WORKBENCH_CACHE/dense-teachers`` (read at call time)."""
    return Path(os.environ.get("WORKBENCH_CACHE", "~/.cache/workbench")).expanduser() / "dense-teachers"


def predict(model, x: np.ndarray, batch: int = 64) -> np.ndarray:
    """Logit maps [N, 2, H, W] of a PyTorch model on images ``x`` (eval mode, no grad)."""
    import torch

    model.eval()
    with torch.inference_mode():
        return np.concatenate([model(torch.from_numpy(x[s:s + batch])).numpy() for s in range(0, len(x), batch)])


def split_quality(model, task, split: str) -> dict:
    """The task's quality (mean IoU, box F1) of a PyTorch model on ``split``."""
    from ...tasks.dense_metrics import dense_quality

    x, m, b = task.split(split)
    return dense_quality(predict(model, x), m, b)


def fit_dense(model, task, cfg, *, teacher=None, temperature: float = 1.0, alpha: float = 0.5, hint: float = 0.0,
              evaluate=None, on_step=None):
    """Train ``model`` on the task's training pages with the engine: cross-entropy alone (``teacher`` None:
    the twin, or the teacher itself), or the KD loss with the teacher's maps (``teacher`` = (logits [N, 2, H, W],
    necks [N, C, h, w]) numpy arrays) and a feature hint when ``hint`` > 0 (a 1x1 adapter trained with it)."""
    import torch

    from ...distill.dense_loss import dense_loss
    from ...distill.engine import fit

    x = torch.from_numpy(task.x_train)
    y = torch.from_numpy(task.mask_train.astype(np.int64))
    modules = {"student": model}
    if teacher is not None:
        t_logits, t_neck = (None if a is None else torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
                            for a in teacher)
        if hint > 0:
            modules["adapter"] = torch.nn.Conv2d(model.neck_channels, t_neck.shape[1], 1)

    def step(idx, epoch):
        i = torch.as_tensor(idx)
        model.train()
        if teacher is None:
            return dense_loss(model(x[i]), y[i])
        logits, neck = model.forward_with_neck(x[i])
        h = (modules["adapter"], neck, t_neck[i]) if hint > 0 else None
        return dense_loss(logits, y[i], teacher_logits=t_logits[i], temperature=temperature, alpha=alpha,
                          hint=h, beta=hint)

    torch.manual_seed(cfg.seed)
    with torch_threads(TRAIN_THREADS):
        return fit(modules, step, len(task.x_train), evaluate, cfg, describe="training", metric_name="val mean IoU",
                   on_step=on_step)


def teacher_maps(teacher, task, batch: int = 64) -> tuple[np.ndarray, np.ndarray | None]:
    """(logits, necks) of the teacher on every training page (eval mode, no grad); necks None for a teacher
    without ``forward_with_neck`` (a user's own network: logit maps only)."""
    import torch

    teacher.eval()
    with_neck = hasattr(teacher, "forward_with_neck")
    outs, necks = [], []
    with torch.inference_mode(), torch_threads(TRAIN_THREADS):
        for s in range(0, len(task.x_train), batch):
            x = torch.from_numpy(task.x_train[s:s + batch])
            lo, ne = teacher.forward_with_neck(x) if with_neck else (teacher(x), None)
            outs.append(lo.numpy())
            if ne is not None:
                necks.append(ne.numpy())
    return np.concatenate(outs), (np.concatenate(necks) if with_neck else None)


def trained_teacher(spec, task, progress=None):
    """A ``dense:unet`` / ``dense:fcn`` teacher without weights, trained on ``task`` once and cached (see the
    module docstring): (module, sha256 of the cached weights file, description)."""
    from ...artifact import sha256_file
    from ...fileio import write_json
    from ...zoo.dense import build_dense, check_options
    from ...zoo.weights import load_weights, save_weights

    opts = dict(spec.options)
    steps = opts.pop("steps", TEACHER_STEPS)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise RecipeError(f"teacher {spec}: steps={steps!r} must be a positive integer (the teacher's training steps)")
    cfg = teacher_fit(steps)
    opts = check_options(spec.target, opts, f"teacher {spec}")
    key = hashlib.sha256(json.dumps([spec.target, sorted(opts.items()), task.fingerprint(), cfg.to_json(),
                                     TEACHER_VERSION], default=str).encode()).hexdigest()[:20]
    path = teacher_cache_dir() / f"{spec.target}-{key}.safetensors"
    import torch

    torch.manual_seed(cfg.seed)
    module = build_dense(spec.target, **opts)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)

        def val():
            return split_quality(module, task, "val")["value"]

        if progress is not None:
            with progress.bar(f"training the teacher {spec} on {task.name} (once, cached)", cfg.steps) as update:
                res = fit_dense(module, task, cfg, evaluate=val, on_step=lambda s, loss: update(s, f"loss {loss:.3f}"))
        else:
            res = fit_dense(module, task, cfg, evaluate=val)
        save_weights(module, path)  # atomic (temp file + rename)
        write_json(path.with_suffix(".card.json"), {"teacher_spec": spec.text, "task": task.summary(),
                                                    "train_config": cfg.to_json(), "fit": res.to_json(),
                                                    "val": split_quality(module, task, "val"),
                                                    "test": split_quality(module, task, "test")})
    else:
        load_weights(module, path)
    module.eval()
    return module, sha256_file(path), f"{spec} trained by the dense family ({path.name})"
