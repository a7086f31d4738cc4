"""Teacher-output cache: teacher logits for every (view, training example), computed once.

Keyed by (teacher weights sha256, task fingerprint, shift views, cache format version); stored as
a .npy file read memory-mapped, so every epoch, student, seed and later run reuses it. Any change
of a key component gives a different file name: a stale cache is never read.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..fileio import atomic_path

CACHE_VERSION = 1


def cache_key(teacher_sha256: str, task_fingerprint: str, shift: int) -> str:
    raw = f"v{CACHE_VERSION}|{teacher_sha256}|{task_fingerprint}|shift={shift}"
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def teacher_logits(teacher, views, cache_dir: Path, key: str, progress=None, batch_size: int = 512) -> np.ndarray:
    """Return logits of shape (n_views, n_examples, n_classes), computing and storing them if absent."""
    import torch

    path = Path(cache_dir) / f"teacher-logits-{key}.npy"
    if path.is_file():
        return np.load(path, mmap_mode="r")
    n = views.padded.shape[0]
    out = None
    teacher.eval()
    total = views.n_views * n
    done = 0
    with torch.inference_mode():
        for v in range(views.n_views):
            for start in range(0, n, batch_size):
                idx = torch.arange(start, min(start + batch_size, n))
                logits = teacher(views.get(idx, torch.full_like(idx, v))).numpy()
                if out is None:
                    out = np.empty((views.n_views, n, logits.shape[1]), dtype=np.float32)
                out[v, start:start + len(idx)] = logits
                done += len(idx)
                if progress:
                    progress(done / total)
    with atomic_path(path, suffix=".npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, out)
    return np.load(path, mmap_mode="r")
