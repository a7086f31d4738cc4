"""Training helpers of the audio-classification family (workbench.pipeline.families.audio): the log-mel
features of a set of clips, and the ``kws:`` teacher trained once per task and cached.

The teacher: labels only on THE engine (train_classifier over the shifted log-mel views, augment shift
:data:`TEACHER_SHIFT`), :func:`teacher_fit`'s budget, the weights of the best validation pass kept; cached
under ``$WORKBENCH_CACHE/kws-teachers`` (default ``~/.cache/workbench``), keyed by the spec, the task's
fingerprint, the budget and :data:`TEACHER_VERSION`.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

TEACHER_VERSION = 1  # bump when the teacher's training changes (part of its cache key)
TEACHER_SHIFT = 2  # time / mel-band shift of the teacher's training views


def teacher_fit(n_train: int):
    """The teacher's budget for ``n_train`` training clips: 25 passes over them in steps of 32 clips, at least
    50 and at most 1,200 steps; AdamW lr 3e-3, weight decay 5e-4, cosine, seed 0."""
    from ...distill.engine import FitConfig

    steps = min(1200, max(50, -(-25 * int(n_train) // 32)))
    return FitConfig(steps=steps, batch_size=32, lr=3e-3, weight_decay=5e-4, seed=0)


def teacher_cache_dir() -> Path:
    """Where trained keyword-spotting teachers are kept: ``$WORKBENCH_CACHE/kws-teachers`` (read at call time)."""
    return Path(os.environ.get("WORKBENCH_CACHE", "~/.cache/workbench")).expanduser() / "kws-teachers"


def logmel(x: np.ndarray, batch_size: int = 256):
    """The fixed log-mel front-end (workbench.zoo.audio.LogMel) of clips ``x`` (N, samples): a torch tensor
    (N, 1, 40, frames)."""
    import torch

    from ...zoo.audio import LogMel

    front = LogMel().eval()
    with torch.inference_mode():
        parts = [front(torch.from_numpy(np.ascontiguousarray(x[s:s + batch_size]))) for s in range(0, len(x), batch_size)]
    return torch.cat(parts).clone()


def trained_teacher(spec, task, base_dir, progress=None):
    """A ``kws:`` teacher without weights, trained on ``task`` once and cached (see the module docstring): a
    zoo.sources.LoadedModel whose sha256 is the cached weights file's."""
    from ...distill.classifier_train import accuracy, train_classifier
    from ...distill.views import ShiftViews
    from ...fileio import write_json
    from ...zoo.sources import load_model
    from ...zoo.weights import save_weights

    cfg = teacher_fit(len(task.y_train))
    base = {k: v for k, v in spec.options.items() if k != "weights"}
    key = hashlib.sha256(json.dumps([spec.kind, spec.target, sorted(base.items()), task.fingerprint(), cfg.to_json(),
                                     TEACHER_SHIFT, TEACHER_VERSION], default=str).encode()).hexdigest()[:20]
    path = teacher_cache_dir() / f"{spec.target}-{key}.safetensors"
    text = f"kws:{spec.target}?" + "&".join(f"{k}={v}" for k, v in [*sorted(base.items()), ("weights", path)])
    if not path.is_file():
        import torch

        torch.manual_seed(cfg.seed)
        module = load_model(spec.text, num_classes=task.num_classes, base_dir=base_dir, role="student", task=task).module
        views = ShiftViews(logmel(task.x_train), TEACHER_SHIFT)
        desc = f"training the keyword-spotting teacher {spec} on {task.name} (once, cached)"
        if progress is not None:
            with progress.bar(desc, cfg.steps) as update:
                res = train_classifier(module, views, task.y_train, cfg, val=(task.x_val, task.y_val),
                                       on_step=lambda s, loss: update(s, f"loss {loss:.3f}"), describe=desc)
        else:
            res = train_classifier(module, views, task.y_train, cfg, val=(task.x_val, task.y_val), describe=desc)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_weights(module, path)  # atomic (temp file + rename)
        write_json(path.with_suffix(".card.json"), {
            "teacher_spec": text, "task": task.summary(), "train_config": cfg.to_json(), "augment_shift": TEACHER_SHIFT,
            "seconds": res.seconds, "final_loss": res.final_loss, "val_accuracy": accuracy(module, task.x_val, task.y_val),
            "test_accuracy": accuracy(module, task.x_test, task.y_test)})
    loaded = load_model(text, num_classes=task.num_classes, base_dir=base_dir, role="teacher", task=task)
    loaded.description += f", trained by the audio-classification family ({path.name})"
    return loaded
