"""The size guard: every input array is sized BEFORE it is allocated (generated, read from an .npz, or
stacked for calibration) and refused with one line when it would take more than a share of the memory
that is free now, so a model that declares ``1x3x100000x100000`` ends in exit code 2, not in a
``MemoryError`` traceback or a machine swapping itself to death.

The share is ``WORKBENCH_INPUT_MEMORY_SHARE`` (a fraction such as ``0.25`` or a percentage such as
``25%``; default 25% of psutil's *available* memory). numpy only; psutil is imported when needed.
"""
from __future__ import annotations

import math
import os
import zipfile

import numpy as np

from ..errors import ArtifactError, RecipeError

ENV = "WORKBENCH_INPUT_MEMORY_SHARE"
DEFAULT_SHARE = 0.25


def memory_share() -> float:
    """The share of available memory one input may take: ``WORKBENCH_INPUT_MEMORY_SHARE`` or 0.25."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return DEFAULT_SHARE
    try:
        v = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        v = float("nan")
    if not 0 < v <= 1:
        raise RecipeError(f"{ENV}={raw!r} must be a share of free memory in (0, 1] such as 0.25, or a percentage "
                          "such as 25%; fix or unset it")
    return v


def available_bytes() -> int:
    """Memory available to new allocations now (psutil's ``available``)."""
    import psutil

    return int(psutil.virtual_memory().available)


def nbytes(shape, dtype) -> int:
    """Bytes an array of ``shape`` and ``dtype`` takes (Python ints: no overflow on absurd shapes)."""
    return math.prod(int(d) for d in shape) * np.dtype(dtype).itemsize


def human(n: float) -> str:
    """``123456789`` -> ``'117.7 MiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def _dims(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def too_big(shape, dtype) -> tuple[int, int, float] | None:
    """(bytes, available bytes, share) when an array of ``shape``/``dtype`` would exceed the share, else None."""
    need, share = nbytes(shape, dtype), memory_share()  # the share is checked even for small arrays
    if need < (1 << 20):  # under 1 MiB: never worth asking the OS
        return None
    avail = available_bytes()
    return (need, avail, share) if need > share * avail else None


def check_size(name: str, shape, dtype, fix: str, what: str = "input", error=RecipeError) -> None:
    """Raise ``error`` (one line: the input, its shape, its bytes, the fix) if the array would be too big."""
    hit = too_big(shape, dtype)
    if hit is None:
        return
    need, avail, share = hit
    raise error(f"{what} {name!r} {_dims(shape)} {np.dtype(dtype)} would take {human(need)}, more than "
                f"{share:.0%} of the {human(avail)} of memory available now; {fix} "
                f"(or raise the share with {ENV}=0.5)")


def shape_fix(spec, shape) -> str:
    """How to ask for a smaller input: ``--shape NAME=...`` (plus a note when the model fixes the dims)."""
    dims = "x".join(str(d) for d in shape) if shape else "..."
    if all(isinstance(d, int) and d > 0 for d in spec.shape):
        return (f"the model declares this fixed size: re-export it with the size you will run (or with dynamic "
                f"dims, then give --shape {spec.name}=... with smaller ones)")
    return f"give a smaller shape with --shape {spec.name}=... (it was {dims})"


# --------------------------------------------------------------------------- .npz files

def npz_headers(path: str) -> dict:
    """{array name: (shape, dtype)} of an .npz, read from each member's header without loading any data.
    Members that are not plain .npy arrays are left out (np.load reports them)."""
    from numpy.lib import format as npf

    out = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with zf.open(info) as f:
                    version = npf.read_magic(f)
                    if version == (1, 0):
                        shape, _, dtype = npf.read_array_header_1_0(f)
                    elif version == (2, 0):
                        shape, _, dtype = npf.read_array_header_2_0(f)
                    else:
                        continue
                out[info.filename[:-4]] = (tuple(shape), dtype)
    except (zipfile.BadZipFile, ValueError, OSError):
        return {}  # not a zip / odd header: np.load gives the one-line reason
    return out


def check_npz(path: str, fix: str | None = None) -> None:
    """Refuse (ArtifactError) an .npz holding an array too big for the memory available, before loading it."""
    base = os.path.basename(path)
    for name, (shape, dtype) in npz_headers(path).items():
        if dtype.hasobject:
            continue
        check_size(name, shape, dtype, fix or f"save a smaller array in {base}", what=f"array in {base}",
                   error=ArtifactError)
