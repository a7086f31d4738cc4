"""Parent side of the harness: spawn a fresh worker per measurement, stream its progress,
turn crashes / hangs into MeasurementError, and compute statistics ONCE from the raw samples."""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .. import errors
from ..errors import ArtifactError, MeasurementError, RecipeError
from .memory import MemoryMeasurement
from .protocol import Protocol, StabilityWarning, assess_stability
from .stats import LatencyStats
from .lifeline import PARENT_ENV, kill_group, track
from .feeds import thread_env, usable_cores

ProgressCallback = Callable[[object], None]  # called with a float in [0, 1] or a phase name (str)
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


@dataclass(frozen=True)
class Phases:
    """Where a worker's time went before timing started (load, process start to ready, first inference, import): cold-
    start costs."""

    load_ms: float  # adapter.load only
    process_to_ready_ms: float  # worker spawn -> session ready (interpreter start, imports, load)
    first_ms: float  # the first inference
    import_ms: float | None = None  # importing the runtime (inside process_to_ready_ms)

    def to_json(self) -> dict:
        """The JSON form stored in a measurement record."""
        return {"load_ms": self.load_ms, "process_to_ready_ms": self.process_to_ready_ms,
                "first_ms": self.first_ms, "import_ms": self.import_ms}


@dataclass(frozen=True)
class Stability:
    """What the worker saw of the machine while it timed: warnings, sentinel drift, load average and other processes'
    CPU, so a noisy result is flagged."""

    warnings: tuple[StabilityWarning, ...]
    sentinel_drift_pct: float | None
    loadavg_1m: float | None
    sentinel_ms: tuple[float, float] | None = None
    other_load: float | None = None  # cores used by other processes during the timed runs

    def to_json(self) -> dict:
        """The JSON form stored in a measurement record."""
        return {"warnings": [w.to_json() for w in self.warnings], "sentinel_drift_pct": self.sentinel_drift_pct,
                "loadavg_1m": self.loadavg_1m, "sentinel_ms": list(self.sentinel_ms) if self.sentinel_ms else None,
                "other_load": self.other_load}


@dataclass(frozen=True)
class LatencyMeasurement:
    """One latency measurement: raw samples (ms), statistics computed once, and its context."""

    model_path: str
    runtime: str
    runtime_version: str | None
    runtime_options: dict = field(compare=False)
    threads: int
    input: dict = field(compare=False)  # {shapes, dtypes, source}
    protocol: Protocol
    phases: Phases
    samples: tuple[float, ...]
    stats: LatencyStats
    stability: Stability
    stop_reason: str  # "ci_target" or "max_s"
    processes: int = 1
    # per process, in the order their samples appear in ``samples``: sample count and round index.
    # Empty for a single process. ``interleave``: the measure_interleaved run it came from.
    process_n: tuple[int, ...] = ()
    process_rounds: tuple[int, ...] = ()
    interleave: dict | None = field(default=None, compare=False)

    @property
    def interleave_id(self) -> str | None:
        """The id of the interleaved run this measurement belongs to (pairs its rounds with the others'), or None."""
        return (self.interleave or {}).get("id")

    def process_samples(self) -> list[tuple[float, ...]]:
        """The samples split by process (one entry for a single-process measurement)."""
        if len(self.process_n) < 2 or sum(self.process_n) != len(self.samples):
            return [self.samples]
        out, start = [], 0
        for n in self.process_n:
            out.append(self.samples[start:start + n])
            start += n
        return out

    def to_json(self) -> dict:
        """The record's latency entry: samples, statistics, phases, stability, protocol and environment."""
        import statistics

        per = self.process_samples()
        return {
            "runtime": {"name": self.runtime, "version": self.runtime_version, "options": dict(self.runtime_options)},
            "input": json.loads(json.dumps(self.input)),
            "protocol": {**self.protocol.to_json(), "processes": self.processes,
                         "interleave": json.loads(json.dumps(self.interleave)) if self.interleave else None},
            "phases": self.phases.to_json(),
            "latency": {"unit": "ms", **self.stats.to_json(), "samples": list(self.samples),
                        "stop_reason": self.stop_reason, "process_n": [len(x) for x in per],
                        "process_medians": [statistics.median(x) for x in per],
                        "process_rounds": list(self.process_rounds) or None},
            "stability": self.stability.to_json(),
        }

    @classmethod
    def from_json(cls, d: dict, model_path: str = "") -> "LatencyMeasurement":
        """Rebuild from its JSON form (the inverse of to_json)."""
        lat, st = d["latency"], d["stability"]
        return cls(
            model_path=model_path, runtime=d["runtime"]["name"], runtime_version=d["runtime"].get("version"),
            runtime_options=d["runtime"].get("options", {}), threads=d["runtime"].get("options", {}).get("threads", 1),
            input=d["input"], protocol=Protocol.from_json(d["protocol"]),
            phases=Phases(**{k: v for k, v in d["phases"].items() if k in Phases.__dataclass_fields__}),
            samples=tuple(lat["samples"]), stats=LatencyStats.from_json(lat),
            stability=Stability(tuple(StabilityWarning(**w) for w in st["warnings"]), st.get("sentinel_drift_pct"),
                                st.get("loadavg_1m"), tuple(st["sentinel_ms"]) if st.get("sentinel_ms") else None,
                                st.get("other_load")),
            stop_reason=lat.get("stop_reason", "max_s"), processes=d["protocol"].get("processes", 1),
            process_n=tuple(lat.get("process_n") or ()) if len(lat.get("process_n") or ()) > 1 else (),
            process_rounds=tuple(lat.get("process_rounds") or ()), interleave=d["protocol"].get("interleave"))


