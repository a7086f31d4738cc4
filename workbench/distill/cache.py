"""Teacher-output cache: teacher logits for every (view, training example), computed once.

Keyed by (teacher weights sha256, task fingerprint, shift views, cache format version, and the teacher
pass's reduced precision when it ran under autocast on a GPU: a bf16 entry is never read by an fp32 run
nor the other way round; fp32 keys are what they always were); stored as
a .npy file read memory-mapped, so every epoch, student, seed and later run reuses it. Any change
of a key component gives a different file name: a stale cache is never read. A damaged file (a
truncated .npy, a broken meta.json) is reported in one line and recomputed (workbench.fileio.cachefile).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..fileio.cachefile import MISSING, read_entry
from ..fileio import atomic_path

CACHE_VERSION = 1


@dataclass(frozen=True)
class OutputsSpec:
    """What one training job reads of the run's teacher-output cache, as the plan sees it (pure: nothing
    loaded): ``label`` names the entry in node ids (``teacher_outputs:<teacher>.<label>``) and ``parts`` (JSON-able)
    is everything besides the teacher and the task that makes its key; equal specs of one teacher = one entry,
    filled by one ``teacher_outputs`` unit (workbench.pipeline.units.teacher_outputs)."""

    label: str
    parts: tuple


@dataclass(frozen=True)
class CacheEntry:
    """One filled teacher-output cache entry: its cache key, its files (run-relative paths) and whether it
    was already there (``hit``) or computed by this call."""

    key: str
    paths: tuple[str, ...]
    hit: bool


def files_sha256(root: Path, paths) -> str:
    """One sha256 over the files ``paths`` (relative to ``root``): each file's name and sha256, in order."""
    from ..artifact import sha256_file

    h = hashlib.sha256()
    for p in paths:
        h.update(f"{p}\0{sha256_file(Path(root) / p)}\n".encode())
    return h.hexdigest()


def precision_parts() -> dict:
    """What the teacher pass's precision on the context's device adds to a cache key: nothing in fp32 (the
    CPU), {"teacher_autocast": "bfloat16"} (or float16) on CUDA (workbench.distill.device)."""
    from .device import autocast_dtype, current

    half = autocast_dtype(current())
    return {} if half is None else {"teacher_autocast": str(half).replace("torch.", "")}


def cache_key(teacher_sha256: str, task_fingerprint: str, shift: int) -> str:
    """The key of a teacher-logits file: teacher weights, task content and shift augmentation, and the teacher
    pass's precision on a GPU (any change, a new file)."""
    raw = f"v{CACHE_VERSION}|{teacher_sha256}|{task_fingerprint}|shift={shift}"
    raw += "".join(f"|{k}={v}" for k, v in precision_parts().items())
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def teacher_logits(teacher, views, cache_dir: Path, key: str, progress=None, batch_size: int = 512,
                   notify=None, root: Path | None = None) -> np.ndarray:
    """Return logits of shape (n_views, n_examples, n_classes), computing and storing them if absent or
    damaged (``notify(line)`` hears about a damaged file; its path is shown relative to ``root``).

    The teacher runs on the context's device (workbench.distill.device), under autocast on CUDA; the
    stored logits are fp32. Under torchrun rank 0 computes and writes, the other ranks then read."""
    from .ddp import main_first

    with main_first():
        return _teacher_logits(teacher, views, cache_dir, key, progress, batch_size, notify, root)


def _teacher_logits(teacher, views, cache_dir, key, progress, batch_size, notify, root) -> np.ndarray:
    import torch

    from .device import placed

    path = Path(cache_dir) / f"teacher-logits-{key}.npy"
    n = views.padded.shape[0]
    # header and size checked before the file is memory-mapped: a truncated file is recomputed
    stored = read_entry(path, validate=lambda a: a.ndim == 3 and a.shape[:2] == (views.n_views, n),
                        notify=notify, root=root)
    if stored is not MISSING:
        return stored
    out = None
    teacher.eval()
    total = views.n_views * n
    done = 0
    with placed(teacher, autocast=True), torch.inference_mode():
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


class OutputCache:
    """A generic on-disk store of teacher outputs: one folder per key holding .npy arrays (read
    memory-mapped) and a meta.json naming the key's parts.

    The key is the sha256 of the canonical JSON of everything that changes the outputs (teacher
    weights hash, data fingerprint, preprocessing, layers, ...): change any part and a new entry
    is made; an old entry is never read for new inputs. Entries are written into a temporary folder
    and renamed into place, so a killed run leaves no half-written entry.
    """

    def __init__(self, root: Path):
        self.root = Path(root)

    def key(self, **parts) -> str:
        """The entry key of ``parts`` (everything that changes the outputs), with the cache version and the
        teacher pass's precision on a GPU (:func:`precision_parts`; nothing on the CPU)."""
        import json

        raw = json.dumps({"v": CACHE_VERSION, **parts, **precision_parts()}, sort_keys=True, default=str)
        return hashlib.sha256(raw.encode()).hexdigest()[:24]

    def path(self, key: str) -> Path:
        """The folder of entry ``key``."""
        return self.root / key

    def load(self, key: str, notify=None) -> dict[str, np.ndarray] | None:
        """The arrays of entry ``key`` (memory-mapped), or None when it is absent or damaged (a damaged
        file is reported through ``notify`` in one line; the entry is then re-made by the caller)."""
        d = self.path(key)
        meta = d / "meta.json"
        if not meta.is_file():
            return None
        info = read_entry(meta, validate=lambda m: isinstance(m, dict) and isinstance(m.get("arrays"), list),
                          notify=notify, root=self.root)
        if info is MISSING:
            return None
        out = {}
        for name in info["arrays"]:
            arr = read_entry(d / f"{name}.npy", notify=notify, root=self.root)
            if arr is MISSING:  # one array damaged or gone: the whole entry is re-made
                meta.unlink(missing_ok=True)
                return None
            out[name] = arr
        return out

    def writer(self, key: str, arrays: dict[str, tuple[tuple[int, ...], str]], parts: dict | None = None):
        """Context manager yielding writable memory-mapped arrays; committed atomically on clean exit."""
        import contextlib
        import json
        import os
        import shutil
        import uuid

        @contextlib.contextmanager
        def _writer():
            from ..fileio.containment import sweep_run_dir

            self.root.mkdir(parents=True, exist_ok=True)
            sweep_run_dir(self.root)  # entries half-written by runs killed with SIGKILL (owner pid gone)
            tmp = self.root / f".{key}.wb{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"  # owner pid: see containment
            tmp.mkdir()
            try:
                out = {name: np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=dtype, shape=tuple(shape))
                       for name, (shape, dtype) in arrays.items()}
                yield out
                for a in out.values():
                    a.flush()
                del out
                (tmp / "meta.json").write_text(json.dumps({"arrays": list(arrays), "parts": parts or {}},
                                                          indent=1, default=str))
                final = self.path(key)
                if final.exists():  # made meanwhile by another run, or damaged: replace
                    shutil.rmtree(final)
                os.replace(tmp, final)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)

        return _writer()
