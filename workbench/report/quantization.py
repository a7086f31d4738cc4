"""Quantization diagnostics and the ``auto`` searches of a results.json, as rows every renderer lays out.

Reads the records' ``diagnostics`` (graph format, share of kernel time in quantized kernels, ratio and
verdict vs the unquantized source, explanation) and ``auto`` (chosen spec, candidates, message).
Pure Python: no plotly, no rich, no numpy.
"""
from __future__ import annotations

from dataclasses import dataclass

from workbench.pipeline.result_parts import finite, mapping, objects
from workbench.pipeline.results import ResultSet
from workbench.report.format import DASH, finite_pair

DIAG_COLUMNS = ("variant", "runtime", "format", "time in quantized kernels",
                "latency ratio vs unquantized [95% CI]", "explanation")
DIAG_NOTE = ("Ratio = median of the quantized artifact / median of the artifact it was quantized from, same "
             "runtime and threads, same interleaved run (< 1 is faster). Time in quantized kernels = share of "
             "the profiled kernel time in integer / low-bit kernels (QLinearConv, QGemm, ConvInteger, "
             "MatMulNBits ...), from the operator profile. ⚠ marks a quantized artifact SLOWER than its source.")
AUTO_COLUMNS = ("", "candidate", "why tried", "latency ratio vs fp32 [95% CI]", "metric", "drop (pts) [95% CI]",
                "within budget")
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


def _metric(v, metric: str) -> str:
    v = finite(v)
    if v is None:
        return DASH
    return f"{100 * v:.1f}%" if metric == "accuracy" else f"{v:.4f}"


def _drop(c: dict) -> str:
    d = finite(c.get("drop"))
    if d is None:
        return DASH
    ci = finite_pair(c.get("drop_ci95"))
    return f"{100 * d:+.2f}" + (f" [{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]" if ci else "")


def build_auto(results: ResultSet) -> tuple:
    """One AutoChoice per artifact made by ``auto`` (its first record; the search is per artifact)."""
    out, seen = [], set()
    for rec in results.results:
        a, variant = rec.auto, str(rec.variant)
        if a is None or variant in seen:
            continue
        seen.add(variant)
        metric = str(a.metric or "metric")
        chosen = str(mapping(a.chosen).get("spec") or DASH)
        rows = []
        for c in a.candidates:
            spec = str(c.get("spec"))
            budget = DASH if spec == "fp32" or finite(c.get("metric")) is None else (
                "yes" if c.get("within_budget") else "NO")
            why = str(c.get("reason") or "") + (" (file reused)" if c.get("reused") else "") + \
                (f" — {c['error']}" if c.get("error") else "")
            rows.append(("★" if spec == chosen else "", spec, why, _ratio(c), _metric(c.get("metric"), metric),
                         _drop(c) if spec != "fp32" else DASH, budget))
        ex = mapping(a.exclusion)
        ex_text = None
        if ex:
            steps = ", ".join(f"{len(s.get('excluded') or [])} node(s) in float: drop {100 * (finite(s.get('drop')) or 0):+.2f} pts"
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
    budget = f"{a.max_drop_points:g}" if a.max_drop_points is not None else "?"
    return (f"Candidates measured interleaved with fp32 in one harness run ({rounds}short protocol: it only ranks "
            f"them; the chosen artifact is measured again above with the full protocol). Budget: a drop of at most "
            f"{budget} points of {a.metric}. Rule: " + (a.rule or "the fastest candidate within the budget whose "
                                                        "verdict vs fp32 is 'faster'; else fp32") + ".")
