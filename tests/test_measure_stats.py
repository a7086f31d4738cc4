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
    x = np.r_[rng(16).normal(10, 3, 500), [40.0, 2.0]]
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
