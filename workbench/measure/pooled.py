"""Uncertainty across processes: a two-level (hierarchical) bootstrap for pooled measurements.

The same model measured in several fresh processes does not give one distribution: each process
has its own memory layout, thread placement and frequency history, and on a busy 2-core machine
with 2 threads the per-process median can flip between modes ~2x apart. A bootstrap that
resamples the pooled samples treats them as one i.i.d. sample and its CI is far too narrow. Here
the resampling follows how the data were made:

1. resample PROCESSES with replacement (a process drawn twice counts twice);
2. within each drawn process, resample its samples with replacement.

To stay cheap, each process is summarised by at most ``SUMMARY_POINTS`` quantiles of its sorted
samples (each point standing for n/k samples), and the within-process resample is a Poisson
bootstrap: point i gets weight ~ Poisson(multiplicity * n/k). Sums of Poissons are Poisson, so
this matches resampling the n raw samples up to the ~1/k quantisation of the summary. Quantiles
of a weighted resample come from one cumulative sum and one ``searchsorted`` per batch.

Small-sample correction. A percentile bootstrap over P processes is too narrow for small P (its
variance is (P-1)/P of the usual estimate, and it uses normal rather than t quantiles), while
resampling within processes on top counts the within-process noise about twice. So each side of
the interval is rebuilt from two bootstraps of the same statistic, the two-level one (half-width
h_t) and a within-only one (processes fixed, h_w):

    between^2 = max(0, h_t^2 - (2P-1)/P * h_w^2) * P/(P-1)     (the process-level part)
    h^2       = h_w^2 + (t_{P-1, 0.975} / z_{0.975})^2 * between^2

When the processes agree this is the within-process CI; when they disagree and within-process
noise is negligible it is the t-interval over P processes. The result is clipped to the range of
the two-level replicates. Simulated coverage (P=5, lognormal samples, process shifts sd 3%) rose
from 0.90 (plain percentile) to ~0.95.
"""
from __future__ import annotations

from typing import Sequence

SUMMARY_POINTS = 1000
_CELLS_PER_BATCH = 4_000_000  # weights drawn per batch (~32 MB of float64)


def ci_method(processes: int, resamples: int, seed: int, paired: bool | None = None) -> str:
    """The sentence recorded with a pooled CI that says exactly how it was computed (processes, pairing, resamples,
    seed)."""
    pair = "" if paired is None else ("; paired by round (A and B of a round drawn together)" if paired
                                      else "; unpaired (A and B processes drawn independently)")
    return (f"two-level bootstrap percentile over {processes} processes: processes resampled with replacement, "
            f"then samples within each drawn process (Poisson weights on a <= {SUMMARY_POINTS}-quantile summary "
            f"of each process){pair}; small-sample correction: process-level part of each half-width widened "
            f"by t(P-1)/z, within-process double counting removed (workbench.measure.pooled); "
            f"n_resamples={resamples}, seed={seed}")


