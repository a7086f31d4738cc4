"""The answer: the accuracy budget, the recommendation, the best variant of each approach, and
the students-vs-quantized-teacher comparison. Pure Python: no plotly, no rich, no numpy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from workbench.report.format import (_get, _num, _pair, fmt_acc, fmt_mb, fmt_ms, fmt_pts, fmt_speedup,
                                     fmt_threads)
from workbench.report.rows import Row

DEFAULT_MAX_DROP_POINTS = 0.5  # accuracy budget vs the fp32 teacher, in percentage points
TRIO = (("distillation", "distilled"), ("quantization", "quantized-teacher"),
        ("both", "distilled+quantized"))
EPS = 1e-9


def budget_of(results: dict) -> tuple[float, int | None]:
    """(max accuracy drop in points, thread count or None) from the recipe's budget, else defaults."""
    b = _get(results, "run", "recipe", "budget")
    b = b if isinstance(b, dict) else {}
    drop = _num(b.get("max_accuracy_drop_points"))
    th = b.get("threads")
    return (DEFAULT_MAX_DROP_POINTS if drop is None else drop), (th if isinstance(th, int) else None)


def within_budget(row: Row, max_drop_points: float) -> bool:
    return row.vs_ref is not None and row.vs_ref * 100 >= -max_drop_points - EPS


def recommend(rows: Sequence[Row], max_drop_points: float = DEFAULT_MAX_DROP_POINTS,
              threads: int = 1) -> Row | None:
    """The fastest variant at `threads` whose accuracy is within the budget of the fp32 teacher's."""
    cands = [r for r in rows if r.plottable and r.threads == threads and within_budget(r, max_drop_points)]
    return min(cands, key=lambda r: (r.median, -r.accuracy, r.id)) if cands else None


def best_of_family(rows, family, max_drop_points, threads, runtime=None) -> tuple[Row | None, bool]:
    """Fastest member within the budget; else the most accurate one (flag False)."""
    fam = [r for r in rows if r.family == family and r.plottable and r.threads == threads
           and (runtime is None or r.runtime == runtime)]
    best = recommend(fam, max_drop_points, threads)
    if best is not None:
        return best, True
    return (max(fam, key=lambda r: (r.accuracy, -r.median)) if fam else None), False


@dataclass(frozen=True)
class Pick:
    approach: str  # "distillation" / "quantization" / "both"
    family: str
    row: Row | None
    within_budget: bool


def answer_sentence(rec: Row | None, teacher: Row | None, threads: int, several_runtimes: bool = False) -> str:
    """``teacher``: the fp32 teacher on the recommendation's runtime (its speed-up is against that one)."""
    if teacher is None:
        return (f"No recommendation: the fp32 teacher has no successful {fmt_threads(threads)} "
                f"measurement with accuracy, so nothing can be compared against it.")
    if rec is None:
        return "No recommendation: no variant meets the accuracy budget."
    if rec.is_reference:
        return (f"Keep the teacher: no compressed variant is both faster and within the accuracy "
                f"budget ({rec.variant} on {rec.runtime}, {fmt_threads(threads)}: "
                f"{fmt_ms(rec.median, rec.median_ci)}, {fmt_acc(rec.accuracy, rec.accuracy_ci)}).")
    return (f"Recommended: {rec.variant} on {rec.runtime}, {fmt_threads(threads)}: "
            f"speed-up {fmt_speedup(rec.ratio, rec.ratio_ci)} over the fp32 teacher"
            f"{' on the same runtime' if several_runtimes else ''} "
            f"({fmt_ms(rec.median, rec.median_ci)} vs {fmt_ms(teacher.median, teacher.median_ci)}), "
            f"accuracy {fmt_acc(rec.accuracy, rec.accuracy_ci)} ({fmt_pts(rec.vs_ref)} vs the teacher's "
            f"{fmt_acc(teacher.accuracy)}), {fmt_mb(rec.size_bytes)} (teacher {fmt_mb(teacher.size_bytes)}).")


# ---------------------------------------------------------------- students vs the quantized teacher
@dataclass(frozen=True)
class VsQuantized:
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


def compare_students_to_quantized(rows, max_drop_points, threads) -> list[VsQuantized]:
    out = []
    for s in rows:
        if s.role != "student" or not s.plottable or s.threads != threads:
            continue
        q, _ = best_of_family(rows, "quantized-teacher", max_drop_points, threads, s.runtime)
        if q is None:
            continue
        direct = [c for c in s.comparisons if c.get("against") == q.id]
        if direct:
            ratio, ci = _num(direct[0].get("ratio_median")), _pair(direct[0].get("ci95"))
            verdict = str(direct[0].get("verdict") or _ratio_verdict(ci))
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
