"""One normalised Row per results.json record, Pareto marks, and the all-measurements table.

Pure Python: no plotly, no rich, no numpy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

from workbench.pipeline.result_parts import finite
from workbench.pipeline.results import Result, ResultSet
from workbench.report.format import DASH, finite_pair, fmt_mb, fmt_ms, fmt_params, fmt_speedup, positive
from workbench.report.metric import ACCURACY, MetricStyle


@dataclass(frozen=True)
class Row:
    """One record of results.json, normalised; failed records keep None for what is missing."""

    id: str
    variant: str
    role: str
    family: str
    runtime: str
    threads: int | None
    status: str
    error: str | None
    precision: str | None
    accuracy: float | None = None
    accuracy_ci: tuple | None = None
    vs_ref: float | None = None
    median: float | None = None
    median_ci: tuple | None = None
    p90: float | None = None
    p90_ci: tuple | None = None
    ratio: float | None = None  # median / fp32-teacher median at the same threads
    ratio_ci: tuple | None = None
    verdict: str | None = None
    size_bytes: float | None = None
    peak_delta_mb: float | None = None
    params: float | None = None
    made_in_s: float | None = None  # cumulative time to make the artifact from the teacher
    load_ms: float | None = None  # phases: loading the artifact into the runtime (fresh process)
    first_ms: float | None = None  # the first inference after loading
    parity: float | None = None
    warnings: tuple = ()
    samples: tuple = ()  # every raw latency sample (ms); charts downsample, statistics never do
    profile: tuple = ()  # (op_type, time_pct), largest first
    comparisons: tuple = ()  # the record's comparisons (result_parts.Comparison)
    pareto: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def plottable(self) -> bool:
        return self.ok and self.median is not None and self.accuracy is not None

    @property
    def is_reference(self) -> bool:
        return self.family == "teacher" and self.precision in (None, "fp32")


def _samples(raw) -> tuple:
    """The positive finite latency samples, vectorised (a record holds up to ~100k of them)."""
    import numpy as np

    try:
        arr = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):  # malformed entries: fall back to checking one by one
        return tuple(v for v in raw if positive(v) is not None)
    if arr.ndim != 1:
        return tuple(v for v in raw if positive(v) is not None)
    return tuple(arr[np.isfinite(arr) & (arr > 0)].tolist())


def _row(rec: Result) -> Row:
    """The report's view of one record: typed numbers a report may print (None where missing)."""
    art, rt, ok = rec.artifact, rec.runtime, rec.ok
    lat, q, mem, ph = rec.latency, rec.quality, rec.memory, rec.phases
    parity = finite(q.parity_max_abs) if q else None
    return Row(
        id=str(rec.id), variant=str(rec.variant or art.id or rec.id),
        role=str(rec.role or "?"), family=str(rec.family or "?"), runtime=str(rt.name or "?"),
        threads=rt.threads, status=str(rec.status or "failed"),
        error=None if ok else str(rec.error or "no error message recorded"),
        precision=None if art.precision is None else str(art.precision),
        accuracy=finite(q.value) if q else None, accuracy_ci=finite_pair(q.ci95) if q else None,
        vs_ref=finite(q.vs_reference) if q else None,
        median=positive(lat.median) if lat else None, median_ci=finite_pair(lat.ci95_median) if lat else None,
        p90=positive(lat.p90) if lat else None, p90_ci=finite_pair(lat.ci95_p90) if lat else None,
        size_bytes=finite(art.size_bytes), peak_delta_mb=finite(mem.peak_delta_mb) if mem else None,
        params=finite(art.params), made_in_s=finite(art.made_in_s),
        load_ms=finite(ph.load_ms) if ph else None, first_ms=finite(ph.first_ms) if ph else None,
        parity=parity if parity is not None else finite(art.parity_max_abs),
        warnings=rec.stability.warnings,
        samples=_samples(lat.samples) if lat else (),
        profile=tuple(sorted(((str(p.op_type), finite(p.time_pct) or 0.0) for p in rec.profile), key=lambda t: -t[1])),
        comparisons=tuple(c for c in rec.comparisons if c.against is not None),
    )


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices (input order) of the (latency, accuracy) points no other point dominates.

    Lower latency and higher accuracy are better. A point is dominated when another one is at
    least as good on both axes and strictly better on one; identical points are all kept.
    """
    keep = []
    for i, (x, y) in enumerate(points):
        if not any(x2 <= x and y2 >= y and (x2 < x or y2 > y)
                   for j, (x2, y2) in enumerate(points) if j != i):
            keep.append(i)
    return keep


def build_rows(results: ResultSet) -> list[Row]:
    """Normalise every record, attach the comparison vs the fp32 teacher and Pareto marks."""
    rows = [_row(r) for r in results.results]
    refs = {r.id: r for r in rows if r.is_reference and r.ok}
    out = []
    for row in rows:
        if row.is_reference and row.ok:
            row = replace(row, ratio=1.0, ratio_ci=(1.0, 1.0), verdict="reference")
        else:  # prefer the teacher at the same threads, then on the same runtime
            comps = sorted((c for c in row.comparisons if c.against in refs), key=lambda c: (
                refs[c.against].threads != row.threads, refs[c.against].runtime != row.runtime))
            if comps:
                c = comps[0]
                row = replace(row, ratio=finite(c.ratio_median), ratio_ci=finite_pair(c.ci95), verdict=c.verdict)
        if row.vs_ref is None and row.accuracy is not None:  # fall back to the same-runtime teacher
            t = [r for r in refs.values() if r.runtime == row.runtime and r.accuracy is not None]
            if t:
                row = replace(row, vs_ref=row.accuracy - t[0].accuracy)
        out.append(row)
    for th in {r.threads for r in out} - {None}:
        group = [i for i, r in enumerate(out) if r.threads == th and r.plottable]
        for k in pareto_front([(out[i].median, out[i].accuracy) for i in group]):
            out[group[k]] = replace(out[group[k]], pareto=True)
    out.sort(key=lambda r: (r.threads if r.threads is not None else 1 << 30, r.runtime,
                            not r.ok, r.median if r.median is not None else math.inf, r.id))
    return out


# ---------------------------------------------------------------- the table (all renderers)
COLUMNS = ("variant", "family", "runtime", "threads", "accuracy [95% CI]", "median [95% CI]",
           "p90 [95% CI]", "speed-up vs teacher fp32 [95% CI]", "size", "peak mem Δ", "params",
           "time to make (s)", "parity (max abs)", "warnings", "Pareto")
PARETO_MARK = "★"
TABLE_NOTE = (
    "★ = on the Pareto front (accuracy vs median latency) of its thread count. Speed-up = teacher fp32 "
    "median / variant median at the same thread count, with the verdict of the interleaved comparison. "
    "Peak mem Δ = peak RSS minus the pre-load baseline.")


def columns(style: MetricStyle = ACCURACY) -> tuple:
    """COLUMNS with the metric's own name in its header ("cosine [95% CI]" for a cosine run)."""
    return tuple(f"{style.name} [95% CI]" if c == "accuracy [95% CI]" else c for c in COLUMNS)


