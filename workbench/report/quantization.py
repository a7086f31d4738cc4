"""Quantization diagnostics and the ``auto`` searches of a results.json, as rows every renderer lays out.

Reads the records' ``diagnostics`` (graph format, share of kernel time in quantized kernels, ratio and
verdict vs the unquantized source, explanation) and ``auto`` (chosen spec, candidates, message).
An ``auto`` search's metric (accuracy, or the cosine of the outputs to fp32's where there are no labels)
is written in its own words and units (workbench.report.metric): accuracy drops in points, a cosine's
as plain numbers. Pure Python: no plotly, no rich, no numpy.
"""
from __future__ import annotations

from dataclasses import dataclass

from workbench.pipeline.result_parts import finite, mapping, objects
from workbench.pipeline.results import ResultSet
from workbench.report.format import DASH, finite_pair
from workbench.report.metric import MetricStyle, metric_style

DIAG_COLUMNS = ("variant", "runtime", "format", "time in quantized kernels",
                "latency ratio vs unquantized [95% CI]", "explanation")
DIAG_NOTE = ("Ratio = median of the quantized artifact / median of the artifact it was quantized from, same "
             "runtime and threads, same interleaved run (< 1 is faster). Time in quantized kernels = share of "
             "the profiled kernel time in integer / low-bit kernels (QLinearConv, QGemm, ConvInteger, "
             "MatMulNBits ...), from the operator profile. ⚠ marks a quantized artifact SLOWER than its source.")


def auto_columns(style: MetricStyle) -> tuple:
    """The auto table's header; the drop column in the search metric's units ("pts" for accuracy)."""
    unit = "pts" if style.percent else style.name
    return ("", "candidate", "why tried", "latency ratio vs fp32 [95% CI]", style.name, f"drop ({unit}) [95% CI]",
            "within budget")


AUTO_COLUMNS = auto_columns(metric_style("accuracy"))
SLOWER_MARK = "⚠"


@dataclass(frozen=True)
class DiagRow:
    """One quantized artifact's diagnosis as the report shows it (format, quantized share, ratio vs source, explanation)."""
    variant: str
    runtime: str
    threads: int | None
    precision: str | None
    label: str
    quant_share: float | None
    ratio: float | None
    ratio_ci: tuple | None
    verdict: str | None
    against: str | None
    explanation: str

    @property
    def slower(self) -> bool:
        return self.verdict == "slower"

    def cells(self) -> list[str]:
        ratio = DASH if self.ratio is None else f"{self.ratio:.2f}" + (
            f" [{self.ratio_ci[0]:.2f}, {self.ratio_ci[1]:.2f}]" if self.ratio_ci else "")
        verdict = (self.verdict or "").upper() if self.slower else (self.verdict or "")
        vs = f" vs {self.against.split('@')[0]}" if self.against else ""
        return [(f"{SLOWER_MARK} " if self.slower else "") + self.variant, self.runtime, self.label,
                DASH if self.quant_share is None else f"{self.quant_share:.0%}",
                f"{ratio} {verdict}{vs}".strip() if self.ratio is not None else DASH, self.explanation]


@dataclass(frozen=True)
class AutoChoice:
    """One ``auto`` search as the report shows it: chosen spec, candidate rows, skipped, fallback."""
    variant: str
    chosen: str
    message: str
    loud: bool
    metric: str
    max_drop_points: float | None
    rounds: int | None
    candidates: tuple  # tuples of AUTO_COLUMNS cells
    skipped: tuple  # "what: why"
    exclusion: str | None
    sensitivity: tuple  # (node, op type, rel_l2) of the fallback's analysis, most sensitive first
    rule: str = ""

    @property
    def style(self) -> MetricStyle:
        """How the search's metric reads (accuracy in % and points; anything else as a plain number)."""
        return metric_style(self.metric)

    @property
    def columns(self) -> tuple:
        """The header of this search's candidate table."""
        return auto_columns(self.style)


def build_diagnostics(results: ResultSet, threads: int) -> tuple:
    """One DiagRow per record with diagnostics at ``threads`` (the answer's thread count)."""
    out = []
    for rec in results.results:
        d = rec.diagnostics
        if d is None or rec.runtime.threads != threads:
            continue
        out.append(DiagRow(variant=str(rec.variant or rec.id), runtime=str(rec.runtime.name),
                           threads=threads, precision=rec.artifact.precision,
                           label=str(d.label or d.format or DASH), quant_share=finite(d.quantized_time_share),
                           ratio=finite(d.ratio_to_fp32), ratio_ci=finite_pair(d.ci95),
                           verdict=d.verdict, against=d.against, explanation=str(d.explanation or DASH)))
    return tuple(sorted(out, key=lambda r: (not r.slower, r.variant, r.runtime)))


