"""Across runtimes: accuracy through each runtime vs the PyTorch source, and latency of the same model on
every runtime vs its fp32 artifact on ort. Pure functions: the runner computes these BEFORE it builds
each record (records are built once, never patched).

Each record gets
    model            the PyTorch model its artifact comes from ("teacher", "cnn-s.kd", ...)
    quality.vs_pytorch  {pytorch_accuracy, gap_points, tolerance_points, within, rule}   (:func:`vs_pytorch`)
    cross_runtime    [{against, ratio_median, ci95, verdict, paired, method}] vs ``<model>.fp32`` on ort at the
                     same threads (and vs the same variant on ort, when it exists there)  (:func:`cross_runtime`)

Latency ratios between runtimes come from SEPARATE interleaved runs (the harness interleaves the artifacts
of one runtime per run), so they are unpaired: the two-level bootstrap resamples each side's processes
independently and drift between the two runs is not cancelled. Ratios against ort from the ort run itself
are paired by round.
"""
from __future__ import annotations

CROSS_RUNTIME_NOTE = (
    "Cross-runtime ratios compare separate interleaved runs (the harness interleaves the artifacts of one "
    "runtime at a time): unpaired two-level bootstrap over processes and samples, so slow drift between the "
    "runs is not cancelled as it is within a run. Ratios of ort artifacts against ort fp32 are paired by round.")
BASELINE_RUNTIME = "ort"


def vs_pytorch(value: float | None, precision: str, pytorch: float | None, recipe) -> dict | None:
    """The gap of an artifact's metric ``value`` through a runtime to its PyTorch model's (``pytorch``) and
    whether it is within tolerance (fp32: [export] accuracy_tolerance; quantized: [quantize] max_drop, the
    quantization budget); None when either is unknown."""
    if value is None or pytorch is None:
        return None
    fp32 = precision == "fp32"
    tol = recipe.export.accuracy_tolerance if fp32 else recipe.quantize.max_drop
    gap = (value - pytorch) * 100
    return {"pytorch_accuracy": pytorch, "gap_points": round(gap, 4), "tolerance_points": tol,
            "within": bool(gap >= -tol - 1e-9) if not fp32 else bool(abs(gap) <= tol + 1e-9),
            "rule": ("fp32 artifact: |runtime - PyTorch| <= [export] accuracy_tolerance" if fp32 else
                     "quantized artifact: runtime - PyTorch fp32 >= -[quantize] max_drop")}


def cross_runtime(variant: str, model: str, runtime: str, threads, latencies: dict) -> list[dict]:
    """Comparisons of the measurement of ``variant`` on ``runtime`` at ``threads`` vs ``<model>.fp32`` on ort
    (same threads), and vs the same variant on ort when that exists. ``latencies``: (variant, runtime,
    threads) -> the LatencyMeasurement JSON of every ok measurement (absent: failed or not measured)."""
    from ..measure import compare

    rec = latencies.get((variant, runtime, threads))
    if rec is None:
        return []
    out = []
    targets = [f"{model}.fp32"]
    if runtime != BASELINE_RUNTIME and variant not in targets:
        targets.append(variant)
    for target in targets:
        base = latencies.get((target, BASELINE_RUNTIME, threads))
        if base is None or (target, BASELINE_RUNTIME) == (variant, runtime):
            continue
        c = compare(base, rec, against=f"{target}@{BASELINE_RUNTIME}/t{threads}").to_json()
        c["paired"] = runtime == BASELINE_RUNTIME
        c["kind"] = "fp32 of the same model on ort" if target == targets[0] else "same variant on ort"
        out.append(c)
    return out


def add_cross_runtime(records: list[dict]) -> None:
    """``cross_runtime`` of records assembled elsewhere (report fixtures, merged result files): the same
    comparisons as :func:`cross_runtime`, keyed by each record's variant, runtime and threads."""
    lat = {(r["variant"], r["runtime"]["name"], r["runtime"]["options"].get("threads")): r for r in records
           if r["status"] == "ok" and r.get("latency")}
    for rec in records:
        variant, rt, th = rec["variant"], rec["runtime"]["name"], rec["runtime"]["options"].get("threads")
        rec["cross_runtime"] = cross_runtime(variant, rec.get("model"), rt, th, lat)