# --------------------------------------------------------------------------- worker process

def _describe(model_path: str, runtime: str, threads: int) -> str:
    return f"{os.path.basename(model_path)} on {runtime} ({threads} thread{'' if threads == 1 else 's'})"


def _stderr_tail(err) -> str:
    err.seek(0, os.SEEK_END)
    err.seek(max(0, err.tell() - 8192))
    lines = [ln.strip() for ln in err.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    if not lines:
        return ""
    line = " ".join(lines[-1].split())
    return line if len(line) <= 300 else line[:297] + "..."


def _crash_message(rc: int, tail: str) -> str:
    if rc < 0:
        sig = -rc
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        hint = {"SIGKILL": "killed; out of memory?", "SIGSEGV": "segmentation fault in the runtime",
                "SIGABRT": "aborted by the runtime", "SIGBUS": "bus error in the runtime"}.get(name, name)
        what = f"worker exited with signal {sig} ({hint})"
    else:
        what = f"worker exited with code {rc}"
    return f"{what}: {tail}" if tail else f"{what} (nothing on stderr)"


def _kill(proc: subprocess.Popen) -> None:
    kill_group(proc)  # the worker leads its own process group; SIGKILL it all and reap it


def run_worker(job: dict, timeout_s: float, what: str, on_progress: ProgressCallback | None = None) -> dict:
    """Run one job in a fresh ``python -m workbench.measure.worker``; return its result dict."""
    env = os.environ.copy()
    env.update(thread_env(int(job["threads"])))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env[PARENT_ENV] = str(os.getpid())  # the worker ends itself when this process dies (measure/lifeline.py)
    with tempfile.TemporaryFile() as err:
        job = dict(job, spawned_at=time.time())
        proc = subprocess.Popen([sys.executable, "-m", "workbench.measure.worker"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=err, env=env, start_new_session=True)
        track(proc)  # killed by the CLI on SIGINT / SIGTERM / SIGHUP even if this frame never unwinds
        try:
            try:
                proc.stdin.write(json.dumps(job).encode())
                proc.stdin.close()
            except OSError:
                pass  # the worker died at once: its exit status says why
            lines: queue.Queue = queue.Queue()

            def pump():  # a thread, so the deadline holds even while the worker prints nothing
                for ln in proc.stdout:
                    lines.put(ln)
                lines.put(None)

            threading.Thread(target=pump, daemon=True).start()
            deadline = time.monotonic() + timeout_s
            result = error = None
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    _kill(proc)
                    raise MeasurementError(
                        f"measuring {what} failed: worker still running after timeout_s={timeout_s:g} s and was "
                        "killed; the runtime may hang on this model: check it, or raise Protocol.timeout_s")
                try:
                    line = lines.get(timeout=min(remaining, 1.0))
                except queue.Empty:
                    continue
                if line is None:
                    break
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(msg, dict):
                    continue
                if "result" in msg:
                    result = msg["result"]
                elif "error" in msg:
                    error = msg["error"]
                elif on_progress is not None and "progress" in msg:
                    on_progress(float(msg["progress"]))
                elif on_progress is not None and "message" in msg:
                    on_progress(str(msg["message"]))
            try:
                rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _kill(proc)
                rc = proc.returncode
        finally:
            _kill(proc)
        if result is not None:
            return result
        if error is not None:
            cls = getattr(errors, error.get("type", ""), None)
            if isinstance(cls, type) and issubclass(cls, errors.WorkbenchError):
                raise cls(error["message"])
            advice = ("use a smaller input or free memory" if error.get("type") == "MemoryError"
                      else "run the artifact directly with the runtime to see the full error")
            raise MeasurementError(f"measuring {what} failed: {error.get('message')}; {advice}")
        tail = _stderr_tail(err)
        if rc == 0:
            raise MeasurementError(f"measuring {what} failed: worker ended without a result: {tail or 'no output'}")
        raise MeasurementError(f"measuring {what} failed: {_crash_message(rc, tail)}")


def _adapter_ref(runtime) -> tuple[str, dict | None]:
    """(name, adapter import reference or None) for a registered name or a Runtime object."""
    from ..runtimes import Runtime, get_runtime

    if isinstance(runtime, str):
        rt = get_runtime(runtime)
        if type(rt).__module__.startswith("workbench."):
            return runtime, None
    elif isinstance(runtime, Runtime):
        rt = runtime
        if not rt.available():
            raise errors.RuntimeUnavailable(f"runtime {rt.name!r} is not installed; install it with: {rt.install_hint}")
    else:
        raise RecipeError(f"runtime must be a registered name such as 'ort' or a Runtime object, not {runtime!r}")
    cls = type(rt)
    module = sys.modules.get(cls.__module__)
    file = getattr(module, "__file__", None)
    if "<locals>" in cls.__qualname__ or cls.__module__ == "__main__" or not file:
        raise RecipeError(f"runtime adapter {cls.__qualname__} must be a module-level class in an importable "
                          "module so the measurement worker can re-create it")
    root = Path(file).resolve().parent
    for _ in range(cls.__module__.count(".") + (Path(file).name == "__init__.py")):
        root = root.parent
    return rt.name, {"spec": f"{cls.__module__}:{cls.__qualname__}", "path": str(root)}


def _job(mode: str, model_path: str, runtime, threads: int, inputs_path: str | None, protocol: Protocol) -> dict:
    if not isinstance(protocol, Protocol):
        raise RecipeError(f"protocol must be a workbench.measure.Protocol, not {type(protocol).__name__}")
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise RecipeError(f"threads must be a whole number >= 1, got {threads!r}")
    name, ref = _adapter_ref(runtime)
    if not os.path.isfile(model_path):
        raise ArtifactError(f"cannot load {os.path.basename(model_path)} with {name}: no such file {model_path}; "
                            "check the path or re-run the export")
    if inputs_path is not None and not os.path.isfile(inputs_path):
        raise ArtifactError(f"inputs file {inputs_path} does not exist; write it with numpy.savez or pass None")
    return {"mode": mode, "model_path": os.path.abspath(model_path), "runtime": name, "adapter": ref,
            "threads": threads, "protocol": protocol.to_json(),
            "inputs_path": os.path.abspath(inputs_path) if inputs_path is not None else None}


# --------------------------------------------------------------------------- public API

def measure_latency(model_path: str, runtime, threads: int, inputs_path: str | None,
                    protocol: Protocol = Protocol(), on_progress: ProgressCallback | None = None) -> LatencyMeasurement:
    """Latency of ``model_path`` on ``runtime`` (a registered name, or a Runtime object) with ``threads``.

    ``on_progress`` receives phase names ("loading", "warm-up", "timing") and fractions in [0, 1].
    """
    job = _job("latency", model_path, runtime, threads, inputs_path, protocol)
    return latency_from_job(job, model_path, protocol, on_progress)


def latency_from_job(job: dict, model_path: str, protocol: Protocol,
                     on_progress: ProgressCallback | None = None) -> LatencyMeasurement:
    """Run a latency job made by :func:`_job` in a fresh worker and build its measurement."""
    threads = job["threads"]
    res = run_worker(job, protocol.timeout_s, _describe(model_path, job["runtime"], threads), on_progress)
    samples = tuple(ns / 1e6 for ns in res["samples_ns"])
    stats = LatencyStats.from_samples(samples, resamples=protocol.bootstrap_resamples, seed=0)
    before, after = res["sentinel_ms"]
    drift = (after - before) / before * 100 if before > 0 else None
    warnings = assess_stability(stats, threads=threads, cores=res.get("cores"), loadavg_1m=res.get("loadavg_1m"),
                                sentinel_drift_pct=drift, timer_resolution_s=res.get("timer_resolution_s"),
                                stop_reason=res["stop_reason"], target_ci=protocol.target_ci,
                                other_load=res.get("other_load"))
    ph = res["phases"]
    return LatencyMeasurement(
        model_path=model_path, runtime=res["runtime"]["name"], runtime_version=res["runtime"]["version"],
        runtime_options=res["runtime"]["options"], threads=threads, input=res["input"], protocol=protocol,
        phases=Phases(ph["load_ms"], ph["process_to_ready_ms"], ph["first_ms"], ph.get("import_ms")),
        samples=samples, stats=stats,
        stability=Stability(warnings, drift, res.get("loadavg_1m"), (before, after), res.get("other_load")),
        stop_reason=res["stop_reason"])


def measure_memory(model_path: str, runtime, threads: int, inputs_path: str | None,
                   protocol: Protocol = Protocol()) -> MemoryMeasurement:
    """Resident memory (baseline, after load, peak over ``protocol.memory_runs`` inferences) in a fresh worker."""
    job = _job("memory", model_path, runtime, threads, inputs_path, protocol)
    res = run_worker(job, protocol.timeout_s, _describe(model_path, job["runtime"], threads))
    return MemoryMeasurement.from_worker(res, model_path=model_path, threads=threads)


def combine(measurements: Sequence[LatencyMeasurement]) -> LatencyMeasurement:
    """Pool the samples of several processes measuring the same thing (e.g. interleaved A/B rounds).

    Point statistics come from the pooled samples; the CIs of the median and p90 from a two-level
    bootstrap over processes (see :mod:`.pooled`), because latency differs between processes.
    Phases are the medians over processes; stability warnings are recomputed with the worst load
    average, the largest sentinel drift, and the spread of the per-process medians.
    """
    import statistics

    if not measurements:
        raise MeasurementError("nothing to combine: pass at least one latency measurement")
    first = measurements[0]
    keyset = {(m.runtime, m.threads, m.model_path) for m in measurements}
    if len(keyset) > 1:
        raise MeasurementError("cannot combine measurements of different artifacts, runtimes or thread counts")
    per = [p for m in measurements for p in m.process_samples()]
    samples = tuple(s for p in per for s in p)
    stats = LatencyStats.from_processes(per, resamples=first.protocol.bootstrap_resamples, seed=0)
    drifts = [m.stability.sentinel_drift_pct for m in measurements if m.stability.sentinel_drift_pct is not None]
    loads = [m.stability.loadavg_1m for m in measurements if m.stability.loadavg_1m is not None]
    others = [m.stability.other_load for m in measurements if m.stability.other_load is not None]
    drift = max(drifts, key=abs) if drifts else None
    lo, hi = stats.ci95_median or (float("-inf"), float("inf"))
    stop = "ci_target" if (hi - lo) / 2 <= first.protocol.target_ci * stats.median else "max_s"
    warnings = assess_stability(stats, threads=first.threads, cores=usable_cores(),
                                loadavg_1m=max(loads) if loads else None, sentinel_drift_pct=drift,
                                timer_resolution_s=time.get_clock_info("perf_counter").resolution,
                                stop_reason=stop, target_ci=first.protocol.target_ci,
                                other_load=max(others) if others else None,
                                process_medians=[statistics.median(p) for p in per])
    rounds = [r for m in measurements for r in (m.process_rounds or (None,) * len(m.process_samples()))]
    ids = {m.interleave_id for m in measurements}

    def med(attr):
        vals = [getattr(m.phases, attr) for m in measurements if getattr(m.phases, attr) is not None]
        return statistics.median(vals) if vals else None

    return LatencyMeasurement(
        model_path=first.model_path, runtime=first.runtime, runtime_version=first.runtime_version,
        runtime_options=first.runtime_options, threads=first.threads, input=first.input, protocol=first.protocol,
        phases=Phases(med("load_ms"), med("process_to_ready_ms"), med("first_ms"), med("import_ms")),
        samples=samples, stats=stats,
        stability=Stability(warnings, drift, max(loads) if loads else None, None, max(others) if others else None),
        stop_reason=stop, processes=sum(m.processes for m in measurements),
        process_n=tuple(len(p) for p in per) if len(per) > 1 else (),
        process_rounds=tuple(rounds) if None not in rounds else (), interleave=first.interleave if len(ids) == 1 else None)
