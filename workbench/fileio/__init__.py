"""Atomic file output: write to a temp file in the same folder, then rename. Nothing half-written."""
from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path

from ..errors import OutputError, RecipeError

# a name that becomes part of a path (student, variant, recipe, run): a safe slug, never a path of its own
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
NAME_RULE = ("1-64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit, without '..' "
             "(e.g. cnn-s or digits_v2.1)")


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ""):
    """Yield a temp path next to ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # the owner's pid in the name: a run killed with SIGKILL leaves it, the next run removes it
        # (workbench.fileio.containment.sweep_run_dir); the real extension stays last (loaders check it)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.wb{os.getpid()}.", suffix=".tmp" + suffix)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror}; choose a writable location") from None
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the final file normal permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | Path, text: str) -> Path:
    """Write text to path atomically (temp file, then rename): readers never see half a file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, obj) -> Path:
    """Write obj as JSON atomically; numpy scalars/arrays and paths are converted so results stay plain JSON."""
    return write_text(path, json.dumps(obj, indent=1, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | Path):
    """The parsed JSON of path (the counterpart of :func:`write_json`)."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (Path,)):
        return str(o)
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def ensure_writable_dir(path: str | Path) -> Path:
    """Create ``path`` if needed and check that files can be written there (fails early, writes nothing)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe_writable(path)
    except OSError as e:
        raise OutputError(f"cannot write to output directory {path}: {e.strerror}; pass --out with a writable path") from None
    return path


def probe_writable(folder: str | Path) -> None:
    """Create and remove a temp file in ``folder``; raises OSError when files cannot be written there."""
    fd, probe = tempfile.mkstemp(dir=folder, prefix=".probe.")
    os.close(fd)
    os.unlink(probe)


def check_name(value, what: str) -> str:
    """Return ``value`` if it is a safe name for a file or folder (NAME_PATTERN, no ``..``); else raise a
    RecipeError naming ``what`` and the allowed characters. Every name that becomes a path goes through here."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value) or ".." in value:
        raise RecipeError(f"{what} {value!r} cannot be used in a file name; use {NAME_RULE}")
    return value


def inside(root: str | Path, *parts: str) -> Path:
    """``root / parts...``, refused (OutputError) when the result resolves outside ``root``: the one join
    for paths built from names, so a name can never write beside or above the run directory."""
    root = Path(root)
    path = root.joinpath(*parts)
    base = root.resolve()
    target = path.resolve()
    if target != base and base not in target.parents:
        raise OutputError(f"{'/'.join(parts)} would be written outside {root} (to {target}); names may only use "
                          f"{NAME_RULE}")
    return path
