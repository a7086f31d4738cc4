"""One normalised Row per results.json record, Pareto marks, and the all-measurements table.

Pure Python: no plotly, no rich, no numpy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

from workbench.report.format import (DASH, _d, _get, _l, _num, _pair, _pos, fmt_acc, fmt_mb, fmt_ms,
                                     fmt_params, fmt_speedup)


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
    comparisons: tuple = ()  # the record's raw comparison dicts
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

    values = _l(raw)
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):  # malformed entries: fall back to checking one by one
        return tuple(v for v in values if _pos(v) is not None)
    if arr.ndim != 1:
        return tuple(v for v in values if _pos(v) is not None)
    return tuple(arr[np.isfinite(arr) & (arr > 0)].tolist())


def _row(rec: dict) -> Row:
    art, lat, q = _d(rec.get("artifact")), _d(rec.get("latency")), _d(rec.get("quality"))
    threads = _get(rec, "runtime", "options", "threads")
    ok = rec.get("status") == "ok"
    return Row(
        id=str(rec.get("id")), variant=str(rec.get("variant") or art.get("id") or rec.get("id")),
        role=str(rec.get("role") or "?"), family=str(rec.get("family") or "?"),
        runtime=str(_get(rec, "runtime", "name") or "?"),
        threads=threads if isinstance(threads, int) and not isinstance(threads, bool) else None,
        status=str(rec.get("status") or "failed"),
        error=None if ok else str(rec.get("error") or "no error message recorded"),
        precision=None if art.get("precision") is None else str(art.get("precision")),
        accuracy=_num(q.get("value")), accuracy_ci=_pair(q.get("ci95")), vs_ref=_num(q.get("vs_reference")),
        median=_pos(lat.get("median")), median_ci=_pair(lat.get("ci95_median")),
        p90=_pos(lat.get("p90")), p90_ci=_pair(lat.get("ci95_p90")),
        size_bytes=_num(art.get("size_bytes")), peak_delta_mb=_num(_get(rec, "memory", "peak_delta_mb")),
        params=_num(art.get("params")), made_in_s=_num(art.get("made_in_s")),
        load_ms=_num(_get(rec, "phases", "load_ms")), first_ms=_num(_get(rec, "phases", "first_ms")),
        parity=_num(q.get("parity_max_abs")) if _num(q.get("parity_max_abs")) is not None
        else _num(art.get("parity_max_abs")),
        warnings=tuple(w for w in _l(_get(rec, "stability", "warnings")) if isinstance(w, dict)),
        samples=_samples(lat.get("samples")),
        profile=tuple(sorted(((str(p.get("op_type")), _num(p.get("time_pct")) or 0.0) for p in
                              _l(rec.get("profile")) if isinstance(p, dict)), key=lambda t: -t[1])),
        comparisons=tuple(c for c in _l(rec.get("comparisons")) if isinstance(c, dict)
                          and isinstance(c.get("against"), str)),
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


def build_rows(results: dict) -> list[Row]:
    """Normalise every record, attach the comparison vs the fp32 teacher and Pareto marks."""
    rows = [_row(r) for r in _l(results.get("results")) if isinstance(r, dict)]
    refs = {r.id: r for r in rows if r.is_reference and r.ok}
    out = []
    for row in rows:
        if row.is_reference and row.ok:
            row = replace(row, ratio=1.0, ratio_ci=(1.0, 1.0), verdict="reference")
        else:  # prefer the teacher at the same threads, then on the same runtime
            comps = sorted((c for c in row.comparisons if c.get("against") in refs), key=lambda c: (
                refs[c["against"]].threads != row.threads, refs[c["against"]].runtime != row.runtime))
            if comps:
                c = comps[0]
                row = replace(row, ratio=_num(c.get("ratio_median")), ratio_ci=_pair(c.get("ci95")),
                              verdict=None if c.get("verdict") is None else str(c.get("verdict")))
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
MADE_IN_NOTE = (
    "Time to make = cumulative wall time to produce the artifact from the pretrained teacher: student "
    "training + ONNX export + quantization (the teacher's own training is not included).")


def table_cells(r: Row) -> list[tuple[str, float | str]]:
    """(text, sort key) per COLUMNS entry; failed rows say so and leave the numbers empty."""
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
        (fmt_acc(r.accuracy, r.accuracy_ci), n(r.accuracy)),
        (fmt_ms(r.median, r.median_ci), n(r.median)),
        (fmt_ms(r.p90, r.p90_ci), n(r.p90)),
        (fmt_speedup(r.ratio, r.ratio_ci, r.verdict), 1 / r.ratio if r.ratio else math.inf),
    ] + art + [(str(len(r.warnings)), len(r.warnings)), (PARETO_MARK if r.pareto else "", 0 if r.pareto else 1)]
