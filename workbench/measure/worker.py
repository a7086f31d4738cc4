"""The measurement worker: one fresh process per measurement. ``python -m workbench.measure.worker``

Job, as JSON on stdin::

    {"mode": "latency" | "memory" | "profile", "model_path": str, "runtime": "ort", "threads": int,
     "inputs_path": str | null, "protocol": {Protocol.to_json()}, "spawned_at": time.time() in the parent,
     "runs": int (profile mode only),
     "adapter": null | {"spec": "package.module:Attr", "path": "/dir/to/add/to/sys.path" | null}}

``adapter`` is the extension / test hook: a Runtime class (or instance) that is not one of the
built-ins, re-created here from its import path (the harness fills it in when it is given a
Runtime object instead of a registered name).

Output: JSON lines on the ORIGINAL stdout -- ``{"progress": 0.4}`` or ``{"message": "loading"}``
while running, then ``{"result": {...}}`` or ``{"error": {"type": ..., "message": ...}}`` last.
While the job runs, fd 1 points at stderr, so chatter from native runtimes cannot corrupt the
protocol. Thread env vars are set before anything heavy is imported.
"""
from __future__ import annotations

import gc
import json
import os
import sys
import time

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                   "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
CHECK_EVERY_NS = 250_000_000  # stop-rule / progress check interval during timed runs


def thread_env(threads: int) -> dict[str, str]:
    return {k: str(threads) for k in THREAD_ENV_VARS}


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _one_line(text, limit: int = 400) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


class Channel:
    """Line-delimited JSON to the parent on a private copy of the original stdout."""

    def __init__(self):
        sys.stdout.flush()
        self._fd = os.dup(1)
        os.dup2(2, 1)  # anything written to fd 1 from now on lands in stderr
        self._file = os.fdopen(self._fd, "w", buffering=1)

    def send(self, obj: dict) -> None:
        self._file.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self._file.flush()

    def progress(self, fraction: float) -> None:
        self.send({"progress": round(float(fraction), 4)})

    def message(self, text: str) -> None:
        self.send({"message": text})

    def close(self) -> None:
        self._file.close()


# --------------------------------------------------------------------------- shared helpers

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


def sentinel_ms(reps: int = 5) -> float:
    """A fixed single-threaded numpy kernel (~4 ms a rep): the fastest of ``reps`` timings, in ms.

    The minimum, not the median: a few interrupted reps must not look like a machine that slowed down.

    Deliberately not a BLAS matmul: numpy's OpenBLAS honours the thread env vars (and on a
    busy 2-core machine a 2-thread 128x128 matmul ran 100x slower), so it would not be fixed.
    """
    import numpy as np

    x = np.random.default_rng(1).random(1 << 15)
    y = np.empty_like(x)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        for _ in range(50):
            np.sin(x, out=y)
            np.multiply(y, x, out=y)
        times.append(time.perf_counter_ns() - t0)
    return float(np.min(times)) / 1e6


