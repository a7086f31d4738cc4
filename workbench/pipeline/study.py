"""The distillation study: KD vs labels-only twins over seeds, paired, with a CI of the difference."""
from __future__ import annotations

import numpy as np


def paired_difference(labels_acc, kd_acc) -> dict:
    """Mean of the per-seed differences (KD - labels) with a 95% paired-t CI over seeds."""
    from scipy import stats

    a, b = np.asarray(labels_acc, float), np.asarray(kd_acc, float)
    d = b - a
    n = len(d)
    mean = float(d.mean())
    if n < 2:
        lo = hi = float("nan")
    else:
        sem = float(d.std(ddof=1) / np.sqrt(n))
        half = float(stats.t.ppf(0.975, n - 1) * sem)
        lo, hi = mean - half, mean + half
    if n < 2:
        verdict = "not enough seeds"
    elif lo > 0:
        verdict = "KD helps"
    elif hi < 0:
        verdict = "KD hurts"
    else:
        verdict = "no significant difference"
    return {"labels_mean": float(a.mean()), "kd_mean": float(b.mean()),
            "labels_std": float(a.std(ddof=1)) if n > 1 else 0.0, "kd_std": float(b.std(ddof=1)) if n > 1 else 0.0,
            "diff_mean": mean, "diff_ci95": [lo, hi], "ci_method": f"paired t over {n} seeds (95%)", "verdict": verdict}
