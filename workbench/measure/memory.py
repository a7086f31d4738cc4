"""The memory pass: RSS before / after load and the peak over N inferences, in its own worker.

tracemalloc is not enough (runtimes allocate natively), so this reads the kernel's numbers:
VmRSS / VmHWM from /proc/self/status, peak reset through /proc/self/clear_refs; elsewhere
psutil's RSS and ``resource.getrusage`` ru_maxrss (which cannot be reset).
"""
from __future__ import annotations

import gc
import os
import sys
from dataclasses import dataclass, field

MIB = float(1 << 20)


def _proc_status() -> dict[str, int] | None:
    """VmRSS / VmHWM in bytes from /proc/self/status, or None where there is no procfs."""
    try:
        with open("/proc/self/status") as f:
            out = {}
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(rest.split()[0]) * 1024  # reported in kB
            return out if len(out) == 2 else None
    except OSError:
        return None


def rss_bytes() -> int:
    """This process's resident memory now, in bytes (/proc on Linux, else psutil)."""
    st = _proc_status()
    if st:
        return st["VmRSS"]
    import psutil

    return psutil.Process().memory_info().rss


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (Linux >= 4.0); False where it cannot be reset."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_bytes() -> tuple[int, str]:
    """This process's peak resident memory in bytes, and the counter it came from (VmHWM, or ru_maxrss off Linux)."""
    st = _proc_status()
    if st:
        return st["VmHWM"], "VmHWM"
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (peak if sys.platform == "darwin" else peak * 1024), "ru_maxrss"


def run_memory(job: dict, chan) -> dict:
    """Worker side: import the runtime, baseline, load, N inferences, peak."""
    from .feeds import make_feeds, read_inputs, resolve_adapter

    threads, runs = int(job["threads"]), int(job["protocol"]["memory_runs"])
    rt = resolve_adapter(job)
    chan.message("loading")
    rt.prepare()
    gc.collect()
    was_reset = reset_peak()
    baseline = rss_bytes()
    session = rt.load(job["model_path"], threads)
    after_load = rss_bytes()
    # inputs (read or generated) come after the load reading: they count in the peak, not in the load
    feeds, info = make_feeds(session.input_specs(), read_inputs(job.get("inputs_path")), job.get("inputs_path"))
    chan.message("running")
    for i in range(runs):
        session.run(feeds)
        chan.progress((i + 1) / runs)
    peak, peak_src = peak_bytes()
    peak = max(peak, after_load, rss_bytes())
    rss_src = "VmRSS from /proc/self/status" if _proc_status() else "psutil RSS"
    reset = "reset via /proc/self/clear_refs just before load" if was_reset else "not resettable: includes start-up"
    method = (f"{rss_src} after importing the runtime (baseline) and after load; peak = {peak_src} "
              f"({reset}) after {runs} inferences (inputs made after the load reading); MB = MiB (2^20 bytes)")
    return {
        "runtime": {"name": rt.name, "version": rt.version(), "options": {"threads": threads, **session.options()}},
        "input": info,
        "baseline_mb": baseline / MIB, "after_load_mb": after_load / MIB, "peak_mb": peak / MIB,
        "peak_delta_mb": (peak - baseline) / MIB, "method": method, "runs": runs, "pid": os.getpid(),
    }


@dataclass(frozen=True)
class MemoryMeasurement:
    """Resident memory of one artifact x runtime x threads (MiB); ``peak_delta_mb`` = peak - baseline."""

    baseline_mb: float
    after_load_mb: float
    peak_mb: float
    peak_delta_mb: float
    method: str
    runs: int
    model_path: str = ""
    threads: int = 1
    runtime: dict = field(default_factory=dict, compare=False)
    input: dict = field(default_factory=dict, compare=False)

    @property
    def load_delta_mb(self) -> float:
        """Memory the model load added above the baseline, in MB."""
        return self.after_load_mb - self.baseline_mb

    def to_json(self) -> dict:
        """The record's ``memory`` entry."""
        return {"baseline_mb": self.baseline_mb, "after_load_mb": self.after_load_mb, "peak_mb": self.peak_mb,
                "peak_delta_mb": self.peak_delta_mb, "method": self.method, "runs": self.runs}

    @classmethod
    def from_worker(cls, d: dict, model_path: str, threads: int) -> "MemoryMeasurement":
        """The measurement from a memory worker's result dict, with the model and threads it was asked for."""
        return cls(baseline_mb=d["baseline_mb"], after_load_mb=d["after_load_mb"], peak_mb=d["peak_mb"],
                   peak_delta_mb=d["peak_delta_mb"], method=d["method"], runs=d["runs"], model_path=model_path,
                   threads=threads, runtime=d.get("runtime", {}), input=d.get("input", {}))

    @classmethod
    def from_json(cls, d: dict, **extra) -> "MemoryMeasurement":
        """Rebuild from its JSON form (the inverse of to_json)."""
        return cls(**{k: d[k] for k in ("baseline_mb", "after_load_mb", "peak_mb", "peak_delta_mb", "method")},
                   runs=d.get("runs", 0), **extra)
