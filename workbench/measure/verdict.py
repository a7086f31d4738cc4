"""Verdicts the evidence supports: honest intervals with few processes, the noise guards' veto,
the reason for every verdict and what would make an inconclusive one conclusive, and the rule that
decides when an interleaved run has enough rounds.

Why: with 3 processes per model a bootstrap over processes has only 10 distinct resamples and its
interval is too narrow for the process-to-process spread (the same model against its copy came out
"slower" in 1 of 5 trials on a quiet machine). So

* an interleaved (round-paired) comparison also gets a t-interval on the per-round log-ratios
  ``log median_B(r) - log median_A(r)`` with ``rounds - 1`` degrees of freedom; two sets of
  processes that are not paired get a Welch t-interval on the log process medians. The reported CI
  is the wider of that and the two-level bootstrap (:mod:`.pooled`) on each side;
* a definite verdict (faster / slower / equivalent) is vetoed -- "inconclusive: machine busy" --
  when the noise guards fired during the comparison: the sentinel kernel drifted by more than 5%,
  other processes used more than the cores left free, or the latency jumped between processes by
  more than ``SPREAD_VETO``; except a faster / slower verdict whose whole CI lies beyond the shift
  the disturbance could cause (``disturbance``: the drift, the spread, at least 10%), so a 2x
  speed-up stays "faster" on a busy machine while a 6% difference does not;
* an adaptive run adds rounds until the interval is tight (``RoundController``).

Plain Python at import time; numpy / scipy are imported inside functions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from .protocol import SENTINEL_DRIFT_LIMIT_PCT

SPREAD_VETO = 0.10  # +-10%: half-range of per-round ratios (paired) or of process medians (unpaired)
VETO_CODES = ("sentinel_drift", "busy_machine")  # per-process guards that mark a round as disturbed
STOP_FRACTION = 0.5  # adaptive rounds stop once the t half-width is <= this fraction of the margin ...
STOP_STREAK = 2  # ... at this many successive rounds
MAX_SUGGESTED_ROUNDS = 50
QUIET_ADVICE = "re-run on a quieter machine (close other programs; `uptime` load average below the free cores)"

STOP_RULE = (f"adaptive rounds: after the minimum, add interleaved rounds until the paired t-interval of every "
             f"comparison with the first model has a half-width <= {STOP_FRACTION:g} x the equivalence margin at "
             f"{STOP_STREAK} successive rounds, or the round cap or wall-time cap is reached; a round in which a "
             f"worker's guards fired ({', '.join(VETO_CODES)}) is dropped and replaced while the cap allows")


# --------------------------------------------------------------------------- t-intervals

def _t(df: float) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def t_halfwidth(values: Sequence[float]) -> tuple[float, float] | None:
    """(mean, 95% t half-width) of ``values``; None with fewer than two."""
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return None
    return float(v.mean()), _t(v.size - 1) * float(v.std(ddof=1)) / math.sqrt(v.size)


def paired_t_interval(log_ratios: Sequence[float]) -> tuple[float, float] | None:
    """95% CI of the ratio from per-round log-ratios (t, df = rounds - 1), on the ratio scale."""
    mh = t_halfwidth(log_ratios)
    return None if mh is None else (math.exp(mh[0] - mh[1]), math.exp(mh[0] + mh[1]))


def welch_t_interval(log_base: Sequence[float], log_cand: Sequence[float]) -> tuple[float, float] | None:
    """95% Welch CI of exp(mean log_cand - mean log_base) from two sets of log process medians."""
    import numpy as np

    a, b = np.asarray(log_base, dtype=np.float64), np.asarray(log_cand, dtype=np.float64)
    if a.size < 2 or b.size < 2:
        return None
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    diff, se = float(b.mean() - a.mean()), math.sqrt(va + vb)
    if se == 0:
        return math.exp(diff), math.exp(diff)
    df = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    half = _t(df) * se
    return math.exp(diff - half), math.exp(diff + half)


def widest(*cis) -> tuple[float, float] | None:
    """The union of the given intervals (None entries skipped)."""
    got = [c for c in cis if c]
    return (min(c[0] for c in got), max(c[1] for c in got)) if got else None


def half_range(values: Sequence[float]) -> float | None:
    """Half the range of ``values`` relative to their median (None for fewer than two)."""
    from .pooled import spread

    return spread(values)


# --------------------------------------------------------------------------- the guards' veto

@dataclass(frozen=True)
class Veto:
    """A noise guard that fired during a comparison, why it matters and what to do."""

    code: str
    reason: str
    advice: str
    size: float = SPREAD_VETO  # how far (as a fraction) the disturbance could have moved a ratio


def _stability(x) -> dict:
    """{"drift": float | None, "warnings": [(code, message)]} of a record, a measurement, or nothing."""
    if isinstance(x, dict):
        st = x.get("stability") or {}
        warns = [(w.get("code"), w.get("message", "")) for w in st.get("warnings") or [] if isinstance(w, dict)]
        return {"drift": st.get("sentinel_drift_pct"), "warnings": warns}
    st = getattr(x, "stability", None)
    if st is None:
        return {"drift": None, "warnings": []}
    return {"drift": getattr(st, "sentinel_drift_pct", None),
            "warnings": [(w.code, w.message) for w in getattr(st, "warnings", ())]}


def vetoes(base, cand, *, round_ratios: Sequence[float] | None = None,
           process_medians: tuple[Sequence[float], Sequence[float]] = ((), ())) -> list[Veto]:
    """The guards that veto a definite verdict of ``cand`` vs ``base`` (records or measurements).

    ``round_ratios``: per-round ratios of a paired comparison (their spread is checked: drift shared
    by a round cancels in a ratio); otherwise ``process_medians`` of each side are checked.
    """
    out: list[Veto] = []
    sides = [_stability(base), _stability(cand)]
    drifts = [s["drift"] for s in sides if isinstance(s["drift"], (int, float)) and math.isfinite(s["drift"])]
    if drifts and max(abs(d) for d in drifts) > SENTINEL_DRIFT_LIMIT_PCT:
        d = max(drifts, key=abs)
        out.append(Veto("sentinel_drift", f"sentinel drifted {d:+.0f}% during the comparison "
                        f"(limit +-{SENTINEL_DRIFT_LIMIT_PCT:g}%)", f"the machine changed speed: {QUIET_ADVICE}",
                        abs(d) / 100))
    busy = [m for s in sides for c, m in s["warnings"] if c == "busy_machine"]
    if busy:
        out.append(Veto("busy_machine", busy[0],
                        "other programs shared the cores: close them or wait for the machine to settle, then re-run"))
    if round_ratios is not None:
        h = half_range(round_ratios)
        if h is not None and h > SPREAD_VETO:
            out.append(Veto("process_spread", f"the ratio moved +-{h:.0%} between rounds (limit +-{SPREAD_VETO:.0%})",
                            "latency differs from process to process: use --threads 1 on a quieter machine", h))
    else:
        for name, meds in zip(("baseline", "candidate"), process_medians):
            h = half_range(meds)
            if h is not None and h > SPREAD_VETO:
                out.append(Veto("process_spread", f"the {name}'s process medians spread +-{h:.0%} "
                                f"(limit +-{SPREAD_VETO:.0%})",
                                "latency differs from process to process: use --threads 1 on a quieter machine", h))
    return out


def disturbance(vetoed: Sequence[Veto]) -> float:
    """How far the fired guards could have moved a ratio (a fraction): the largest of their sizes.

    A definite faster/slower verdict survives the guards only when the whole CI lies beyond this
    shift from 1 (e.g. a 2x speed-up is not contradicted by a 20% sentinel drift; a 6% "slowdown"
    is). "equivalent" never survives them: the disturbance is larger than the +-2% band.
    """
    return max([SPREAD_VETO] + [float(v.size) for v in vetoed])


# --------------------------------------------------------------------------- reason and advice

def suggest_rounds(log_ratios: Sequence[float], margin: float) -> int | None:
    """Rounds a paired comparison would need for a decisive CI at the spread seen so far (None: > 50)."""
    mh = t_halfwidth(log_ratios)
    if mh is None:
        return None
    import numpy as np

    m, s = abs(mh[0]), float(np.std(np.asarray(log_ratios, dtype=np.float64), ddof=1))
    if s == 0:
        return len(log_ratios)
    need = 0.8 * max(abs(math.log1p(margin)) - m, m)
    for n in range(len(log_ratios) + 1, MAX_SUGGESTED_ROUNDS + 1):
        if _t(n - 1) * s / math.sqrt(n) <= need:
            return n
    return None


def explain(stat_verdict: str, ci, margin: float, *, vetoed: Sequence[Veto] = (), kind: str = "",
            rounds: int = 1, log_ratios: Sequence[float] | None = None) -> tuple[str, str, str | None]:
    """(verdict, verdict_reason, advice): the statistics' verdict unless a guard vetoes it."""
    band = f"+-{margin:.0%}"
    if ci is None:
        reason, advice = "no CI: a side has fewer than 2 timed runs", "measure more runs (raise --max-s)"
    else:
        c = f"CI [{ci[0]:.3f}, {ci[1]:.3f}]"
        reason = {"equivalent": f"{c} lies within the {band} band",
                  "faster": f"{c} lies below 1", "slower": f"{c} lies above 1"}.get(
            stat_verdict, f"{c} straddles 1 and reaches beyond the {band} band")
        advice = None
        if stat_verdict == "inconclusive":
            if kind == "paired" and log_ratios is not None:
                n = suggest_rounds(log_ratios, margin)
                advice = (f"run more rounds (--rounds {n})" if n is not None else
                          f"the difference is within the round-to-round noise even at {MAX_SUGGESTED_ROUNDS} "
                          f"rounds: {QUIET_ADVICE}, with --threads 1")
            elif kind == "single":
                advice = "measure the models interleaved in several processes (--rounds 5 or more)"
            else:
                advice = "measure the models together, interleaved (one run, --rounds 10)"
        elif kind == "single":
            reason += " (one process per side: process-to-process variation is not in the CI)"
            advice = "measure interleaved with --rounds 3 or more for a CI that includes it"
    if vetoed and ci is not None and stat_verdict in ("faster", "slower"):
        noise = disturbance(vetoed)
        if (ci[1] < 1 / (1 + noise)) if stat_verdict == "faster" else (ci[0] > 1 + noise):
            bound = f"{ci[1]:.3f} < {1 / (1 + noise):.3f}" if stat_verdict == "faster" else f"{ci[0]:.3f} > {1 + noise:.3f}"
            why = "; ".join(v.reason for v in vetoed)
            return stat_verdict, (f"{reason}, and by more than the disturbance the guards saw ({why}): "
                                  f"{bound}, i.e. beyond a {noise:.0%} shift"), None
    if vetoed:
        why = "; ".join(v.reason for v in vetoed)
        if stat_verdict != "inconclusive":
            why += f" (the statistics alone said {stat_verdict}: {reason})"
        else:
            why += f"; and {reason}"
        tips = list(dict.fromkeys(v.advice for v in vetoed))
        busy = any(v.code in VETO_CODES for v in vetoed)
        return "inconclusive", (f"machine busy: {why}" if busy else why), "; ".join(tips)
    return stat_verdict, reason, advice


