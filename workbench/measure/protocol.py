"""The measurement protocol (what is run, for how long) and the noise guards (what is suspicious).

See ../shared/MEASUREMENT.md. Everything here is plain Python: no numpy at import time.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from ..errors import RecipeError

PERCENTILE_METHOD = "bootstrap percentile (scipy.stats.bootstrap, method='percentile')"
TIMER = "time.perf_counter_ns around Session.run only; gc disabled during warm-up and timed runs"


@dataclass(frozen=True)
class Protocol:
    """How one latency / memory measurement is taken. Recorded with every result.

    Timed runs continue until ALL of: ``n >= min_runs``, ``elapsed >= min_s``, and the 95% CI
    half-width of the median ``<= target_ci * median`` -- or until ``max_s`` is reached.
    """

    warmup_runs: int = 10
    warmup_s: float = 0.5
    min_runs: int = 50
    min_s: float = 2.0
    max_s: float = 20.0
    target_ci: float = 0.02  # stop when the 95% CI half-width of the median <= 2% of the median
    memory_runs: int = 20
    timeout_s: float = 120.0  # a worker that runs longer is killed -> MeasurementError
    bootstrap_resamples: int = 2000
    percentile_method: str = PERCENTILE_METHOD

    def __post_init__(self):
        def bad(field: str, why: str):
            raise RecipeError(f"measurement protocol: {field}={getattr(self, field)!r} {why}")

        for f in ("warmup_runs", "memory_runs"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                bad(f, "must be an integer >= 0")
        for f in ("min_runs", "bootstrap_resamples"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                bad(f, "must be an integer >= 1")
        for f in ("warmup_s", "min_s"):
            v = getattr(self, f)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                bad(f, "must be a number of seconds >= 0")
        for f in ("max_s", "timeout_s"):
            v = getattr(self, f)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                bad(f, "must be a number of seconds > 0")
        if not isinstance(self.target_ci, (int, float)) or not 0 < self.target_ci < 1:
            bad("target_ci", "must be a fraction between 0 and 1, e.g. 0.02 for +-2%")
        if self.min_s > self.max_s:
            bad("min_s", f"must not exceed max_s={self.max_s}; raise max_s or lower min_s")
        if self.timeout_s <= self.max_s + self.warmup_s:
            bad("timeout_s", f"must exceed max_s + warmup_s ({self.max_s + self.warmup_s:g} s) or every slow run is killed")

    def to_json(self) -> dict:
        """The protocol as JSON: sent to workers and recorded with every measurement."""
        d = asdict(self)
        d["timer"] = TIMER
        d["stop_rule"] = STOP_RULE
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Protocol":
        """Rebuild from its JSON form (the inverse of to_json)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


STOP_RULE = (
    "checked every 0.25 s once min_runs and min_s are met: distribution-free 95% CI of the median "
    "from order statistics (ranks n/2 -+ 1.96*sqrt(n)/2), the limit of the percentile bootstrap"
)


def median_ci_halfwidth(sorted_or_raw, z: float = 1.959964) -> tuple[float, float]:
    """(median, half-width of its 95% CI) from order statistics; cheap enough to run in the loop.

    The percentile-bootstrap CI of the median converges to the binomial order-statistic interval
    [x_(j), x_(k)], j,k = n/2 -+ z*sqrt(n)/2: same interval, no resampling noise, O(n) with
    np.partition. The final reported CI is still computed with scipy.stats.bootstrap.
    """
    import numpy as np

    x = np.asarray(sorted_or_raw, dtype=np.float64)
    n = x.size
    if n < 2:
        return (float(x[0]) if n else float("nan")), float("inf")
    half = z * math.sqrt(n) / 2
    j = max(0, int(math.floor(n / 2 - half)) - 1)
    k = min(n - 1, int(math.ceil(n / 2 + half)))
    mid = n // 2
    part = np.partition(x, sorted({j, k, mid}))
    return float(part[mid]), float(part[k] - part[j]) / 2


# --------------------------------------------------------------------------- noise guards

@dataclass(frozen=True)
class StabilityWarning:
    """One reason a measurement may be unreliable (code, what was seen, what to do), shown in reports and JSON."""

    code: str
    message: str
    advice: str

    def to_json(self) -> dict:
        """The JSON form stored in a measurement record."""
        return {"code": self.code, "message": self.message, "advice": self.advice}


CV_LIMIT = 0.10
MAX_OVER_MEDIAN = 10.0  # a single run this much slower than the median is worth a warning on its own
P99_OVER_MEDIAN = 2.0  # a tail: more than 1% of runs took over twice the median
MIN_UNDER_MEDIAN = 0.5
SENTINEL_DRIFT_LIMIT_PCT = 5.0
TIMER_RESOLUTION_FACTOR = 100

_QUIET = "close other programs, use --threads 1 and re-run"


OTHER_LOAD_SLACK = 0.15  # cores of background activity tolerated beyond the free ones (daemons, the parent)


