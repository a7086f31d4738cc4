"""The one analysis of a results.json that every renderer lays out.

Markdown, HTML and the terminal summary all read the `Report` built here (numbers AND their
formatted text), so they can never disagree. Pure Python: no plotly, no rich, no torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

DEFAULT_MAX_DROP_POINTS = 0.5  # accuracy budget vs the fp32 teacher, in percentage points
TRIO = (("distillation", "distilled"), ("quantization", "quantized-teacher"),
        ("both", "distilled+quantized"))
EPS = 1e-9
DASH = "—"


# ---------------------------------------------------------------- formatting (shared by all)
def _num(x) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def _pair(x) -> tuple[float, float] | None:
    if isinstance(x, (list, tuple)) and len(x) == 2 and all(_num(v) is not None for v in x):
        return float(x[0]), float(x[1])
    return None


def _d(x) -> dict:
    return x if isinstance(x, dict) else {}


def _l(x) -> list:
    return x if isinstance(x, list) else []


def _pos(x) -> float | None:
    x = _num(x)
    return x if x is not None and x > 0 else None


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _ms_decimals(v: float) -> int:
    return 0 if v >= 100 else 1 if v >= 10 else 2 if v >= 0.1 else 3


def fmt_ms(v, ci=None, unit=True) -> str:
    if v is None:
        return DASH
    d = _ms_decimals(v)
    s = f"{v:.{d}f}" + (" ms" if unit else "")
    return s + (f" [{ci[0]:.{d}f}, {ci[1]:.{d}f}]" if ci else "")


def fmt_acc(v, ci=None) -> str:
    if v is None:
        return DASH
    return f"{v * 100:.1f}%" + (f" [{ci[0] * 100:.1f}, {ci[1] * 100:.1f}]" if ci else "")


def fmt_pts(d, ci=None) -> str:
    """A difference of two accuracies (fractions) in percentage points."""
    if d is None:
        return DASH
    s = f"{d * 100:+.1f} pts"
    return s + (f" [{ci[0] * 100:+.1f}, {ci[1] * 100:+.1f}]" if ci else "")


def fmt_speedup(ratio, ci=None, verdict=None) -> str:
    """ratio = variant median / teacher median; shown as a speed-up (teacher / variant)."""
    if ratio is None or ratio <= 0:
        return DASH
    s = f"{1 / ratio:.2f}×"
    if ci and ci[0] > 0:
        s += f" [{1 / ci[1]:.2f}, {1 / ci[0]:.2f}]"
    return s + (f" {verdict}" if verdict else "")


def fmt_mb(nbytes) -> str:
    return DASH if nbytes is None else f"{nbytes / 1e6:.2f} MB"


def fmt_params(n) -> str:
    if n is None:
        return DASH
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k" if n >= 1e3 else f"{n:.0f}"


def fmt_threads(n, adjective=False) -> str:
    return f"{n}-thread" if adjective else f"{n} thread" + ("" if n == 1 else "s")


# ---------------------------------------------------------------- rows
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
    made_in_s: float | None = None
    parity: float | None = None
    warnings: tuple = ()
    samples: tuple = ()
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
        parity=_num(q.get("parity_max_abs")) if _num(q.get("parity_max_abs")) is not None
        else _num(art.get("parity_max_abs")),
        warnings=tuple(w for w in _l(_get(rec, "stability", "warnings")) if isinstance(w, dict)),
        samples=tuple(v for v in _l(lat.get("samples")) if _pos(v) is not None),
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


# ---------------------------------------------------------------- the answer
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


@dataclass(frozen=True)
class StudyRow:
    regime: str
    regime_label: str
    student: str
    params: float | None
    n_train: int | None
    n_seeds: int
    labels_mean: float | None
    kd_mean: float | None
    diff: float | None
    diff_ci: tuple | None
    verdict: str
    sentence: str


def _mean(xs):
    xs = [float(x) for x in xs or [] if _num(x) is not None]
    return sum(xs) / len(xs) if xs else None


def study_sentence(student, regime_label, verdict, diff, diff_ci, n_seeds) -> str:
    who = f"the {student} student on {regime_label}"
    d = f"{fmt_pts(diff, diff_ci)} accuracy vs labels-only training, {n_seeds} seeds"
    if verdict == "KD helps":
        return f"KD helped {who}: {d}."
    if verdict == "KD hurts":
        return f"KD did not help {who}; it hurt: {d}."
    return f"KD did not help {who}: {d}; the interval includes zero, so no significant difference."


def build_studies(results: dict) -> list[StudyRow]:
    out = []
    for s in _l(_get(results, "studies", "distillation")):
        if not isinstance(s, dict):
            continue
        lm = _num(s.get("labels_mean")) if _num(s.get("labels_mean")) is not None else _mean(s.get("labels_acc"))
        km = _num(s.get("kd_mean")) if _num(s.get("kd_mean")) is not None else _mean(s.get("kd_acc"))
        diff = _num(s.get("diff_mean"))
        if diff is None and lm is not None and km is not None:
            diff = km - lm
        n = len(_l(s.get("seeds")) or _l(s.get("kd_acc")))
        label = str(s.get("regime_label") or s.get("regime") or "?")
        verdict = str(s.get("verdict") or "no significant difference")
        student = str(s.get("student") or "?")
        out.append(StudyRow(str(s.get("regime") or "?"), label, student, _num(s.get("params")),
                            None if _num(s.get("n_train")) is None else int(s["n_train"]), n, lm, km, diff, _pair(s.get("diff_ci95")), verdict,
                            study_sentence(student, label, verdict, diff, _pair(s.get("diff_ci95")), n)))
    return out


def study_summary(studies: Sequence[StudyRow]) -> str:
    if not studies:
        return "No distillation study in this run."
    helps = sum(s.verdict == "KD helps" for s in studies)
    hurts = sum(s.verdict == "KD hurts" for s in studies)
    return (f"Across {len(studies)} regime/student pairs, KD helped in {helps}, hurt in {hurts} "
            f"and made no significant difference in {len(studies) - helps - hurts}.")


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


# ---------------------------------------------------------------- the table (all renderers)
COLUMNS = ("variant", "family", "runtime", "threads", "accuracy [95% CI]", "median [95% CI]",
           "p90 [95% CI]", "speed-up vs teacher fp32 [95% CI]", "size", "peak mem Δ", "params",
           "made in", "parity (max abs)", "warnings", "Pareto")
PARETO_MARK = "★"


def table_cells(r: Row) -> list[tuple[str, float | str]]:
    """(text, sort key) per COLUMNS entry; failed rows say so and leave the numbers empty."""
    def n(v):
        return v if v is not None else math.inf
    head = [(r.variant, r.variant), (r.family, r.family), (r.runtime, r.runtime),
            (str(r.threads) if r.threads is not None else DASH, n(r.threads))]
    art = [(fmt_mb(r.size_bytes), n(r.size_bytes)), None, (fmt_params(r.params), n(r.params)),
           (DASH if r.made_in_s is None else f"{r.made_in_s:.1f} s", n(r.made_in_s)),
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


# ---------------------------------------------------------------- the whole report
@dataclass(frozen=True)
class Report:
    title: str
    task_line: str
    disclaimer: str
    rows: tuple
    threads: int  # the thread count the answer is given at
    max_drop_points: float
    rule: str
    teacher: Row | None
    recommended: Row | None
    answer: str  # one plain sentence
    beyond_budget: tuple  # Pareto rows faster than the recommendation but outside the budget
    picks: tuple
    studies: tuple
    study_summary: str
    vs_quantized: tuple
    warnings: tuple  # (record id, code, message, advice)
    failed: tuple
    environment: tuple  # (key, value)
    protocol: tuple  # (key, value)
    command: str
    cpu: str


def _budget(results: dict) -> tuple[float, int | None]:
    b = _get(results, "run", "recipe", "budget")
    b = b if isinstance(b, dict) else {}
    drop = _num(b.get("max_accuracy_drop_points"))
    th = b.get("threads")
    return (DEFAULT_MAX_DROP_POINTS if drop is None else drop), (th if isinstance(th, int) else None)


def _answer(rec: Row | None, teacher: Row | None, threads: int) -> str:
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
            f"speed-up {fmt_speedup(rec.ratio, rec.ratio_ci)} over the fp32 teacher "
            f"({fmt_ms(rec.median, rec.median_ci)} vs {fmt_ms(teacher.median, teacher.median_ci)}), "
            f"accuracy {fmt_acc(rec.accuracy, rec.accuracy_ci)} ({fmt_pts(rec.vs_ref)} vs the teacher's "
            f"{fmt_acc(teacher.accuracy)}), {fmt_mb(rec.size_bytes)} (teacher {fmt_mb(teacher.size_bytes)}).")


def _environment(env: dict) -> tuple:
    env = env if isinstance(env, dict) else {}
    out = []
    for k, v in env.items():
        if v is None or v == {} or v == []:
            continue
        if k == "isa" and isinstance(v, dict):
            v = ", ".join(f"{f} {'yes' if on else 'no'}" for f, on in v.items())
        elif k == "versions" and isinstance(v, dict):
            v = ", ".join(f"{p} {ver}" for p, ver in v.items())
        elif k == "loadavg" and isinstance(v, list):
            v = " ".join(str(x) for x in v)
        out.append((k, str(v)))
    return tuple(out)


def _protocol(results: dict) -> tuple:
    recs = [r for r in _l(results.get("results")) if isinstance(r, dict) and r.get("status") == "ok"]
    if not recs:
        return ()
    p = recs[0].get("protocol") if isinstance(recs[0].get("protocol"), dict) else {}
    out = [(k, str(v)) for k, v in p.items()]
    for key, path in (("latency CI", ("latency", "ci_method")), ("memory", ("memory", "method"))):
        if _get(recs[0], *path):
            out.append((key, str(_get(recs[0], *path))))
    if any(r.get("protocol") != recs[0].get("protocol") for r in recs[1:]):
        out.append(("note", "records used different protocols; shown is the first record's"))
    return tuple(out)


def analyse(results: dict) -> Report:
    """Build the report view model from a loaded results.json (see load.load_results)."""
    run = _d(results.get("run"))
    task, env = _d(run.get("task")), _d(run.get("environment"))
    rows = build_rows(results)
    drop, threads = _budget(results)
    measured = sorted({r.threads for r in rows if r.plottable and r.threads is not None})
    if threads is None:
        threads = 1 if (1 in measured or not measured) else measured[0]
    teacher = next((r for r in rows if r.is_reference and r.plottable and r.threads == threads), None)
    rec = recommend(rows, drop, threads) if teacher else None
    source = "default budget" if _budget(results) == (DEFAULT_MAX_DROP_POINTS, None) else "budget from the recipe"
    rule = (f"the fastest {fmt_threads(threads, True)} variant whose accuracy is within {drop:g} points of "
            f"the fp32 teacher's on the same runtime (point estimates; {source})")
    picks = tuple(Pick(a, f, *best_of_family(rows, f, drop, threads)) for a, f in TRIO)
    studies = tuple(build_studies(results))
    cpu = str(env.get("cpu") or "an unnamed machine")
    cores = f" ({env['cores']} cores)" if env.get("cores") else ""
    metric = task.get("metric") or "accuracy"
    return Report(
        title=f"Compression report: {task.get('name') or '?'} (run {run.get('run_id') or '?'})",
        task_line=(f"task {task.get('name') or '?'}: {metric} on n={task.get('n_test') or '?'} test "
                   f"samples, input {task.get('input_shape') or '?'}; created {run.get('created') or '?'}, "
                   f"workbench {run.get('workbench_version') or '?'}"),
        disclaimer=(f"Measured on {cpu}{cores}, not on a phone: use these numbers to rank variants, "
                    f"and re-measure the chosen one on the target device."),
        rows=tuple(rows), threads=threads, max_drop_points=drop, rule=rule, teacher=teacher,
        recommended=rec, answer=_answer(rec, teacher, threads), picks=picks,
        beyond_budget=tuple(r for r in rows if rec and r.pareto and r.threads == threads
                            and r.median < rec.median and not within_budget(r, drop)), studies=studies,
        study_summary=study_summary(studies),
        vs_quantized=tuple(compare_students_to_quantized(rows, drop, threads)),
        warnings=tuple((r.id, str(w.get("code") or "warning"), str(w.get("message") or ""),
                        str(w.get("advice") or "")) for r in rows for w in r.warnings),
        failed=tuple(r for r in rows if not r.ok), environment=_environment(env),
        protocol=_protocol(results), command=str(run.get("command") or DASH), cpu=cpu,
    )
