"""What a measurement worker needs before it times anything: thread caps, the runtime adapter, the feeds.

Shared by every worker mode (latency in :mod:`.worker`, :mod:`.memory`, :mod:`.profile`) and by the
harness (thread env of the processes it spawns); it imports none of them, so they need not import
each other. Nothing heavy at import time: numpy and the runtimes are imported inside the functions.
"""
from __future__ import annotations

import json
import os
import sys

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                   "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def thread_env(threads: int) -> dict[str, str]:
    """The environment that caps every native thread pool (OpenMP, MKL, OpenBLAS ...) at ``threads``."""
    return {k: str(threads) for k in THREAD_ENV_VARS}


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), the count that thread choices are judged against."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def resolve_adapter(job: dict):
    """The Runtime for this job: a registered built-in by name, or the job's import-path adapter."""
    ref = job.get("adapter")
    if not ref:
        from ..runtimes import get_runtime

        return get_runtime(job["runtime"])
    import importlib

    path = ref.get("path")
    if path and path not in sys.path:
        sys.path.append(path)
    module, _, attr = ref["spec"].partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj() if isinstance(obj, type) else obj


def read_inputs(inputs_path: str | None):
    """The arrays of an .npz inputs file (name -> array), or None to generate inputs."""
    if inputs_path is None:
        return None
    from .inputs import load_npz

    return load_npz(inputs_path)


def make_feeds(specs, raw: dict | None, inputs_path: str | None):
    """Feeds for ``session.run`` plus the record's ``input`` entry ({shapes, dtypes, source}).

    ``raw`` None: inputs generated per dtype with default shapes (workbench.measure.inputs).
    An .npz written by ``workbench bench`` carries each input's origin under ``inputs.SOURCE_KEY``.
    """
    import numpy as np

    from ..errors import MeasurementError
    from .inputs import SOURCE_KEY, contiguous, describe, generate_feeds

    feeds = {}
    if raw is None:
        feeds, _, _ = generate_feeds(specs)
        source = "generated"
    else:
        base = os.path.basename(inputs_path)
        missing = [s.name for s in specs if s.name not in raw]
        if missing:
            have = ", ".join(k for k in raw if k != SOURCE_KEY) or "nothing"
            raise MeasurementError(
                f"inputs file {base} lacks {', '.join(missing)} that the model needs (it has: {have}); "
                "write one array per model input")
        for s in specs:
            arr = raw[s.name]
            if s.dtype != "str" and arr.dtype != np.dtype(s.dtype):
                if not np.can_cast(arr.dtype, np.dtype(s.dtype), casting="same_kind"):
                    raise MeasurementError(
                        f"input {s.name!r} in {base} is {arr.dtype} but the model needs {s.dtype}; save it as {s.dtype}")
                arr = arr.astype(s.dtype)
            if len(arr.shape) != len(s.shape) or any(
                    isinstance(d, int) and d > 0 and d != a for d, a in zip(s.shape, arr.shape)):
                raise MeasurementError(
                    f"input {s.name!r} in {base} has shape {list(arr.shape)} but the model needs {list(s.shape)}; "
                    "save arrays of the model's input shape")
            feeds[s.name] = contiguous(arr)  # 0-d stays 0-d (an int64 sample rate)
        source = base
        if SOURCE_KEY in raw:
            try:
                source = describe(json.loads(str(raw[SOURCE_KEY][()])), [s.name for s in specs])
            except (ValueError, TypeError):
                pass  # not ours after all: name the file
    info = {"shapes": {k: list(v.shape) for k, v in feeds.items()},
            "dtypes": {k: str(v.dtype) for k, v in feeds.items()}, "source": source}
    return feeds, info
