"""Statistics, the stop rule, the verdict rule and the noise guards (no worker processes here)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from workbench.errors import MeasurementError, RecipeError
from workbench.measure import Comparison, LatencyStats, Protocol, compare
from workbench.measure.protocol import assess_stability, median_ci_halfwidth
from workbench.measure.stats import SCIPY_BOOTSTRAP_MAX_N, _bootstrap_ci, _order_stat_bootstrap, verdict_for

Z90 = 1.2815515655446004


def rng(seed=0):
    return np.random.default_rng(seed)


def test_quantiles_of_large_normal_sample():
    x = rng().normal(10.0, 1.0, 8000)
    s = LatencyStats.from_samples(x, resamples=500)
    assert s.n == 8000
    assert s.median == pytest.approx(10.0, abs=0.05)
    assert s.mean == pytest.approx(10.0, abs=0.05)
    assert s.p90 == pytest.approx(10.0 + Z90, abs=0.08)
    assert s.std == pytest.approx(1.0, rel=0.05)
    assert s.mad == pytest.approx(0.6745, rel=0.05)  # unscaled MAD of N(0,1)
    assert s.min <= s.median <= s.p90 <= s.p95 <= s.p99 <= s.max


@pytest.mark.parametrize("n", [5000, 4 * SCIPY_BOOTSTRAP_MAX_N])  # scipy path and exact order-statistic path
def test_ci_contains_true_median_and_p90_of_lognormal(n):
    mu, sigma = math.log(2.0), 0.3
    x = rng(2).lognormal(mu, sigma, n)
    s = LatencyStats.from_samples(x)
    lo, hi = s.ci95_median
    assert lo <= 2.0 <= hi
    assert lo <= s.median <= hi
    lo90, hi90 = s.ci95_p90
    assert lo90 <= math.exp(mu + sigma * Z90) <= hi90
    assert ("scipy.stats.bootstrap" in s.ci_method) == (n <= SCIPY_BOOTSTRAP_MAX_N)
    assert "percentile" in s.ci_method


def test_exact_bootstrap_ci_coverage_is_about_95_percent():
    r, hits, reps = rng(20), 0, 300
    for i in range(reps):
        x = np.sort(r.lognormal(0.0, 0.3, 1000))
        lo, hi = np.percentile(_order_stat_bootstrap(x, 0.5, 1000, rng(i)), [2.5, 97.5])
        hits += lo <= 1.0 <= hi
    assert 0.90 <= hits / reps <= 0.99


def test_ci_width_shrinks_with_n():
    widths = []
    for n in (100, 1000, 8000):
        s = LatencyStats.from_samples(rng(2).lognormal(0, 0.3, n), resamples=1000)
        widths.append(s.ci95_median[1] - s.ci95_median[0])
    assert widths[0] > widths[1] > widths[2] > 0


def test_mad_cv_std_on_hand_checked_array():
    s = LatencyStats.from_samples([1.0, 2.0, 3.0, 4.0, 100.0], resamples=200)
    assert s.median == 3.0
    assert s.mad == 1.0  # |x - 3| = 2, 1, 0, 1, 97
    assert s.mean == 22.0
    std = math.sqrt(((21**2) + (20**2) + (19**2) + (18**2) + (78**2)) / 4)
    assert s.std == pytest.approx(std)
    assert s.cv == pytest.approx(std / 22.0)
    assert s.min == 1.0 and s.max == 100.0
    assert s.p90 == pytest.approx(4 + 0.6 * 96)  # numpy 'linear'


def test_single_sample_and_bad_samples():
    s = LatencyStats.from_samples([1.5])
    assert s.n == 1 and s.median == 1.5 and s.ci95_median is None and s.std == 0.0
    with pytest.raises(MeasurementError):
        LatencyStats.from_samples([])
    with pytest.raises(MeasurementError):
        LatencyStats.from_samples([1.0, float("nan")])


def test_stats_json_round_trip():
    s = LatencyStats.from_samples(rng(3).lognormal(0, 0.2, 300), resamples=300)
    d = json.loads(json.dumps(s.to_json(), allow_nan=False))
    assert set(d) >= {"n", "min", "median", "mean", "p90", "p95", "p99", "max", "std", "cv", "mad",
                      "ci95_median", "ci95_p90", "ci_method"}
    assert LatencyStats.from_json(d) == s


def test_exact_order_statistic_bootstrap_matches_scipy():
    x = rng(4).lognormal(0, 0.3, 3000)
    for q in (0.5, 0.9):
        lo, hi = _bootstrap_ci((x,), lambda s, axis: np.percentile(s, 100 * q, axis=axis), 3000, 0)
        boot = _order_stat_bootstrap(np.sort(x), q, 20000, rng(5))
        lo2, hi2 = np.percentile(boot, [2.5, 97.5])
        width = hi - lo
        assert abs(lo2 - lo) < 0.15 * width and abs(hi2 - hi) < 0.15 * width


def test_stop_rule_halfwidth_agrees_with_bootstrap():
    x = rng(6).lognormal(0, 0.3, 4000)
    med, hw = median_ci_halfwidth(x)
    assert med == pytest.approx(np.median(x), rel=1e-3)
    s = LatencyStats.from_samples(x, resamples=1000)
    assert hw == pytest.approx((s.ci95_median[1] - s.ci95_median[0]) / 2, rel=0.25)
    assert median_ci_halfwidth([1.0])[1] == math.inf


# --------------------------------------------------------------------------- compare / verdicts

def test_compare_clearly_faster_and_slower():
    base = rng(7).lognormal(0, 0.1, 400)
    fast = compare(base, rng(8).lognormal(0, 0.1, 400) * 0.7, resamples=1000)
    assert fast.verdict == "faster"
    assert fast.ratio_median == pytest.approx(0.7, abs=0.03)
    assert fast.ci95[0] < fast.ratio_median < fast.ci95[1] < 1
    slow = compare(base, rng(9).lognormal(0, 0.1, 400) * 1.3, resamples=1000, against="fp32")
    assert slow.verdict == "slower" and slow.ci95[0] > 1
    d = slow.to_json()
    assert d["against"] == "fp32" and set(d) >= {"ratio_median", "ci95", "verdict"}


def test_compare_equivalent_for_identical_distributions_large_n():
    a = rng(10).lognormal(0, 0.05, 20000)
    b = rng(11).lognormal(0, 0.05, 20000)
    c = compare(a, b)
    assert c.verdict == "equivalent"
    assert 0.98 <= c.ci95[0] <= c.ci95[1] <= 1.02


def test_compare_inconclusive_for_tiny_noisy_samples():
    c = compare(rng(12).lognormal(0, 0.5, 5), rng(13).lognormal(0, 0.5, 5), resamples=1000)
    assert c.verdict == "inconclusive"
    assert compare([1.0], [1.0]).verdict == "inconclusive"


def test_compare_accepts_objects_with_samples():
    class M:
        samples = tuple(rng(14).lognormal(0, 0.1, 200))

    assert isinstance(compare(M(), M(), resamples=200), Comparison)


@pytest.mark.parametrize("lo,hi,verdict", [
    (0.985, 1.015, "equivalent"), (0.98, 1.02, "equivalent"),
    (0.90, 0.95, "faster"), (0.975, 0.99, "faster"),
    (1.05, 1.10, "slower"), (1.01, 1.03, "slower"),
    (0.95, 1.05, "inconclusive"), (0.97, 1.001, "inconclusive"),
])
def test_verdict_rule(lo, hi, verdict):
    assert verdict_for(lo, hi) == verdict


# --------------------------------------------------------------------------- protocol and guards

def test_protocol_defaults_validation_and_json():
    p = Protocol()
    d = p.to_json()
    assert d["min_runs"] == 50 and d["target_ci"] == 0.02 and "percentile" in d["percentile_method"]
    assert Protocol.from_json(d) == p
    for bad in ({"min_s": 5, "max_s": 1}, {"target_ci": 0}, {"min_runs": 0}, {"timeout_s": 10},
                {"warmup_runs": -1}, {"max_s": float("nan")}):
        with pytest.raises(RecipeError):
            Protocol(**bad)


def _stats(samples):
    return LatencyStats.from_samples(samples, resamples=200)


def test_guards_quiet_on_clean_data():
    s = _stats(rng(15).normal(10, 0.2, 500))
    w = assess_stability(s, threads=1, cores=4, loadavg_1m=0.1, sentinel_drift_pct=1.0,
                         timer_resolution_s=1e-9, stop_reason="ci_target", target_ci=0.02)
    assert w == ()


def test_guards_fire_with_advice():
    x = np.r_[rng(16).normal(10, 3, 500), [40.0] * 10, [2.0]]  # a tail: 2% of runs at 4x the median
    w = assess_stability(_stats(x), threads=2, cores=2, loadavg_1m=1.5, sentinel_drift_pct=-8.0,
                         timer_resolution_s=1e-3, stop_reason="max_s", target_ci=0.02)
    codes = {x.code for x in w}
    assert codes == {"high_cv", "slow_outliers", "fast_outliers", "busy_machine", "sentinel_drift",
                     "below_timer_resolution", "ci_target_missed"}
    for x in w:
        assert x.message and x.advice and "\n" not in x.message + x.advice


def test_busy_machine_uses_measured_other_load_over_load_average():
    s = _stats(rng(17).normal(10, 0.2, 500))
    common = dict(sentinel_drift_pct=0.0, timer_resolution_s=1e-9, stop_reason="ci_target", target_ci=0.02)
    # a stale load average (e.g. our own training a minute ago) does not fire when other load was measured idle
    assert assess_stability(s, threads=1, cores=2, loadavg_1m=1.9, other_load=0.02, **common) == ()
    # one busy core beside a 1-thread measurement on 2 cores leaves the measured core free
    assert assess_stability(s, threads=1, cores=2, loadavg_1m=0.0, other_load=1.0, **common) == ()
    w = assess_stability(s, threads=2, cores=2, loadavg_1m=0.0, other_load=1.0, **common)
    assert [x.code for x in w] == ["busy_machine"] and "1.00 cores" in w[0].message


# --------------------------------------------------------------------------- pooled measurements (two-level)

def _width(ci):
    return ci[1] - ci[0]


def test_two_level_ci_is_wide_when_processes_disagree():
    a, b = rng(30).normal(1.0, 0.01, 3000), rng(31).normal(2.0, 0.01, 2000)
    one = LatencyStats.from_samples(np.r_[a, b], resamples=500)
    two = LatencyStats.from_processes([a, b], resamples=500)
    assert two.median == one.median and two.n == one.n == 5000 and two.p90 == one.p90
    assert _width(one.ci95_median) < 0.01  # pooled as one sample: falsely precise
    lo, hi = two.ci95_median
    assert lo < 1.01 and hi > 1.99  # either process alone is a plausible world
    assert _width(two.ci95_median) > 50 * _width(one.ci95_median)
    assert "two-level" in two.ci_method and "two-level" not in one.ci_method


def test_two_level_ci_about_equal_to_single_level_when_processes_agree():
    procs = [rng(40 + i).lognormal(0, 0.1, 3000) for i in range(5)]
    one = LatencyStats.from_samples(np.concatenate(procs), resamples=1000)
    two = LatencyStats.from_processes(procs, resamples=1000)
    for q in ("ci95_median", "ci95_p90"):
        # the small-sample correction removes the within-process noise that the two levels count twice
        assert 0.8 <= _width(getattr(two, q)) / _width(getattr(one, q)) <= 1.25
        assert getattr(two, q)[0] <= getattr(one, "median" if q == "ci95_median" else "p90") <= getattr(two, q)[1]
    assert LatencyStats.from_processes([procs[0]], resamples=200) == LatencyStats.from_samples(procs[0], resamples=200)


def test_two_level_ci_on_large_processes():
    """10 processes x 20k samples (what a long measurement gives): CIs bracket the pooled median and p90.

    Not timed: timings are never asserted in tests (the machine is noisy)."""
    procs = [rng(50 + i).lognormal(0, 0.1, 20000) for i in range(10)]
    s = LatencyStats.from_processes(procs)
    lo, hi = s.ci95_median
    assert lo <= s.median <= hi and hi - lo < 0.1 * s.median
    lo90, hi90 = s.ci95_p90
    assert lo90 <= s.p90 <= hi90 and s.p90 > s.median


class _Pooled:
    """Duck-typed pooled measurement: per-process samples, their rounds and the interleaved run id."""

    def __init__(self, procs, run_id=None):
        self.samples = tuple(np.concatenate(procs))
        self.process_n = tuple(len(p) for p in procs)
        self.process_rounds = tuple(range(len(procs)))
        self.interleave_id = run_id


def test_compare_pooled_reflects_between_process_variation():
    # one process in four of A and of B lands in a mode 2x slower
    a = [rng(60 + i).normal(2.0 if i == 1 else 1.0, 0.01, 1000) for i in range(4)]
    b = [rng(70 + i).normal(2.0 if i == 2 else 1.0, 0.01, 1000) for i in range(4)]
    flat = compare(np.concatenate(a), np.concatenate(b), resamples=500)
    pooled = compare(_Pooled(a), _Pooled(b), resamples=500)
    assert pooled.ratio_median == pytest.approx(flat.ratio_median)
    assert flat.verdict == "equivalent"  # falsely sure: samples of one process are not independent of each other
    assert _width(pooled.ci95) > 5 * _width(flat.ci95)
    assert pooled.verdict == "inconclusive" and "two-level" in pooled.method and "unpaired" in pooled.method


def test_compare_pooled_paired_by_round_cancels_shared_drift():
    # each round shifts both models alike (drift); B is 5% slower in every round
    drift = [1.0, 1.3, 0.8, 1.1, 0.9]
    a = [rng(80 + i).normal(d, 0.005, 800) for i, d in enumerate(drift)]
    b = [rng(90 + i).normal(1.05 * d, 0.005, 800) for i, d in enumerate(drift)]
    paired = compare(_Pooled(a, "run1"), _Pooled(b, "run1"), resamples=1000)
    unpaired = compare(_Pooled(a, "run1"), _Pooled(b, "run2"), resamples=1000)
    assert "paired by round" in paired.method and "unpaired" in unpaired.method
    assert paired.verdict == "slower" and paired.ci95[0] > 1.03
    assert unpaired.verdict != "slower" and _width(unpaired.ci95) > 3 * _width(paired.ci95)
    same = compare(_Pooled(a, "run1"), _Pooled(a, "run1"), resamples=1000)
    assert same.verdict == "equivalent"


def test_compare_reads_pooled_json_records():
    a = [rng(100 + i).lognormal(0, 0.05, 500) for i in range(3)]
    b = [rng(110 + i).lognormal(0.2, 0.05, 500) for i in range(3)]

    def record(procs, run_id):
        return {"latency": {"samples": list(np.concatenate(procs)), "process_n": [len(p) for p in procs],
                            "process_rounds": [0, 1, 2]}, "protocol": {"interleave": {"id": run_id}}}

    c = compare(record(a, "r"), record(b, "r"), resamples=500)
    assert c.verdict == "slower" and "paired by round" in c.method
    assert c.ratio_median == pytest.approx(math.exp(0.2), rel=0.03)


def test_process_spread_warning():
    s = _stats(rng(120).normal(10, 0.2, 500))
    common = dict(threads=1, cores=2, loadavg_1m=0.0, sentinel_drift_pct=0.0, timer_resolution_s=1e-9,
                  stop_reason="ci_target", target_ci=0.02)
    assert assess_stability(s, process_medians=[10.0, 10.1, 9.95], **common) == ()
    w = assess_stability(s, process_medians=[10.0, 11.0, 9.9], **common)
    assert [x.code for x in w] == ["process_spread"]
    assert "threads 1" in w[0].advice and "rounds" in w[0].advice


def test_two_level_small_sample_correction_reaches_the_t_interval():
    from scipy.stats import t

    from workbench.measure.pooled import _corrected

    r = rng(130)
    # no within-process noise: the process level alone, bootstrapped over P=5 process values
    vals = np.array([1.0, 1.02, 0.98, 1.05, 0.97])
    boot = vals[r.integers(0, 5, size=(20000, 5))].mean(axis=1)
    lo, hi = _corrected(float(vals.mean()), boot, np.full(20000, vals.mean()), 5)
    t_half = t.ppf(0.975, 4) * vals.std(ddof=1) / np.sqrt(5)
    assert (hi - lo) / 2 == pytest.approx(t_half, rel=0.1)
    plain = np.percentile(boot, [2.5, 97.5])
    assert hi - lo > 1.3 * (plain[1] - plain[0])  # the plain percentile interval is too narrow at P=5


@pytest.mark.slow
def test_two_level_ci_coverage_with_between_process_variation():
    from workbench.measure.pooled import two_level_ci

    r, hits, reps = rng(140), 0, 120
    for i in range(reps):
        procs = [r.lognormal(r.normal(0, 0.03), 0.1, 300) for _ in range(5)]
        lo, hi = two_level_ci(procs, (0.5,), resamples=600, seed=i)[0]
        hits += lo <= 1.0 <= hi
    assert 0.89 <= hits / reps <= 0.99


def test_a_few_interrupted_runs_are_not_a_tail():
    x = np.r_[rng(18).normal(10, 0.2, 6000), [35.0, 38.0]]  # 2 of 6,000 runs interrupted
    codes = {w.code for w in assess_stability(_stats(x), threads=1, cores=2, loadavg_1m=0.0, sentinel_drift_pct=0.0,
                                              timer_resolution_s=1e-9, stop_reason="ci_target", target_ci=0.02)}
    assert "slow_outliers" not in codes