def table_note(style: MetricStyle = ACCURACY) -> str:
    """TABLE_NOTE in the metric's words."""
    return TABLE_NOTE.replace("(accuracy vs", f"({style.name} vs")


MADE_IN_NOTE = (
    "Time to make = cumulative wall time to produce the artifact from the pretrained teacher: student "
    "training + ONNX export + quantization (the teacher's own training is not included).")


def table_cells(r: Row, style: MetricStyle = ACCURACY) -> list[tuple[str, float | str]]:
    """(text, sort key) per COLUMNS entry, the metric written as ``style`` writes it; failed rows say so
    and leave the numbers empty."""
    def n(v):
        return v if v is not None else math.inf
    head = [(r.variant, r.variant), (r.family, r.family), (r.runtime, r.runtime),
            (str(r.threads) if r.threads is not None else DASH, n(r.threads))]
    art = [(fmt_mb(r.size_bytes), n(r.size_bytes)), None, (fmt_params(r.params), n(r.params)),
           (DASH if r.made_in_s is None else f"{r.made_in_s:.1f}", n(r.made_in_s)),
           (DASH if r.parity is None else f"{r.parity:.1e}", n(r.parity))]
    if not r.ok:
        art[1] = (DASH, math.inf)
        return head + [("FAILED", -1.0)] + [(DASH, math.inf)] * 3 + art + [(DASH, math.inf), ("", 1)]
    art[1] = (DASH if r.peak_delta_mb is None else f"{r.peak_delta_mb:.1f} MB", n(r.peak_delta_mb))
    return head + [
        (style.fmt(r.accuracy, r.accuracy_ci), n(r.accuracy)),
        (fmt_ms(r.median, r.median_ci), n(r.median)),
        (fmt_ms(r.p90, r.p90_ci), n(r.p90)),
        (fmt_speedup(r.ratio, r.ratio_ci, r.verdict), 1 / r.ratio if r.ratio else math.inf),
    ] + art + [(str(len(r.warnings)), len(r.warnings)), (PARETO_MARK if r.pareto else "", 0 if r.pareto else 1)]
