"""The answer: the accuracy budget, the recommendation, the best variant of each approach, and
the students-vs-quantized-teacher comparison. Pure Python: no plotly, no rich, no numpy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from workbench.pipeline.result_parts import finite, mapping
from workbench.pipeline.results import ResultSet
from workbench.report.format import finite_pair, fmt_mb, fmt_ms, fmt_speedup, fmt_threads
from workbench.report.metric import ACCURACY, MetricStyle
from workbench.report.rows import Row

DEFAULT_MAX_DROP_POINTS = 0.5  # accuracy budget vs the fp32 teacher, in percentage points
TRIO = (("distillation", "distilled"), ("quantization", "quantized-teacher"),
        ("both", "distilled+quantized"))
EPS = 1e-9


@dataclass(frozen=True)
class Budget:
    """The recommendation's budget in the run metric's own units: ``max_drop`` below the fp32 teacher
    (accuracy: points; cosine: cosine units), the thread count (None: the report chooses), the absolute
    ``limits`` ({latency_ms, size_mb, min_metric}, only those given) and whether it is the default."""
    max_drop: float
    threads: int | None
    limits: dict
    default: bool


def budget_of(results: ResultSet, style: MetricStyle = ACCURACY) -> Budget:
    """The budget from the recipe's ``budget`` table (a recipe's [budget] or `workbench report --budget`),
    in ``style``'s units; the metric's default drop (accuracy 0.5 points, cosine 0.05) when none is given."""
    b = mapping(results.run.recipe.get("budget"))
    drop = finite(b.get("max_drop"))
    if drop is None:
        drop = finite(b.get("max_accuracy_drop_points"))  # older name of `workbench report --budget max_drop`
    th = b.get("threads")
    limits, drop = limits_of(results, style), style.default_max_drop if drop is None else drop
    th = th if isinstance(th, int) else None
    given = any(k in b for k in ("max_drop", "max_accuracy_drop_points", "threads")) or bool(limits)
    return Budget(drop, th, limits, not given)


LIMIT_KEYS = {"latency_ms": "median latency at most this many ms", "size_mb": "artifact size at most this many MB",
              "min_accuracy": "accuracy at least this (0.97 or 97 = 97%)",
              "min_metric": "the task's metric at least this, in its own units (accuracy 0.97; cosine 0.95)",
              "max_drop": "the metric at most this far below the fp32 teacher's (accuracy: points; cosine: e.g. 0.05)",
              "threads": "the thread count the recommendation is made for"}


def parse_budget(text: str) -> dict:
    """``latency_ms=5,size_mb=1,min_accuracy=0.97`` -> the recipe's budget dict (see :func:`budget_of`).

    Raises ValueError with one line naming the bad part and the valid keys."""
    out: dict = {}
    for part in [p.strip() for p in str(text).split(",") if p.strip()]:
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in LIMIT_KEYS:
            raise ValueError(f"budget part {part!r} is not KEY=VALUE with KEY one of {', '.join(LIMIT_KEYS)} "
                             "(e.g. latency_ms=5,size_mb=1,min_accuracy=0.97)")
        try:
            v = int(value) if key == "threads" else float(value)
        except ValueError:
            raise ValueError(f"budget {key}={value!r} is not a number") from None
        if v < 0 or (key == "threads" and v < 1):
            raise ValueError(f"budget {key} must be {'>= 1' if key == 'threads' else '>= 0'}, got {value}")
        if key == "min_accuracy":
            v = v / 100 if v > 1 else v
            if v > 1:
                raise ValueError(f"budget min_accuracy={value} is above 100%")
        out[key] = v
    if not out:
        raise ValueError("empty budget; give e.g. latency_ms=5,size_mb=1,min_accuracy=0.97")
    return out


def limits_of(results: ResultSet, style: MetricStyle = ACCURACY) -> dict:
    """The absolute limits of the budget: {latency_ms, size_mb, min_metric} (only those given); ``min_metric``
    in the metric's stored units (accuracy as a fraction: a min_accuracy of 97 reads 0.97)."""
    b = mapping(results.run.recipe.get("budget"))
    out = {k: float(b[k]) for k in ("latency_ms", "size_mb") if finite(b.get(k)) is not None}
    low = finite(b.get("min_metric"))
    if low is None and style.percent:
        low = finite(b.get("min_accuracy"))
    if low is not None:
        out["min_metric"] = low / 100 if style.percent and low > 1 else low
    return out


def limits_text(limits: dict, style: MetricStyle = ACCURACY) -> str:
    """The absolute limits of a budget in words, e.g. "median <= 5 ms, size <= 1 MB"."""
    parts = []
    if "latency_ms" in limits:
        parts.append(f"median latency <= {limits['latency_ms']:g} ms")
    if "size_mb" in limits:
        parts.append(f"size <= {limits['size_mb']:g} MB")
    if "min_metric" in limits:
        parts.append(style.minimum_text(limits["min_metric"]))
    return ", ".join(parts)


def meets_limits(row: Row, limits: dict | None) -> bool:
    """The row satisfies every absolute limit of the budget (latency, size, minimum of the metric)."""
    if not limits:
        return True
    if "latency_ms" in limits and not (row.median is not None and row.median <= limits["latency_ms"] + EPS):
        return False
    if "size_mb" in limits and not (row.size_bytes is not None and row.size_bytes / 1e6 <= limits["size_mb"] + EPS):
        return False
    if "min_metric" in limits and not (row.accuracy is not None and row.accuracy >= limits["min_metric"] - EPS):
        return False
    return True


