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

from .feeds import (THREAD_ENV_VARS, make_feeds, read_inputs, resolve_adapter,  # noqa: F401  (re-exported)
                    thread_env, usable_cores)
from .memory import run_memory
from .profile import run_profile

CHECK_EVERY_NS = 250_000_000  # stop-rule / progress check interval during timed runs


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
        """Send one JSON line to the parent."""
        self._file.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self._file.flush()

    def progress(self, fraction: float) -> None:
        """Report the fraction of the job done (drives the parent's progress bar)."""
        self.send({"progress": round(float(fraction), 4)})

    def message(self, text: str) -> None:
        """Report the phase the worker is in (loading, warm-up, timing ...)."""
        self.send({"message": text})

    def close(self) -> None:
        """Close the channel; nothing more can be sent."""
        self._file.close()


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
    """Worker side of a latency job: load, first run, warm-up, timed runs until the stop rule, plus the noise guards'
    readings."""
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

# what a job's "mode" runs; memory and profile import nothing heavy at module level, so the thread env
# set in main() still comes before any runtime is imported
MODES = {"latency": run_latency, "memory": run_memory, "profile": run_profile}


def main() -> None:
    """Entry point of ``python -m workbench.measure.worker``: read one job from stdin, run it, send one result or one
    error line."""
    from .lifeline import die_with_parent

    die_with_parent()  # never outlive the harness, even one killed with SIGKILL
    job = json.loads(sys.stdin.read())
    os.environ.update(thread_env(int(job.get("threads", 1))))
    chan = Channel()
    from ..errors import MeasurementError, WorkbenchError

    try:
        mode = job.get("mode") or "latency"
        if mode not in MODES:
            raise MeasurementError(f"unknown worker mode {mode!r}; one of: {', '.join(MODES)}")
        chan.send({"result": MODES[mode](job, chan)})
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