def assess_stability(
    stats,
    *,
    threads: int,
    cores: int | None,
    loadavg_1m: float | None,
    sentinel_drift_pct: float | None,
    timer_resolution_s: float | None,
    stop_reason: str,
    target_ci: float,
    other_load: float | None = None,
    process_medians=None,
) -> tuple[StabilityWarning, ...]:
    """The noise guards, as data: each warning says what was seen and what to do about it."""
    w: list[StabilityWarning] = []
    med = stats.median
    if stats.cv > CV_LIMIT:
        w.append(StabilityWarning(
            "high_cv", f"coefficient of variation is {stats.cv:.0%} (> {CV_LIMIT:.0%})",
            f"latencies vary a lot: {_QUIET}; compare medians only with their CIs"))
    # a few interrupted runs among thousands are normal on any OS and do not move the median: warn on a
    # heavy tail (p99 > 2x median) or an extreme single run (max > 10x median), not on any run over 3x
    if med > 0 and (stats.p99 > P99_OVER_MEDIAN * med or stats.max > MAX_OVER_MEDIAN * med):
        w.append(StabilityWarning(
            "slow_outliers", f"p99 {stats.p99:.3g} ms and max {stats.max:.3g} ms vs the median {med:.3g} ms "
                             f"({stats.p99 / med:.1f}x, {stats.max / med:.1f}x)",
            f"some runs were interrupted (other processes, page faults, frequency changes): {_QUIET}"))
    if med > 0 and stats.min < MIN_UNDER_MEDIAN * med:
        w.append(StabilityWarning(
            "fast_outliers", f"min {stats.min:.3g} ms is below {MIN_UNDER_MEDIAN:g}x the median {med:.3g} ms",
            "latencies look bimodal (typical with as many threads as cores): use --threads 1 and re-run"))
    if cores and threads > cores:
        w.append(StabilityWarning(
            "oversubscribed", f"{threads} threads on {cores} cores",
            f"use at most {cores} threads; more threads than cores only adds contention"))
    free = max((cores or 0) - threads, 0)
    if other_load is not None:
        # measured during the timed runs: CPU used by other processes, in cores. Preferred to the load
        # average, which lags by a minute and counts work (such as our own training) that already ended.
        if cores and other_load > max(free, 0.0) + OTHER_LOAD_SLACK:
            w.append(StabilityWarning(
                "busy_machine",
                f"other processes used {other_load:.2f} cores during the timed runs; {free} core(s) were left free",
                "other work shares these cores: close other programs or wait for the machine to settle, then re-run"))
    elif loadavg_1m is not None and cores and loadavg_1m > free:
        w.append(StabilityWarning(
            "busy_machine",
            f"1-min load average {loadavg_1m:.2f} before timing exceeds the {free} core(s) left free",
            "other work shares these cores: close other programs or wait for the machine to settle, then re-run"))
    if sentinel_drift_pct is not None and abs(sentinel_drift_pct) > SENTINEL_DRIFT_LIMIT_PCT:
        w.append(StabilityWarning(
            "sentinel_drift",
            f"a fixed reference kernel ran {sentinel_drift_pct:+.1f}% slower after the timed runs than before",
            "machine speed changed during the measurement (throttling, other load): re-run on a quiet machine"))
    if timer_resolution_s and med * 1e-3 < TIMER_RESOLUTION_FACTOR * timer_resolution_s:
        w.append(StabilityWarning(
            "below_timer_resolution",
            f"median {med * 1e3:.3g} us is under {TIMER_RESOLUTION_FACTOR}x the timer resolution "
            f"({timer_resolution_s * 1e9:.3g} ns)",
            "time a bigger batch or input so one run takes longer"))
    if process_medians is not None and len(process_medians) > 1:
        meds = sorted(float(m) for m in process_medians)
        mid = meds[len(meds) // 2] if len(meds) % 2 else (meds[len(meds) // 2 - 1] + meds[len(meds) // 2]) / 2
        half = (meds[-1] - meds[0]) / 2 / mid if mid > 0 else 0.0
        if half > target_ci:
            w.append(StabilityWarning(
                "process_spread",
                f"medians of the {len(meds)} processes range {meds[0]:.4g}-{meds[-1]:.4g} ms "
                f"(+-{half:.1%}, more than the +-{target_ci:.0%} CI target)",
                "latency changes from one process to the next: use --threads 1 and more rounds; "
                "the pooled CI (two-level bootstrap) already includes this spread"))
    if stop_reason != "ci_target":
        lo, hi = stats.ci95_median if stats.ci95_median else (float("nan"), float("nan"))
        half_pct = (hi - lo) / 2 / med * 100 if med > 0 else float("nan")
        w.append(StabilityWarning(
            "ci_target_missed",
            f"95% CI of the median is +-{half_pct:.1f}% after the time cap, target +-{target_ci:.0%}",
            f"raise --max-s or {_QUIET}"))
    return tuple(w)