# --------------------------------------------------------------------------- adaptive rounds

class RoundController:
    """Decides, round after round, whether an interleaved run needs another round.

    Fed each finished round's per-model medians (model 0 is the baseline) and whether a worker's
    guards fired in it. A disturbed round is dropped (kept out of the pooled result) while the cap
    leaves room for a replacement; otherwise it is kept. The stop rule is ``STOP_RULE``: a
    precision rule (the half-width, not where the interval lies), so stopping does not pick the
    rounds that happen to favour a verdict.
    """

    def __init__(self, min_rounds: int, max_rounds: int, margin: float, max_wall_s: float | None = None):
        self.min_rounds, self.max_rounds, self.margin, self.max_wall_s = min_rounds, max_rounds, margin, max_wall_s
        self.kept: list[tuple[int, list[float]]] = []
        self.dropped: list[dict] = []
        self.run = 0
        self.streak = 0
        self.round_s: list[float] = []

    @property
    def adaptive(self) -> bool:
        """Whether rounds beyond the minimum may be added."""
        return self.max_rounds > self.min_rounds

    def add(self, index: int, medians: Sequence[float], disturbed: str | None = None, seconds: float = 0.0) -> None:
        """Record round ``index``: its per-model medians (ms), why it is disturbed (or None), its duration."""
        self.run += 1
        self.round_s.append(float(seconds))
        if disturbed and self.adaptive:
            self.dropped.append({"round": index, "why": disturbed})
            return
        self.kept.append((index, [float(m) for m in medians]))
        if len(self.kept) >= max(self.min_rounds, 2):
            halves = [t_halfwidth(lr)[1] for lr in self.log_ratios()]
            tight = bool(halves) and max(halves) <= STOP_FRACTION * math.log1p(self.margin)
            self.streak = self.streak + 1 if tight else 0

    def log_ratios(self) -> list[list[float]]:
        """Per candidate model (1, 2, ...): the log-ratios to model 0 of the kept rounds."""
        if not self.kept:
            return []
        n = len(self.kept[0][1])
        return [[math.log(m[i] / m[0]) for _, m in self.kept] for i in range(1, n)]

    def stop(self, elapsed_s: float = 0.0) -> str | None:
        """Why to stop now, or None to run another round."""
        if self.run < self.min_rounds:
            return None
        if not self.adaptive:
            return "fixed rounds"
        if len(self.kept) >= self.min_rounds:
            if not self.log_ratios():
                return "one model: nothing to compare"
            if self.streak >= STOP_STREAK:
                return (f"CI half-width <= {STOP_FRACTION * self.margin:.0%} at {STOP_STREAK} successive rounds")
        if self.run >= self.max_rounds:
            return f"max rounds ({self.max_rounds})"
        if len(self.kept) + self.max_rounds - self.run < self.min_rounds:
            return f"machine busy: {len(self.dropped)} of {self.run} rounds disturbed"
        if self.max_wall_s is not None and self.round_s:
            per = sum(self.round_s) / len(self.round_s)
            if elapsed_s + per > self.max_wall_s:
                return f"wall-time cap ({self.max_wall_s:g} s)"
        return None

    def rounds_to_pool(self) -> set[int]:
        """The rounds the pooled result uses: the undisturbed ones, or all when too few are undisturbed."""
        if len(self.kept) >= self.min_rounds:
            return {i for i, _ in self.kept}
        return {i for i, _ in self.kept} | {d["round"] for d in self.dropped}