def cpu_snapshot() -> tuple[float, float, float] | None:
    """(wall s, busy CPU-seconds of the whole machine, CPU-seconds of this process) — None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    busy = sum(fields[:3]) + sum(fields[5:8])  # user nice system (skip idle iowait) irq softirq steal
    own = os.times()
    return time.perf_counter(), busy / os.sysconf("SC_CLK_TCK"), own.user + own.system


def other_load(before, after) -> float | None:
    """Cores' worth of CPU used by OTHER processes between two snapshots (the machine's busy time minus ours)."""
    if before is None or after is None or after[0] - before[0] < 0.2:
        return None
    return max(0.0, ((after[1] - before[1]) - (after[2] - before[2])) / (after[0] - before[0]))


# --------------------------------------------------------------------------- latency

def _timed_runs(run, feeds, proto: dict, chan: Channel) -> tuple[list[int], str, float]:
    from .protocol import median_ci_halfwidth

    samples: list[int] = []
    append, clock = samples.append, time.perf_counter_ns
    min_runs, target = proto["min_runs"], proto["target_ci"]
    min_ns, max_ns = int(proto["min_s"] * 1e9), int(proto["max_s"] * 1e9)
    stop, shown = "max_s", 0.0
    start = clock()
    next_check = start + min(CHECK_EVERY_NS, max_ns)
    while True:
        t0 = clock()
        run(feeds)
        t1 = clock()
        append(t1 - t0)
        if t1 < next_check:
            continue
        elapsed, n = t1 - start, len(samples)
        med, hw = median_ci_halfwidth(samples)
        f_min = min(n / min_runs, elapsed / min_ns if min_ns else 1.0, 1.0)
        if f_min >= 1.0 and hw <= target * med:
            stop = "ci_target"
            break
        if elapsed >= max_ns:
            break
        f_ci = (target * med / hw) ** 2 if hw > 0 else 1.0
        shown = max(shown, min(f_min, max(f_ci, elapsed / max_ns), 0.99))
        chan.progress(shown)
        next_check = clock() + CHECK_EVERY_NS
    return samples, stop, (clock() - start) / 1e9


def run_latency(job: dict, chan: Channel) -> dict:
    proto, threads = job["protocol"], int(job["threads"])
    spawned_at = job.get("spawned_at")
    if spawned_at is None:
        import psutil

        spawned_at = psutil.Process().create_time()
    rt = resolve_adapter(job)
    chan.message("loading")
    t0 = time.perf_counter_ns()
    rt.prepare()
    import_ms = (time.perf_counter_ns() - t0) / 1e6
    raw = read_inputs(job.get("inputs_path"))

    t0 = time.perf_counter_ns()
    session = rt.load(job["model_path"], threads)
    load_ms = (time.perf_counter_ns() - t0) / 1e6
    process_to_ready_ms = (time.time() - spawned_at) * 1e3
    feeds, info = make_feeds(session.input_specs(), raw, job.get("inputs_path"))

    t0 = time.perf_counter_ns()
    session.run(feeds)
    first_ms = (time.perf_counter_ns() - t0) / 1e6

    loadavg_1m = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    gc.collect()
    gc.disable()
    try:
        sentinel_before = sentinel_ms()
        chan.message("warm-up")
        run, n_warm, w0 = session.run, 0, time.perf_counter()
        while n_warm < proto["warmup_runs"] or time.perf_counter() - w0 < proto["warmup_s"]:
            run(feeds)
            n_warm += 1
        warm_s = time.perf_counter() - w0
        chan.message("timing")
        cpu_before = cpu_snapshot()
        samples, stop, timed_s = _timed_runs(run, feeds, proto, chan)
        cpu_after = cpu_snapshot()
        sentinel_after = sentinel_ms()
    finally:
        gc.enable()
    chan.progress(1.0)
    return {
        "runtime": {"name": rt.name, "version": rt.version(), "options": {"threads": threads, **session.options()}},
        "input": info,
        "phases": {"load_ms": load_ms, "process_to_ready_ms": process_to_ready_ms, "first_ms": first_ms,
                   "import_ms": import_ms, "warmup_runs": n_warm, "warmup_s": warm_s, "timed_s": timed_s},
        "samples_ns": samples,
        "stop_reason": stop,
        "loadavg_1m": loadavg_1m,
        "other_load": other_load(cpu_before, cpu_after),
        "sentinel_ms": [sentinel_before, sentinel_after],
        "timer_resolution_s": time.get_clock_info("perf_counter").resolution,
        "cores": usable_cores(),
    }


# --------------------------------------------------------------------------- entry point

def main() -> None:
    from .lifeline import die_with_parent

    die_with_parent()  # never outlive the harness, even one killed with SIGKILL
    job = json.loads(sys.stdin.read())
    os.environ.update(thread_env(int(job.get("threads", 1))))
    chan = Channel()
    from ..errors import WorkbenchError

    try:
        if job.get("mode") == "memory":
            from .memory import run_memory

            result = run_memory(job, chan)
        elif job.get("mode") == "profile":
            from .profile import run_profile

            result = run_profile(job, chan)
        else:
            result = run_latency(job, chan)
        chan.send({"result": result})
    except WorkbenchError as exc:
        chan.send({"error": {"type": type(exc).__name__, "message": str(exc)}})
    except MemoryError:
        chan.send({"error": {"type": "MemoryError", "message": "ran out of memory (MemoryError)"}})
    except BaseException as exc:  # report anything, one line; the traceback goes to stderr
        import traceback

        traceback.print_exc()
        chan.send({"error": {"type": "Exception", "message": f"{type(exc).__name__}: {_one_line(exc)}"}})
    chan.close()
    sys.stderr.flush()
    os._exit(0)  # skip interpreter teardown: the result is out, and runtimes can crash on exit


if __name__ == "__main__":
    main()
