"""Why B is slower than A: per-operator profiles side by side, for `workbench bench`.

Every model a bench measures on a runtime with a profiler gets one extra short pass in its own fresh
worker (:func:`workbench.measure.profile_ops`, never inside the timed runs): op type -> share of
time and ms per inference. This module takes that pass for one bench row (:func:`profile_fields`),
compares each model's profile with the first model's at the same thread count (:func:`op_changes`)
and prints the op types whose time changed most, e.g. ``+0.92 ms in ConvInteger (new), -0.41 ms in
Conv (gone)`` (:func:`print_profiles`).

The times are the runtime's kernel times summed per op type (its own profiler), not wall-clock
latency: they explain a latency ratio, the harness's timed runs measure it.
"""
from __future__ import annotations

from ..errors import ArtifactError, MeasurementError
from .profile import PROFILE_METHOD, has_profiler, profile_ops

PROFILE_BUDGET_MS = 2000.0  # profiled runs per model ~ this many ms of inference (bounded below)
MIN_RUNS, MAX_RUNS = 10, 50
TOP = 3  # op types printed per model
MIN_SHARE = 0.01  # changes smaller than 1% of the larger profile's total are not printed


def profile_runs(median_ms: float | None) -> int:
    """How many profiled inferences to run: about PROFILE_BUDGET_MS of inference, 10 to 50 runs."""
    if not median_ms or median_ms <= 0:
        return MAX_RUNS
    return max(MIN_RUNS, min(MAX_RUNS, int(PROFILE_BUDGET_MS / median_ms)))


def profile_fields(model: str, runtime: str, threads: int, inputs_path: str, protocol,
                   median_ms: float | None = None) -> dict:
    """The profile pass of one bench row, as fields to add to it.

    ``{"profile": [{op_type, time_pct, time_ms, count}], "profile_runs": n, "profile_method": ...}``;
    ``{"profile": None}`` for a runtime without a profiler; ``{"profile": None, "profile_error": msg}``
    when the pass failed (the timed measurement stands either way).
    """
    if not has_profiler(runtime):
        return {"profile": None}
    runs = profile_runs(median_ms)
    try:
        ops = profile_ops(model, runtime, threads, inputs_path, runs=runs, protocol=protocol)
    except (MeasurementError, ArtifactError) as e:
        return {"profile": None, "profile_error": str(e)}
    return {"profile": ops, "profile_runs": runs, "profile_method": PROFILE_METHOD}


def op_changes(base: list[dict] | None, other: list[dict] | None) -> list[dict] | None:
    """Per op type, ms per inference in ``other`` minus in ``base`` (both normalised profiles).

    ``[{op_type, base_ms, ms, delta_ms}]``, largest absolute change first (ties by name); an op type
    missing on one side counts 0 ms there. None when either profile is missing.
    """
    if not base or not other:
        return None
    a = _by_type(base)
    b = _by_type(other)
    rows = [{"op_type": op, "base_ms": a.get(op, 0.0), "ms": b.get(op, 0.0),
             "delta_ms": b.get(op, 0.0) - a.get(op, 0.0)} for op in set(a) | set(b)]
    rows.sort(key=lambda r: (-abs(r["delta_ms"]), r["op_type"]))
    return rows


def _by_type(ops: list[dict]) -> dict[str, float]:
    out: dict[str, float] = {}
    for o in ops:
        out[str(o["op_type"])] = out.get(str(o["op_type"]), 0.0) + float(o.get("time_ms") or 0.0)
    return out


def changes_vs_first(rows: list[dict], n_models: int) -> list[list[dict] | None]:
    """For bench rows laid out per thread count, every model in order: each row's :func:`op_changes`
    against the first model's row at the same thread count (None for the first model itself, and
    where a profile is missing)."""
    out: list[list[dict] | None] = []
    for k, row in enumerate(rows):
        base = rows[k - k % n_models]
        out.append(None if base is row else op_changes(base.get("profile"), row.get("profile")))
    return out


def fmt_ms(ms: float, sign: bool = False) -> str:
    """Milliseconds with precision that suits their size: 12.3, 0.92, 0.041."""
    a = abs(ms)
    spec = ".1f" if a >= 10 else ".2f" if a >= 0.1 else ".3f"
    return format(ms, ("+" if sign else "") + spec)


def describe_changes(changes: list[dict], top: int = TOP, min_share: float = MIN_SHARE) -> str:
    """'+0.92 ms in ConvInteger (new), -0.41 ms in Conv (gone)': the ``top`` largest changes that are at
    least ``min_share`` of the larger total; says so when none is."""
    total = max(sum(c["base_ms"] for c in changes), sum(c["ms"] for c in changes))
    floor = max(min_share * total, 1e-6)
    shown = [c for c in changes if abs(c["delta_ms"]) >= floor][:top]
    if not shown:
        return f"no op type changed by more than {fmt_ms(floor)} ms"
    parts = []
    for c in shown:
        tag = " (new)" if c["base_ms"] == 0 else " (gone)" if c["ms"] == 0 else ""
        parts.append(f"{fmt_ms(c['delta_ms'], sign=True)} ms in {c['op_type']}{tag}")
    return ", ".join(parts)


def top_ops(ops: list[dict], n: int = TOP + 1) -> str:
    """'Conv 62% (0.40 ms), Gemm 20% (0.13 ms)' for the ``n`` largest op types of a profile."""
    return ", ".join(f"{o['op_type']} {o['time_pct']:.0f}% ({fmt_ms(o['time_ms'])} ms)" for o in ops[:n])


def print_profiles(console, runtime: str, names: list[str], rows: list[dict]) -> None:
    """After bench's table: each model's largest op types (one model) or the op types whose time
    changed most vs the first model (2+ models); one note for a runtime without a profiler."""
    from rich.markup import escape

    if not has_profiler(runtime):
        console.print(f"no per-operator profile for {escape(runtime)} (its adapter has no profiler)",
                      highlight=False, soft_wrap=True)
        return
    n = len(names)
    label = [f"{names[k % n]} ({r['runtime']['options']['threads']} thread(s))" for k, r in enumerate(rows)]
    profiled = [(lab, r) for lab, r in zip(label, rows) if r.get("profile")]
    if profiled:
        head = (f"per-operator profile on {runtime} (ms per inference by op type, the runtime's profiler in a "
                "separate pass; kernel time, not latency)")
        console.print(head + (f", vs {escape(names[0])}:" if n > 1 else ":"), highlight=False, soft_wrap=True)
    for k, (lab, r) in enumerate(zip(label, rows)):
        if not r.get("profile"):
            continue
        total = sum(o["time_ms"] for o in r["profile"])
        ch = r.get("profile_changes")
        if n == 1 or k % n == 0 or ch is None:
            console.print(f"  {escape(lab)}: {fmt_ms(total)} ms in kernels; {escape(top_ops(r['profile']))}",
                          highlight=False, soft_wrap=True)
            continue
        base = sum(c["base_ms"] for c in ch)
        what = escape(describe_changes(ch))
        console.print(f"  {escape(lab)}: {what}  (kernels {fmt_ms(base)} -> {fmt_ms(total)} ms)",
                      highlight=False, soft_wrap=True)
    for lab, r in zip(label, rows):
        if r.get("profile_error"):
            console.print(f"[yellow]profile pass failed[/yellow] {escape(lab)}: {escape(r['profile_error'])}",
                          highlight=False, soft_wrap=True)
