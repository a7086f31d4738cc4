"""Accuracy of an artifact through a runtime, on the task's test split, with a bootstrap CI."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Quality:
    """A task metric of an artifact on the test split with its bootstrap 95% CI (what every record carries)."""

    metric: str
    value: float
    ci95: tuple[float, float]
    n: int
    ci_method: str = "bootstrap percentile over test examples (scipy.stats.bootstrap, 2000 resamples)"

    def to_json(self) -> dict:
        d = asdict(self)
        d["ci95"] = list(self.ci95)
        return d


def bootstrap_mean_ci(values: np.ndarray, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap percentile CI of the mean of per-example ``values`` (a point when they cannot vary)."""
    from scipy.stats import bootstrap

    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2 or np.all(values == values[0]):
        v = float(values.mean()) if len(values) else float("nan")
        return (v, v)
    res = bootstrap((values,), np.mean, n_resamples=resamples, confidence_level=0.95, method="percentile",
                    random_state=np.random.default_rng(seed), vectorized=True)
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))


def run_artifact(path: str, runtime: str, x: np.ndarray, input_name: str, threads: int = 1,
                 batch_size: int = 64) -> np.ndarray:
    """Outputs (logits) of the artifact on ``x``, through the named runtime adapter."""
    from ..runtimes import get_runtime

    return run_session(get_runtime(runtime).load(str(path), threads), x, input_name, batch_size)


def run_session(session, x: np.ndarray, input_name: str, batch_size: int = 64) -> np.ndarray:
    """Outputs (the first output) of an already loaded runtime session on ``x`` fed as ``input_name``, in
    batches of ``batch_size``: :func:`run_artifact`'s loop, for a caller that loaded the session first (to
    read its input names)."""
    outs = []
    for s in range(0, len(x), batch_size):
        outs.append(np.asarray(session.run({input_name: np.ascontiguousarray(x[s:s + batch_size])})[0]))
    return np.concatenate(outs)


def evaluate_accuracy(path: str, runtime: str, x: np.ndarray, y: np.ndarray, input_name: str,
                      threads: int = 1) -> tuple[Quality, np.ndarray]:
    """Accuracy of the artifact itself through ``runtime`` (never the PyTorch model). Returns (quality, logits)."""
    logits = run_artifact(path, runtime, x, input_name, threads)
    correct = (logits.argmax(1) == y).astype(np.float64)
    return Quality("accuracy", float(correct.mean()), bootstrap_mean_ci(correct), int(len(y))), logits
