"""Statistics computed ONCE, in the parent process, from the raw samples.

numpy and scipy are imported inside functions so ``import workbench.measure`` stays cheap.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

from ..errors import MeasurementError

QUANTILE_METHOD = "numpy 'linear'"
EQUIVALENCE_MARGIN = 0.02


SCIPY_BOOTSTRAP_MAX_N = 10_000  # above this, resampled quantiles are drawn exactly (see _order_stat_bootstrap)


def _ci_method(n: int, resamples: int, seed: int) -> str:
    if n <= SCIPY_BOOTSTRAP_MAX_N:
        how = f"scipy.stats.bootstrap, method='percentile', n_resamples={resamples}, seed={seed}"
    else:
        how = (f"n > {SCIPY_BOOTSTRAP_MAX_N}: resampled order statistics drawn exactly from Beta(k, n+1-k), "
               f"the same distribution as resampling with replacement; n_resamples={resamples}, seed={seed}")
    return f"bootstrap percentile ({how}); quantiles {QUANTILE_METHOD}"


def _bootstrap_ci(data: tuple, statistic, resamples: int, seed: int) -> tuple[float, float]:
    """95% percentile-bootstrap CI of ``statistic`` (vectorised, batched to bound memory)."""
    import warnings

    import numpy as np
    from scipy import stats as sps

    n = max(len(d) for d in data)
    batch = max(1, min(resamples, int(2e7 // max(n * len(data), 1))))  # <= ~160 MB of float64 per batch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate (all-equal) samples give a zero-width CI: fine
        res = sps.bootstrap(data, statistic, n_resamples=resamples, batch=batch, vectorized=True,
                            paired=False, confidence_level=0.95, method="percentile",
                            rng=np.random.default_rng(seed))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return lo, hi


def _order_stat_bootstrap(sorted_x, q: float, resamples: int, rng) -> "np.ndarray":
    """``resamples`` draws of np.percentile(resample, 100*q) without materialising any resample.

    A resample with replacement is n iid draws x_(ceil(n*U)), U ~ Uniform(0,1), so its k-th order
    statistic is x_(ceil(n*U_(k))) with U_(k) ~ Beta(k, n+1-k); the next one follows from
    U_(k+1) = U_(k) + (1 - U_(k)) * Beta(1, n-k). Exact, O(resamples) after one sort.
    """
    import numpy as np

    n = sorted_x.size
    h = (n - 1) * q  # numpy 'linear': interpolate between 0-based order statistics k and k+1
    k = int(np.floor(h))
    frac = h - k
    u1 = rng.beta(k + 1, n - k, size=resamples)
    i1 = np.minimum((u1 * n).astype(np.int64), n - 1)
    v = sorted_x[i1]
    if frac > 0 and k + 1 < n:
        u2 = u1 + (1 - u1) * rng.beta(1, n - k - 1, size=resamples)
        i2 = np.minimum((u2 * n).astype(np.int64), n - 1)
        v = v + frac * (sorted_x[i2] - v)
    return v


def _quantile_ci(x, q: float, resamples: int, seed: int) -> tuple[float, float]:
    """95% percentile-bootstrap CI of the q-quantile: scipy for small n, exact order statistics above."""
    import numpy as np

    if x.size <= SCIPY_BOOTSTRAP_MAX_N:
        return _bootstrap_ci((x,), lambda s, axis: np.percentile(s, 100 * q, axis=axis), resamples, seed)
    boot = _order_stat_bootstrap(np.sort(x), q, resamples, np.random.default_rng(seed))
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return float(lo), float(hi)


def _as_samples(x) -> "np.ndarray":
    import numpy as np

    samples = getattr(x, "samples", x)
    arr = np.asarray(samples, dtype=np.float64).ravel()
    if arr.size == 0:
        raise MeasurementError("no latency samples to analyse; the measurement produced no timed runs — re-run it")
    if not np.all(np.isfinite(arr)):
        raise MeasurementError("latency samples contain NaN or infinite values; re-run the measurement")
    return arr


def _point_stats(x) -> dict:
    import numpy as np

    med = float(np.median(x))
    mean = float(np.mean(x))
    std = float(np.std(x, ddof=1)) if x.size > 1 else 0.0
    p90, p95, p99 = (float(v) for v in np.percentile(x, [90, 95, 99]))
    return dict(n=int(x.size), min=float(x.min()), median=med, mean=mean, p90=p90, p95=p95, p99=p99,
                max=float(x.max()), std=std, cv=std / mean if mean > 0 else float("nan"),
                mad=float(np.median(np.abs(x - med))))


@dataclass(frozen=True)
class LatencyStats:
    """Summary of raw latency samples (ms). ``mad`` is the unscaled median absolute deviation;
    ``std`` uses ddof=1; ``cv`` = std / mean. CIs are 95% percentile-bootstrap intervals."""

    n: int
    min: float
    median: float
    mean: float
    p90: float
    p95: float
    p99: float
    max: float
    std: float
    cv: float
    mad: float
    ci95_median: tuple[float, float] | None
    ci95_p90: tuple[float, float] | None
    ci_method: str

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float], resamples: int = 2000, seed: int = 0) -> "LatencyStats":
        """Statistics of one process's samples (ms), with bootstrap CIs of the median and p90."""
        x = _as_samples(samples_ms)
        if x.size > 1:
            ci_med = _quantile_ci(x, 0.5, resamples, seed)
            ci_p90 = _quantile_ci(x, 0.9, resamples, seed)
        else:
            ci_med = ci_p90 = None
        return cls(**_point_stats(x), ci95_median=ci_med, ci95_p90=ci_p90,
                   ci_method=_ci_method(int(x.size), resamples, seed))

    @classmethod
    def from_processes(cls, processes: Sequence[Sequence[float]], resamples: int = 2000,
                       seed: int = 0) -> "LatencyStats":
        """Statistics of the pooled samples of several processes; with more than one process the
        CIs of the median and p90 come from the two-level bootstrap of :mod:`.pooled`."""
        import numpy as np

        from .pooled import ci_method as pooled_ci_method, two_level_ci

        procs = [_as_samples(x) for x in processes]
        if not procs:
            raise MeasurementError("no latency samples to analyse; the measurement produced no timed runs — re-run it")
        if len(procs) == 1:
            return cls.from_samples(procs[0], resamples=resamples, seed=seed)
        ci_med, ci_p90 = two_level_ci(procs, (0.5, 0.9), resamples=resamples, seed=seed)
        return cls(**_point_stats(np.concatenate(procs)), ci95_median=ci_med, ci95_p90=ci_p90,
                   ci_method=f"{pooled_ci_method(len(procs), resamples, seed)}; quantiles {QUANTILE_METHOD}")

    def to_json(self) -> dict:
        """The JSON form stored in results and cards."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        for k in ("ci95_median", "ci95_p90"):
            d[k] = list(d[k]) if d[k] is not None else None
        return d

    @classmethod
    def from_json(cls, d: dict) -> "LatencyStats":
        """Rebuild from its JSON form (the inverse of to_json)."""
        kw = {f.name: d[f.name] for f in fields(cls)}
        for k in ("ci95_median", "ci95_p90"):
            kw[k] = tuple(kw[k]) if kw[k] is not None else None
        return cls(**kw)


@dataclass(frozen=True)
class Comparison:
    """Candidate vs baseline: ratio of medians (candidate / baseline) with a 95% CI and a verdict.

    Verdict rule (margin m = 0.02, i.e. +-2%; "lo"/"hi" are the CI bounds of the ratio):
      * "equivalent"   -- m-inside: 1 - m <= lo and hi <= 1 + m;
      * "faster"       -- not equivalent and hi < 1 (the candidate is faster with 95% confidence);
      * "slower"       -- not equivalent and lo > 1;
      * "inconclusive" -- otherwise (the CI straddles 1 and reaches beyond +-m), or when a noise
        guard fired during the comparison (``guards``: sentinel drift, busy machine, process
        spread; see :mod:`.verdict`), whatever the CI says.
    ``verdict_reason`` says why, ``advice`` what would make an inconclusive verdict conclusive;
    ``ci_method`` names the interval (paired-t+bootstrap, welch-t+bootstrap, two-level-bootstrap,
    two-sample-bootstrap); ``rounds``: paired rounds (or processes per side) behind the CI.
    """

    ratio_median: float
    ci95: tuple[float, float] | None  # None when either side has fewer than 2 samples
    verdict: str
    against: str | None = None
    n_baseline: int = 0
    n_candidate: int = 0
    method: str = ""
    verdict_reason: str = ""
    advice: str | None = None
    ci_method: str = ""
    rounds: int = 1
    guards: tuple[str, ...] = ()

    def to_json(self) -> dict:
        """The JSON form stored in results and cards."""
        d = {"ratio_median": self.ratio_median, "ci95": list(self.ci95) if self.ci95 else None, "verdict": self.verdict,
             "verdict_reason": self.verdict_reason, "advice": self.advice, "ci_method": self.ci_method,
             "rounds": self.rounds, "guards": list(self.guards), "method": self.method}
        if self.against is not None:
            d = {"against": self.against, **d}
        return d


def verdict_for(lo: float, hi: float, margin: float = EQUIVALENCE_MARGIN) -> str:
    """Apply the rule documented on :class:`Comparison` to a CI of the ratio of medians."""
    if 1 - margin <= lo and hi <= 1 + margin:
        return "equivalent"
    if hi < 1:
        return "faster"
    if lo > 1:
        return "slower"
    return "inconclusive"


def _processes(x) -> tuple[list, tuple | None]:
    """(per-process sample arrays, per-process (interleave id, round) keys or None) of a comparison side.

    ``x``: a sequence of samples (one process), anything with ``.samples`` (and, for a pooled
    measurement, ``.process_n`` / ``.process_rounds`` / ``.interleave_id``), or a record as written
    by ``LatencyMeasurement.to_json()``.
    """
    import numpy as np

    if isinstance(x, dict) and "latency" in x:
        lat = x["latency"]
        samples, sizes, rounds = lat.get("samples"), lat.get("process_n"), lat.get("process_rounds")
        run_id = ((x.get("protocol") or {}).get("interleave") or {}).get("id")
    else:
        samples = getattr(x, "samples", x)
        sizes, rounds = getattr(x, "process_n", None), getattr(x, "process_rounds", None)
        run_id = getattr(x, "interleave_id", None)
    arr = _as_samples(samples)
    if not sizes or len(sizes) < 2 or sum(sizes) != arr.size:
        return [arr], None
    procs = np.split(arr, np.cumsum(sizes)[:-1])
    keys = tuple((run_id, r) for r in rounds) if run_id and rounds and len(rounds) == len(procs) else None
    return procs, keys


def _round_pairs(kb: tuple | None, kc: tuple | None) -> list[tuple[int, int]] | None:
    """(baseline process, candidate process) per round when both sides come from the same interleaved run."""
    if not kb or not kc or len(set(kb)) != len(kb) or set(kb) != set(kc):
        return None
    where = {k: j for j, k in enumerate(kc)}
    return [(i, where[k]) for i, k in enumerate(kb)]


def compare(baseline_samples, candidate_samples, resamples: int = 2000, seed: int = 0, *,
            against: str | None = None, margin: float = EQUIVALENCE_MARGIN) -> Comparison:
    """Ratio median(candidate) / median(baseline) with a 95% CI and a verdict the noise guards agree with.

    Either argument may be a sequence of samples (ms), anything with ``.samples`` (e.g. a
    LatencyMeasurement), or a ``LatencyMeasurement.to_json()`` record. Two single-process sides:
    independent two-sample bootstrap. If either side pools several processes: the two-level
    bootstrap of :mod:`.pooled` (processes, then samples within them), paired by round when both
    come from the same ``measure_interleaved`` run, widened to a t-interval on the per-round
    log-ratios (paired; df = rounds - 1) or a Welch t-interval on the log process medians
    (unpaired, 2+ processes a side), so few processes give a wide, honest CI. A guard that fired
    (see :func:`.verdict.vetoes`) turns any definite verdict into "inconclusive"; see
    :class:`Comparison` for the rule and the reason / advice fields.
    """
    import numpy as np

    from .pooled import ci_method as pooled_ci_method, two_level_ratio_ci
    from .verdict import explain, paired_t_interval, vetoes, welch_t_interval, widest

    pb, kb = _processes(baseline_samples)
    pc, kc = _processes(candidate_samples)
    b, c = (pb[0], pc[0]) if len(pb) == len(pc) == 1 else (np.concatenate(pb), np.concatenate(pc))
    mb, mc = float(np.median(b)), float(np.median(c))
    if mb <= 0:
        raise MeasurementError("baseline median latency is not positive; cannot form a ratio — re-measure the baseline")
    ratio = mc / mb
    ci = None
    kind, log_ratios, round_ratios, rounds = "single", None, None, 1
    if len(pb) > 1 or len(pc) > 1:
        pairs = _round_pairs(kb, kc)
        boot = two_level_ratio_ci(pb, pc, resamples=resamples, seed=seed, pairs=pairs)
        how = pooled_ci_method(max(len(pb), len(pc)), resamples, seed, paired=pairs is not None)
        if pairs:
            kind, rounds = "paired", len(pairs)
            log_ratios = [float(np.log(np.median(pc[j]) / np.median(pb[i]))) for i, j in pairs]
            round_ratios = [float(np.exp(x)) for x in log_ratios]
            tci = paired_t_interval(log_ratios)
            ci_method = "paired-t+bootstrap" if tci else "two-level-bootstrap"
            how += (f"; widened to the t-interval on the {rounds} per-round log-ratios (df={rounds - 1}) "
                    "where that is wider" if tci else "")
        else:
            kind, rounds = "unpaired", min(len(pb), len(pc))
            tci = welch_t_interval([np.log(np.median(x)) for x in pb], [np.log(np.median(x)) for x in pc])
            ci_method = "welch-t+bootstrap" if tci else "two-level-bootstrap"
            how += ("; widened to the Welch t-interval on the log process medians where that is wider" if tci else "")
        ci = widest(boot, tci)
    else:
        if b.size >= 2 and c.size >= 2 and max(b.size, c.size) <= SCIPY_BOOTSTRAP_MAX_N:
            def stat(xb, xc, axis):
                return np.median(xc, axis=axis) / np.median(xb, axis=axis)

            ci = _bootstrap_ci((b, c), stat, resamples, seed)
        elif b.size >= 2 and c.size >= 2:
            rng = np.random.default_rng(seed)
            boot_b = _order_stat_bootstrap(np.sort(b), 0.5, resamples, rng)
            boot_c = _order_stat_bootstrap(np.sort(c), 0.5, resamples, rng)
            ci = tuple(float(v) for v in np.percentile(boot_c / boot_b, [2.5, 97.5]))
        how = (_ci_method(max(b.size, c.size), resamples, seed).replace("bootstrap percentile", "two-sample "
               "bootstrap percentile CI", 1).split("; quantiles")[0])
        ci_method = "two-sample-bootstrap"
    method = f"ratio of medians; {how}; equivalent if the CI lies within +-{margin:.0%}"
    stat_verdict = verdict_for(*ci, margin) if ci else "inconclusive"
    vetoed = vetoes(baseline_samples, candidate_samples, round_ratios=round_ratios,
                       process_medians=([np.median(x) for x in pb], [np.median(x) for x in pc]))
    verdict, reason, advice = explain(stat_verdict, ci, margin, vetoed=vetoed, kind=kind, rounds=rounds,
                                         log_ratios=log_ratios)
    return Comparison(ratio_median=ratio, ci95=ci, verdict=verdict,
                      against=against, n_baseline=int(b.size), n_candidate=int(c.size), method=method,
                      verdict_reason=reason, advice=advice, ci_method=ci_method, rounds=rounds,
                      guards=tuple(v.code for v in vetoed))