def _ratio(c: dict) -> str:
    r = finite(c.get("ratio"))
    if r is None:
        return DASH if not c.get("error") else "FAILED"
    ci = finite_pair(c.get("ci95"))
    verdict = str(c.get("verdict") or "")
    return f"{r:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "") + " " + \
        (verdict.upper() if verdict == "slower" else verdict)


def _metric(v, style: MetricStyle) -> str:
    """A candidate's metric value ("97.2%" or "0.9812")."""
    v = finite(v)
    if v is None:
        return DASH
    return f"{100 * v:.1f}%" if style.percent else f"{v:.4f}"


def _drop_number(d: float, style: MetricStyle) -> str:
    """A drop (a fraction of the metric) in the metric's units: "+0.35" points or "+0.0123"."""
    return f"{style.scale * d:+.2f}" if style.percent else f"{d:+.4f}"


def _drop(c: dict, style: MetricStyle) -> str:
    """A candidate's drop vs fp32 with its paired CI, in the metric's units."""
    d = finite(c.get("drop"))
    if d is None:
        return DASH
    ci = finite_pair(c.get("drop_ci95"))
    return _drop_number(d, style) + (f" [{_drop_number(ci[0], style)}, {_drop_number(ci[1], style)}]" if ci else "")


def _unit(style: MetricStyle) -> str:
    """The word after a drop: " pts" for a percentage metric, else " (<metric>)"."""
    return " pts" if style.percent else f" ({style.name})"


def build_auto(results: ResultSet) -> tuple:
    """One AutoChoice per artifact made by ``auto`` (its first record; the search is per artifact)."""
    out, seen = [], set()
    for rec in results.results:
        a, variant = rec.auto, str(rec.variant)
        if a is None or variant in seen:
            continue
        seen.add(variant)
        metric = str(a.metric or "metric")
        style = metric_style(metric)
        chosen = str(mapping(a.chosen).get("spec") or DASH)
        rows = []
        for c in a.candidates:
            spec = str(c.get("spec"))
            budget = DASH if spec == "fp32" or finite(c.get("metric")) is None else (
                "yes" if c.get("within_budget") else "NO")
            why = str(c.get("reason") or "") + (" (file reused)" if c.get("reused") else "") + \
                (f" — {c['error']}" if c.get("error") else "")
            rows.append(("★" if spec == chosen else "", spec, why, _ratio(c), _metric(c.get("metric"), style),
                         _drop(c, style) if spec != "fp32" else DASH, budget))
        ex = mapping(a.exclusion)
        ex_text = None
        if ex:
            steps = ", ".join(f"{len(s.get('excluded') or [])} node(s) in float: drop "
                              f"{_drop_number(finite(s.get('drop')) or 0.0, style)}{_unit(style)}"
                              for s in objects(ex.get("steps")))
            ex_text = (f"{ex.get('method')} missed the budget, so its most sensitive nodes were left in float one at a "
                       f"time ({steps or ex.get('error') or 'no step'}); result: {ex.get('result') or ex.get('error') or DASH}.")
        sens = tuple((str(r.get("node")), str(r.get("op_type")), finite(r.get("rel_l2")) or 0.0)
                     for r in objects(ex.get("sensitivity")) if r.get("rank"))
        out.append(AutoChoice(variant=variant, chosen=chosen, message=str(a.message or ""),
                              loud=bool(a.loud), metric=metric, max_drop_points=finite(a.max_drop_points),
                              rounds=a.rounds if isinstance(a.rounds, int) else None, candidates=tuple(rows),
                              skipped=tuple(f"{s.get('what')}: {s.get('why')}" for s in a.skipped),
                              exclusion=ex_text, sensitivity=sens, rule=str(a.rule or "")))
    return tuple(out)


def auto_note(a: AutoChoice) -> str:
    """The sentence under an auto search's table: how candidates were measured, the budget and the rule."""
    rounds = f"{a.rounds} rounds, " if a.rounds else ""
    m = a.style
    if a.max_drop_points is None:
        budget = f"? of {a.metric}"
    elif m.percent:
        budget = f"{a.max_drop_points:g} points of {a.metric}"
    else:  # results.json stores 100 x the allowed drop as max_drop_points
        budget = f"{a.max_drop_points / 100:g} in {a.metric}"
    return (f"Candidates measured interleaved with fp32 in one harness run ({rounds}short protocol: it only ranks "
            f"them; the chosen artifact is measured again above with the full protocol). Budget: a drop of at most "
            f"{budget}. Rule: " + (a.rule or "the fastest candidate within the budget whose "
                                                        "verdict vs fp32 is 'faster'; else fp32") + ".")
