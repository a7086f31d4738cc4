"""Per-operator profile: which op types take the time, from the runtime's own profiler.

A separate pass in its own fresh worker: profilers add overhead per node, so a profiled run is
never a timed run. The runtime adapter does the runtime-specific part (``Runtime.profile``); this
module only normalises its answer to op type -> share of time, so a report can say WHY a variant
is slow (e.g. ConvInteger kernels in a dynamically quantized conv net).
"""
from __future__ import annotations

from ..errors import MeasurementError, RecipeError
from .protocol import Protocol

PROFILE_METHOD = ("runtime's own profiler in a separate worker (never during timing); first run skipped; "
                  "time_ms = kernel time per run of all nodes of that op type, median over the runs; "
                  "count = such nodes per run")


def has_profiler(runtime: str) -> bool:
    """Whether the registered runtime ``runtime``'s adapter has its own profiler (overrides Runtime.profile)."""
    from ..runtimes import RUNTIMES, Runtime

    return type(RUNTIMES.get(runtime)).profile is not Runtime.profile


def normalise(ops: list[dict]) -> list[dict]:
    """[{op_type, time_ms, count}] from an adapter -> add time_pct (shares sum to 100), largest first."""
    rows = []
    for op in ops:
        try:
            rows.append({"op_type": str(op["op_type"]), "time_ms": float(op["time_ms"]),
                         "count": int(op.get("count", 0))})
        except (KeyError, TypeError, ValueError):
            raise MeasurementError(
                f"runtime profiler returned a malformed entry {op!r}; expected "
                "{'op_type': str, 'time_ms': float, 'count': int} — fix the adapter's profile()") from None
    total = sum(r["time_ms"] for r in rows)
    for r in rows:
        r["time_pct"] = 100.0 * r["time_ms"] / total if total > 0 else 0.0
    rows.sort(key=lambda r: (-r["time_ms"], r["op_type"]))
    return [{"op_type": r["op_type"], "time_pct": r["time_pct"], "time_ms": r["time_ms"], "count": r["count"]}
            for r in rows]


def run_profile(job: dict, chan) -> dict:
    """Worker side: load once for the input specs, make feeds, then let the adapter profile."""
    from .feeds import make_feeds, read_inputs, resolve_adapter

    threads, runs = int(job["threads"]), int(job["runs"])
    rt = resolve_adapter(job)
    chan.message("loading")
    rt.prepare()
    session = rt.load(job["model_path"], threads)
    feeds, info = make_feeds(session.input_specs(), read_inputs(job.get("inputs_path")), job.get("inputs_path"))
    options = session.options()
    del session
    chan.message("profiling")
    ops = rt.profile(job["model_path"], threads, feeds, runs)
    chan.progress(1.0)
    return {"runtime": {"name": rt.name, "version": rt.version(), "options": {"threads": threads, **options}},
            "input": info, "ops": list(ops or [])}


def profile_ops(model_path: str, runtime, threads: int, inputs_path: str | None, runs: int = 50,
                protocol: Protocol = Protocol()) -> list[dict]:
    """Per-op-type time shares of ``model_path`` on ``runtime``, from ``runs`` profiled inferences
    in a fresh worker: ``[{"op_type", "time_pct", "time_ms", "count"}]``, largest share first.

    ``[]`` when the runtime has no profiler. The op types are the runtime's names after its graph
    optimisations (e.g. ORT reports fused "FusedConv" or NCHWc "Conv" for a Conv + Relu).
    """
    from .harness import _describe, _job, run_worker

    if not isinstance(runs, int) or isinstance(runs, bool) or runs < 1:
        raise RecipeError(f"runs must be a whole number >= 1, got {runs!r}")
    job = dict(_job("profile", model_path, runtime, threads, inputs_path, protocol), runs=runs)
    res = run_worker(job, protocol.timeout_s, _describe(model_path, job["runtime"], threads) + " (profile)")
    return normalise(res.get("ops") or [])
