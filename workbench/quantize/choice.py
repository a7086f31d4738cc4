"""What ``auto`` found: one row per candidate, the whole search, and the rule that picks the winner.

    chosen, message, loud = choose(rows, max_drop)      # None = keep fp32 (loud)

Pure data and one pure function, so the rule is tested without measuring anything.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

AUTO_VERSION = 1


def drop_words(fraction: float, metric: str = "accuracy", sign: bool = False, budget: bool = False) -> str:
    """A metric drop (a fraction of the metric, as ``max_drop`` and ``drop`` are stored) in the metric's words:
    accuracy in points ("0.35 points"; one point = 0.01 of the fraction), any other metric as a plain
    difference ("0.0035 cosine to fp32 outputs"); ``budget``: shortest form ("0.5 points", "0.005 cosine").
    The recipe's [quantize] max_drop is 100 x this fraction for every metric, so max_drop = 0.5 is half an
    accuracy point, or a cosine drop of 0.005."""
    value, unit = (100 * fraction, " points") if metric == "accuracy" else (fraction, f" {metric}")
    return f"{value:{'+' if sign else ''}{'g' if budget else '.2f' if metric == 'accuracy' else '.4g'}}{unit}"


@dataclass(frozen=True)
class CandidateResult:
    """One candidate of ``auto`` (or the fp32 reference) with how it fared: quality, drop, latency ratio, verdict and
    why it was kept or not."""

    spec: str  # "fp32" for the reference
    describe: str
    key: str | None
    precision: str
    reason: str
    stage: str = "proposed"  # proposed | sensitivity | reference
    path: str | None = None
    reused: bool = False
    quantize_s: float | None = None
    metric: float | None = None
    drop: float | None = None  # reference metric - metric (fraction; x100 = points)
    drop_ci95: tuple | None = None  # paired bootstrap over examples
    metric_ci95: tuple | None = None  # 95% interval of the metric (Wilson for agreement, bootstrap otherwise)
    judged: str | None = None  # the metric against a fidelity budget, e.g. 'top-1 agreement 0.97 [..] >= 0.85 (..)'
    fidelity: dict | None = None  # without labels: top-1 agreement, mean cosine, SNR (dB) vs fp32, each with its CI
    within_budget: bool = False
    ratio: float | None = None  # median(candidate) / median(fp32), same interleaved run
    ci95: tuple | None = None
    verdict: str | None = None
    verdict_reason: str | None = None  # the harness's reason when the verdict is not 'faster'
    median_ms: float | None = None
    error: str | None = None

    def to_json(self) -> dict:
        """The JSON form stored in results and cards."""
        d = asdict(self)
        d["drop_ci95"] = list(self.drop_ci95) if self.drop_ci95 else None
        d["ci95"] = list(self.ci95) if self.ci95 else None
        d["metric_ci95"] = list(self.metric_ci95) if self.metric_ci95 else None
        return d

    def speed_text(self) -> str:
        """'static 0.61 [0.58, 0.64] faster', or why the candidate was not measured."""
        if self.ratio is None:
            return f"{self.spec} not measured ({self.error or 'failed'})"
        ci = f" [{self.ci95[0]:.2f}, {self.ci95[1]:.2f}]" if self.ci95 else ""
        verdict = "SLOWER" if self.verdict == "slower" else self.verdict
        return f"{self.spec} {self.ratio:.2f}{ci} {verdict}"

    def stopped_by(self, max_drop: float, metric: str = "accuracy") -> str:
        """Why this candidate was not chosen: speed (ratio + CI + verdict), quality (value vs budget, in the
        words of ``metric``: see :func:`drop_words`), or the one-line failure it carries."""
        if self.error and self.ratio is None:
            return f"{self.spec}: FAILED ({self.error})"
        parts = [self.speed_text()]
        if self.verdict is not None and self.verdict != "faster":
            parts.append(f"not 'faster' ({self.verdict_reason})" if self.verdict_reason else "not faster than fp32")
        if self.metric is not None and not self.within_budget:
            parts.append(self.judged or f"loses {drop_words(self.drop or 0, metric)} "
                                        f"(budget {drop_words(max_drop, metric, budget=True)})")
        return ", ".join(parts)


@dataclass(frozen=True)
class AutoResult:
    """What ``auto`` decided: the chosen candidate, the loud message when fp32 is kept, every candidate and what was
    skipped."""

    chosen: CandidateResult
    message: str  # what was chosen and why; LOUD when fp32 is kept
    loud: bool
    candidates: tuple  # CandidateResult, fp32 first
    skipped: tuple  # (what, why)
    metric: str
    reference_metric: float
    max_drop: float  # fraction of the metric ([quantize] max_drop / 100: accuracy points, or cosine / 100)
    threads: int
    rounds: int
    out_path: str
    elapsed_s: float
    mix: dict = field(default_factory=dict)
    budget: str | None = None  # the budget in the metric's own units ('top-1 agreement >= 0.85 (lower 95% bound)')
    evaluation: dict | None = None  # what judged quality: data, output kind, held-out split, warnings
    exclusion: dict | None = None  # {method, sensitivity [rows], steps [..]} when the fallback ran
    diagnostics: dict | None = None

    @property
    def chosen_is_fp32(self) -> bool:
        """Whether auto kept fp32 (no candidate was faster within the budget)."""
        return self.chosen.spec == "fp32"

    def to_json(self) -> dict:
        """The "auto" entry of `workbench quantize --method auto --json`: the choice, every candidate, the rule."""
        return {"version": AUTO_VERSION, "chosen": self.chosen.to_json(), "chosen_is_fp32": self.chosen_is_fp32,
                "message": self.message, "loud": self.loud, "metric": self.metric,
                "reference_metric": self.reference_metric, "max_drop": self.max_drop,
                "max_drop_points": 100 * self.max_drop, "budget": self.budget or
                f"metric drop <= {drop_words(self.max_drop, self.metric, budget=True)} (point estimate)",
                "evaluation": self.evaluation,
                "threads": self.threads, "rounds": self.rounds,
                "out_path": self.out_path, "elapsed_s": round(self.elapsed_s, 2), "mix": self.mix,
                "candidates": [c.to_json() for c in self.candidates],
                "skipped": [{"what": w, "why": y} for w, y in self.skipped],
                "exclusion": self.exclusion, "diagnostics": self.diagnostics,
                "rule": RULE}


RULE = ("the fastest candidate within the budget (accuracy: drop vs fp32 <= max_drop, point estimate; fidelity "
        "without labels: the lower 95% bound of top-1 agreement / mean cosine / SNR >= the minimum) and whose "
        "latency verdict vs fp32 is 'faster' (95% CI of the ratio of medians below 1, interleaved run); "
        "candidates not clearly slower than that one (paired comparison, same run) win on the metric; "
        "else fp32")


def choose(rows, max_drop: float, not_slower: Callable | None = None, budget: str | None = None,
           skipped=(), metric: str = "accuracy") -> tuple[CandidateResult | None, str, bool]:
    """(chosen row or None for fp32, message, loud) from measured candidate rows (fp32 row excluded).

    ``not_slower(a, b)``: True when b is not clearly slower than a (their paired comparison in the same
    interleaved run is not 'slower'); candidates that tie with the fastest that way are ranked by metric.
    ``budget``: the fidelity budget's text (rows then carry ``judged``); ``skipped``: (what, why) of methods
    never tried, named when there is no candidate; ``metric``: the metric's name, which words the drops
    (:func:`drop_words`: points for accuracy, plain differences otherwise). When fp32 is kept, the message
    names what stopped EACH candidate: too slow (ratio + CI), outside the budget (value vs budget), or its
    one-line failure."""
    cands = [r for r in rows if r.spec != "fp32"]
    good = [r for r in cands if r.within_budget and r.verdict == "faster" and r.ratio is not None]
    if good:
        fastest = min(good, key=lambda r: (r.ratio, r.spec))
        ties = [r for r in good if r is fastest or (not_slower is not None and not_slower(fastest, r))]
        best = max(ties, key=lambda r: (r.metric if r.metric is not None else -1.0, -r.ratio, r.spec))
        lo, hi = best.ci95 or (best.ratio, best.ratio)
        tie = (f"; as fast as {fastest.spec} within the measurement's resolution and more accurate"
               if best is not fastest else "")
        quality = best.judged or (f"metric drop {drop_words(best.drop, metric, sign=True)} within the "
                                  f"{drop_words(max_drop, metric, budget=True)} budget")
        return best, (f"chose {best.spec}: {1 / best.ratio:.2f}x faster than fp32 (ratio {best.ratio:.2f} "
                      f"[{lo:.2f}, {hi:.2f}]), {quality}{tie}"), False
    parts = [r.stopped_by(max_drop, metric) for r in cands]
    what = f"the budget ({budget})" if budget else "the accuracy budget"
    if not cands:
        why = "no candidate to try for this graph" + (": " + "; ".join(f"{w} skipped ({y})" for w, y in skipped)
                                                      if skipped else "")
        return None, f"KEEPING FP32: {why}", True
    if all(r.error and r.ratio is None for r in cands):
        why = "every candidate failed"
    elif any(r.verdict == "faster" for r in cands):
        why = f"the int8 variants that were faster than fp32 missed {what}"
    elif any(r.verdict == "inconclusive" and r.ratio is not None and r.ratio < 1 for r in cands):
        why = ("no int8 variant was confirmed faster than fp32 on this machine (the faster-looking ones were "
               "inconclusive: re-measure on a quieter machine, with more --rounds)")
    else:
        why = "no int8 variant was faster than fp32 on this machine"
    return None, f"KEEPING FP32: {why}: " + "; ".join(parts), True