class Summary:
    """The processes of one measurement, as globally sorted weighted points."""

    def __init__(self, processes: Sequence, k: int = SUMMARY_POINTS):
        import numpy as np

        vals, lam, owner = [], [], []
        for j, x in enumerate(processes):
            x = np.sort(np.asarray(x, dtype=np.float64))
            n = x.size
            kj = min(n, k)
            v = x if kj == n else np.quantile(x, (np.arange(kj) + 0.5) / kj)
            vals.append(v)
            lam.append(np.full(kj, n / kj))
            owner.append(np.full(kj, j, dtype=np.int64))
        order = np.argsort(np.concatenate(vals), kind="stable")
        self.values = np.concatenate(vals)[order]
        self.rate = np.concatenate(lam)[order]
        self.owner = np.concatenate(owner)[order]
        self.processes = len(vals)

    def boot_quantiles(self, multiplicity, qs: Sequence[float], rng):
        """Quantiles ``qs`` of one two-level resample per row of ``multiplicity`` (B x processes)."""
        import numpy as np

        mult = np.asarray(multiplicity, dtype=np.float64)
        b_total, n = mult.shape[0], self.values.size
        out = np.empty((b_total, len(qs)))
        batch = max(1, _CELLS_PER_BATCH // max(n, 1))
        for s in range(0, b_total, batch):
            m = mult[s:s + batch]
            w = rng.poisson(m[:, self.owner] * self.rate)
            cw = np.cumsum(w, axis=1, dtype=np.float64)
            tot = cw[:, -1]
            tot = np.where(tot > 0, tot, 1.0)  # an empty resample (vanishingly rare) gives the smallest value
            span = float(tot.max()) + 1.0
            rows = np.arange(m.shape[0])
            flat = (cw + (rows * span)[:, None]).ravel()
            for i, q in enumerate(qs):
                target = np.maximum(q * tot, 0.5) + rows * span
                idx = np.searchsorted(flat, target, side="left") - rows * n
                out[s:s + batch, i] = self.values[np.clip(idx, 0, n - 1)]
        return out


def process_multiplicity(processes: int, resamples: int, rng):
    """How often each process is drawn in each resample: Multinomial(P, 1/P) rows."""
    import numpy as np

    return rng.multinomial(processes, np.full(processes, 1.0 / processes), size=resamples)


def _corrected(est: float, two, within, processes: int) -> tuple[float, float]:
    """The small-sample-corrected 95% interval (see the module docstring) from two sets of replicates."""
    import math

    import numpy as np
    from scipy.stats import t

    lo_t, hi_t = np.percentile(two, [2.5, 97.5])
    lo_w, hi_w = np.percentile(within, [2.5, 97.5])
    p = max(int(processes), 2)
    k2 = (float(t.ppf(0.975, p - 1)) / 1.959964) ** 2
    half = []
    for ht, hw in ((est - lo_t, est - lo_w), (hi_t - est, hi_w - est)):
        ht, hw = max(float(ht), 0.0), max(float(hw), 0.0)
        between2 = max(0.0, ht * ht - (2 * p - 1) / p * hw * hw) * p / (p - 1)
        half.append(math.sqrt(hw * hw + k2 * between2))
    lo = max(est - half[0], float(np.min(two)))
    hi = min(est + half[1], float(np.max(two)))
    return min(lo, est), max(hi, est)


def two_level_ci(processes: Sequence, qs: Sequence[float], resamples: int = 2000,
                 seed: int = 0) -> list[tuple[float, float]]:
    """95% CIs of the pooled quantiles ``qs`` of several processes (two-level bootstrap, corrected)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    summ = Summary(processes)
    two = summ.boot_quantiles(process_multiplicity(summ.processes, resamples, rng), qs, rng)
    within = summ.boot_quantiles(np.ones((resamples, summ.processes)), qs, rng)
    pooled = np.concatenate([np.asarray(x, dtype=np.float64) for x in processes])
    est = np.quantile(pooled, qs)
    return [_corrected(float(est[i]), two[:, i], within[:, i], summ.processes) for i in range(len(qs))]


def two_level_ratio_ci(base: Sequence, cand: Sequence, resamples: int = 2000, seed: int = 0,
                       pairs: Sequence[tuple[int, int]] | None = None) -> tuple[float, float]:
    """95% CI of median(candidate) / median(baseline), both given as lists of per-process samples.

    ``pairs``: (baseline process, candidate process) of each round when both come from the same
    interleaved run; rounds are then resampled together, so drift shared by a round cancels.
    The small-sample correction uses P = rounds when paired, else the smaller process count (> 1).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    sb, sc = Summary(base), Summary(cand)
    if pairs:
        rounds = process_multiplicity(len(pairs), resamples, rng)
        mb = np.zeros((resamples, sb.processes))
        mc = np.zeros((resamples, sc.processes))
        for r, (i, j) in enumerate(pairs):
            mb[:, i] += rounds[:, r]
            mc[:, j] += rounds[:, r]
        p = len(pairs)
    else:
        mb = process_multiplicity(sb.processes, resamples, rng)
        mc = process_multiplicity(sc.processes, resamples, rng)
        p = min(n for n in (sb.processes, sc.processes) if n > 1) if max(sb.processes, sc.processes) > 1 else 2
    two = sc.boot_quantiles(mc, (0.5,), rng)[:, 0] / sb.boot_quantiles(mb, (0.5,), rng)[:, 0]
    within = (sc.boot_quantiles(np.ones((resamples, sc.processes)), (0.5,), rng)[:, 0]
              / sb.boot_quantiles(np.ones((resamples, sb.processes)), (0.5,), rng)[:, 0])
    est = float(np.median(np.concatenate([np.asarray(x, dtype=np.float64) for x in cand]))
                / np.median(np.concatenate([np.asarray(x, dtype=np.float64) for x in base])))
    return _corrected(est, two, within, p)


def spread(process_medians: Sequence[float]) -> float | None:
    """Half the range of the per-process medians, relative to their median (None for one process)."""
    import statistics

    meds = [float(m) for m in process_medians]
    if len(meds) < 2:
        return None
    mid = statistics.median(meds)
    return (max(meds) - min(meds)) / 2 / mid if mid > 0 else None