def within_budget(row: Row, max_drop_points: float, scale: float = 100.0) -> bool:
    """The row's metric is at most ``max_drop_points`` below the fp32 teacher's on its runtime (``scale``:
    stored difference -> budget units; 100 for accuracy points, 1 for a plain metric such as cosine)."""
    return row.vs_ref is not None and row.vs_ref * scale >= -max_drop_points - EPS


def recommend(rows: Sequence[Row], max_drop_points: float = DEFAULT_MAX_DROP_POINTS,
              threads: int = 1, limits: dict | None = None, scale: float = 100.0) -> Row | None:
    """The fastest variant at `threads` whose accuracy is within the budget of the fp32 teacher's and that
    meets the absolute ``limits`` (latency_ms, size_mb, min_metric) when given; ``scale`` as in within_budget."""
    cands = [r for r in rows if r.plottable and r.threads == threads and within_budget(r, max_drop_points, scale)
             and meets_limits(r, limits)]
    return min(cands, key=lambda r: (r.median, -r.accuracy, r.id)) if cands else None


def best_of_family(rows, family, max_drop_points, threads, runtime=None, scale: float = 100.0) -> tuple[Row | None, bool]:
    """Fastest member within the budget; else the most accurate one (flag False)."""
    fam = [r for r in rows if r.family == family and r.plottable and r.threads == threads
           and (runtime is None or r.runtime == runtime)]
    best = recommend(fam, max_drop_points, threads, scale=scale)
    if best is not None:
        return best, True
    return (max(fam, key=lambda r: (r.accuracy, -r.median)) if fam else None), False


@dataclass(frozen=True)
class Pick:
    """The best variant of one approach (distillation, quantization, both) and whether it is within budget."""
    approach: str  # "distillation" / "quantization" / "both"
    family: str
    row: Row | None
    within_budget: bool


def answer_sentence(rec: Row | None, teacher: Row | None, threads: int, several_runtimes: bool = False,
                    style: MetricStyle = ACCURACY) -> str:
    """The recommendation in one sentence, in ``style``'s words and numbers. ``teacher``: the fp32 teacher on
    the recommendation's runtime (its speed-up is against that one)."""
    m = style.name
    if teacher is None:
        return (f"No recommendation: the fp32 teacher has no successful {fmt_threads(threads)} "
                f"measurement with {m}, so nothing can be compared against it.")
    if rec is None:
        return "No recommendation: no variant meets the budget."
    if rec.is_reference:
        return (f"Keep the teacher: no compressed variant is both faster and within the {m} "
                f"budget ({rec.variant} on {rec.runtime}, {fmt_threads(threads)}: "
                f"{fmt_ms(rec.median, rec.median_ci)}, {style.fmt(rec.accuracy, rec.accuracy_ci)}).")
    return (f"Recommended: {rec.variant} on {rec.runtime}, {fmt_threads(threads)}: "
            f"speed-up {fmt_speedup(rec.ratio, rec.ratio_ci)} over the fp32 teacher"
            f"{' on the same runtime' if several_runtimes else ''} "
            f"({fmt_ms(rec.median, rec.median_ci)} vs {fmt_ms(teacher.median, teacher.median_ci)}), "
            f"{m} {style.fmt(rec.accuracy, rec.accuracy_ci)} ({style.diff(rec.vs_ref)} vs the teacher's "
            f"{style.fmt(teacher.accuracy)}), {fmt_mb(rec.size_bytes)} (teacher {fmt_mb(teacher.size_bytes)}).")


# ---------------------------------------------------------------- students vs the quantized teacher
@dataclass(frozen=True)
class VsQuantized:
    """A distilled student against the best quantized teacher: latency ratio, CI, verdict, accuracy gap."""
    student: Row
    quantized: Row
    ratio: float | None  # student median / quantized-teacher median
    ratio_ci: tuple | None
    verdict: str
    direct: bool  # True: a paired, interleaved comparison; False: combined from the two vs-teacher CIs
    acc_diff: float | None
    acc_verdict: str


def _ratio_verdict(ci) -> str:
    if ci is None:
        return "inconclusive"
    lo, hi = ci
    if hi < 0.98:
        return "faster"
    if lo > 1.02:
        return "slower"
    return "equivalent" if lo >= 0.98 and hi <= 1.02 else "inconclusive"


def compare_students_to_quantized(rows, max_drop_points, threads, scale: float = 100.0) -> list[VsQuantized]:
    """Each student at ``threads`` against the best quantized teacher on its runtime (direct interleaved comparison when measured)."""
    out = []
    for s in rows:
        if s.role != "student" or not s.plottable or s.threads != threads:
            continue
        q, _ = best_of_family(rows, "quantized-teacher", max_drop_points, threads, s.runtime, scale)
        if q is None:
            continue
        direct = [c for c in s.comparisons if c.against == q.id]
        if direct:
            ratio, ci = finite(direct[0].ratio_median), finite_pair(direct[0].ci95)
            verdict = str(direct[0].verdict or _ratio_verdict(ci))
        else:
            ratio = s.median / q.median if q.median else None
            ci = None
            if s.ratio_ci and q.ratio_ci and q.ratio_ci[0] > 0:  # conservative: extremes of both CIs
                ci = (s.ratio_ci[0] / q.ratio_ci[1], s.ratio_ci[1] / q.ratio_ci[0])
            verdict = _ratio_verdict(ci)
        acc_v = "CIs overlap: not distinguishable on this test set"
        if s.accuracy_ci and q.accuracy_ci:
            if s.accuracy_ci[1] < q.accuracy_ci[0]:
                acc_v = "lower (CIs do not overlap)"
            elif s.accuracy_ci[0] > q.accuracy_ci[1]:
                acc_v = "higher (CIs do not overlap)"
        out.append(VsQuantized(s, q, ratio, ci, verdict, bool(direct), s.accuracy - q.accuracy, acc_v))
    return out
