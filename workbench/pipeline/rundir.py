"""The run directory: every step's output is a file here, keyed by a content hash, so a second run
(or a run killed half-way) reuses finished work instead of recomputing it.

    runs/<id>/recipe.toml        the resolved recipe
    runs/<id>/inputs.npz         the real input the harness feeds (one test image, batch 1)
    runs/<id>/artifacts/         exported and quantized models (what you would ship)
    runs/<id>/work/              cached unit results (training, evaluation, measurement) as JSON
    runs/<id>/cache/             the teacher-output cache
    runs/<id>/results.json, report.md, report.html
    runs/<id>/.lock              held (flock + the holder's pid) while a run writes here

Every path built from a name goes through ``RunDir.path`` (workbench.fileio.inside): it stays inside.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .. import __version__
from ..fileio.cachefile import MISSING, default_notify, read_entry
from ..fileio import ensure_writable_dir, inside, read_json, write_json
from ..artifact import Artifact, sha256_file


def content_key(*parts) -> str:
    """A stable hash of JSON-able parts (recipe sections, upstream sha256s, code version)."""
    raw = json.dumps([__version__, *parts], sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


class RunDir:
    """A run's folder: its sub-folders, the cached units and artifacts, and (``lock``) who writes to it."""

    def __init__(self, root: str | Path, notify=None):
        """``notify(line)`` receives one-line notes: a damaged cache entry being recomputed, temp files of a
        killed run removed (default: stderr)."""
        self.root = ensure_writable_dir(root)
        self.notify = notify or default_notify
        self.artifacts = self.root / "artifacts"
        self.work = self.root / "work"
        self.cache = self.root / "cache"
        for d in (self.artifacts, self.work, self.cache):
            d.mkdir(exist_ok=True)
        from ..fileio.containment import sweep_run_dir

        removed = sweep_run_dir(self.root)  # temp files of runs killed here (kill -9, power loss): owner gone
        if removed:
            self.notify(f"removed {len(removed)} temp file(s) left by a killed run in {self.root}")

    def path(self, *parts: str) -> Path:
        """``root / parts...`` checked to stay inside the run directory (names come from recipes)."""
        return inside(self.root, *parts)

    def lock(self, command: str = "workbench run", wait: bool = False, note=None):
        """Hold this run directory for one writer (a context manager; see RunLock)."""
        from .runlock import RunLock

        return RunLock(self.root, command, wait=wait, note=note)

    def unit(self, kind: str, name: str, key: str) -> Path:
        """Where the cached result of unit ``name`` (of ``kind``) with content key ``key`` lives."""
        path = self.path("work", kind, f"{name}.{key}.json")
        path.parent.mkdir(exist_ok=True)
        return path

    def read_entry(self, path: str | Path, *, reader=None, validate=None):
        """A cached file's value (typed by suffix: .json, .npy, .safetensors, .onnx), or ``MISSING`` when it
        is absent or damaged; a damaged one is reported in one line and deleted (see workbench.fileio.cachefile)."""
        return read_entry(path, reader=reader, validate=validate, notify=self.notify, root=self.root)

    def cached(self, kind: str, name: str, key: str, compute, validate=None):
        """Return the stored result of a unit of work, computing and storing it (atomically) if absent or
        damaged. ``validate(value) -> bool`` may reject a stored value of the wrong shape (then recomputed)."""
        path = self.unit(kind, name, key)
        value = self.read_entry(path, validate=validate)
        if value is not MISSING:
            return value, True
        value = compute()
        write_json(path, value)
        return value, False

    def artifact(self, art_id: str, key: str, make) -> tuple[Artifact, bool]:
        """Reuse artifact ``art_id`` if its record matches ``key`` and its file is intact; else ``make(path)``.

        ``make(path) -> dict`` writes the file and returns the Artifact fields other than path/sha/size.
        """
        path = self.path("artifacts", f"{art_id}.onnx")
        meta_path = self.unit("artifacts", art_id, key)
        art = self.reused_artifact(meta_path, path)
        if art is not None:
            return art, True
        fields = make(path)
        art = Artifact(id=art_id, path=str(path.relative_to(self.root)), format="onnx", sha256=sha256_file(path),
                       size_bytes=path.stat().st_size, **fields)
        write_json(meta_path, art.to_json())
        return art, False

    def reused_artifact(self, meta_path: Path, path: Path) -> Artifact | None:
        """The Artifact recorded at ``meta_path`` if ``path`` is still the file it records (same sha256); else
        None, with a one-line note when the record or the file is damaged or changed (the caller remakes it)."""
        if not path.is_file():
            return None
        art = self.read_entry(meta_path, reader=lambda p: Artifact.from_json(read_json(p)))
        if art is MISSING:
            return None
        if art.sha256 != sha256_file(path):
            self.notify(f"{path.relative_to(self.root)} does not match its record (damaged or changed); rebuilding")
            return None
        return art

    def abspath(self, art: Artifact) -> Path:
        """The file of ``art`` (its path is stored relative to the run directory)."""
        return self.path(art.path)
