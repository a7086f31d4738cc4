"""The one "read or recompute" path for every cached file: JSON units, .npy arrays, .safetensors
weights and .onnx models.

A cached entry is read through the reader registered for its suffix, which also checks that the
file is whole (a truncated .npy or .safetensors is caught from its header and size before it is
memory-mapped or loaded). A damaged entry is reported in ONE line ("work/train/abc.json was
damaged (JSONDecodeError); recomputing"), deleted, and treated as absent, so the caller recomputes
it; a re-run never fails on what an earlier, killed run half-wrote.
"""
from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from typing import Callable

from ..registry import Registry

MISSING = object()  # read_entry's answer for "absent or damaged: recompute"

Reader = Callable[[Path], object]
READERS: Registry[Reader] = Registry("cached-file reader")


class DamagedEntry(ValueError):
    """A cached file that exists but cannot be what was written (truncated, wrong header)."""


def default_notify(message: str) -> None:
    """Where damage reports go when the caller names no place: one line on stderr."""
    print(message, file=sys.stderr, flush=True)


def reader_for(path: Path) -> Reader:
    """The registered reader for ``path``'s suffix (``.json``, ``.npy``, ``.safetensors``, ``.onnx``)."""
    return READERS.get(Path(path).suffix.lstrip(".").lower())


def read_entry(path: str | Path, *, reader: Reader | None = None, validate: Callable[[object], bool] | None = None,
               notify: Callable[[str], None] | None = None, root: str | Path | None = None):
    """The cached value at ``path``, or :data:`MISSING` when it is absent or damaged.

    ``reader`` defaults to the one registered for the suffix; ``validate(value)`` may reject a value
    that reads but has the wrong content. A damaged entry is reported through ``notify`` (one line,
    the path relative to ``root``), deleted and reported as MISSING, so the caller recomputes it.
    """
    path = Path(path)
    if not path.is_file():
        return MISSING
    reader = reader or reader_for(path)
    try:
        value = reader(path)
        if validate is not None and not validate(value):
            raise DamagedEntry("unexpected content")
        return value
    except Exception as e:  # noqa: BLE001 - any failure to read a cache entry means: recompute it
        why = str(e) if isinstance(e, DamagedEntry) else type(e).__name__
        (notify or default_notify)(f"{_shown(path, root)} was damaged ({why}); recomputing")
        path.unlink(missing_ok=True)
        return MISSING


def _shown(path: Path, root) -> str:
    if root is not None:
        try:
            return str(path.resolve().relative_to(Path(root).resolve()))
        except ValueError:
            pass
    return str(path)


# --------------------------------------------------------------------------- typed readers

@READERS.register("json")
def read_json_entry(path: Path):
    """A JSON unit result."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@READERS.register("npy")
def read_npy_entry(path: Path):
    """A .npy array, memory-mapped, after checking that the file holds all the data its header promises."""
    import numpy as np

    size = path.stat().st_size
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        offset = f.tell()
    if dtype.hasobject:
        raise DamagedEntry("holds Python objects, not numbers")
    n = 1
    for d in shape:
        n *= int(d)
    expected = offset + n * dtype.itemsize
    if size != expected:
        raise DamagedEntry(f"{size} bytes, its header promises {expected}")
    return np.load(path, mmap_mode="r", allow_pickle=False)


@READERS.register("safetensors")
def read_safetensors_entry(path: Path) -> Path:
    """A .safetensors file checked from its header (JSON of tensor offsets) against its size; returns the path."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise DamagedEntry(f"{size} bytes, shorter than a safetensors header")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            raise DamagedEntry(f"{size} bytes, its header alone claims {n + 8}")
        header = json.loads(f.read(n))
    end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end != size:
        raise DamagedEntry(f"{size} bytes, its header promises {8 + n + end}")
    return path


@READERS.register("onnx")
def read_onnx_entry(path: Path) -> Path:
    """An .onnx model checked by parsing its protobuf (external data files must exist); returns the path."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for t in model.graph.initializer:
        for kv in t.external_data:
            if kv.key == "location" and not (path.parent / kv.value).is_file():
                raise DamagedEntry(f"its external data file {kv.value} is missing")
    return path
