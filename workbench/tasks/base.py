"""The Task type: fixed splits of real data, the metric, and the model input spec."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class Task:
    """A labelled task with array inputs: train/val/test splits, the metric, and the input name and shape models are
    built and exported for."""

    name: str
    description: str
    metric: str  # "accuracy"
    num_classes: int
    input_name: str
    sample_shape: tuple[int, ...]  # one example, without the batch dimension, e.g. (1, 32, 32)
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    options: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of a batch of one: what models are exported and measured with."""
        return (1, *self.sample_shape)

    def fingerprint(self) -> str:
        """Content hash of the data and preprocessing: keys every cache that depends on the data."""
        h = hashlib.sha256(f"{self.name}|{sorted(self.options.items())}".encode())
        for arr in (self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test):
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()[:16]

    def summary(self) -> dict:
        """The task as recorded in results and cards: name, metric, classes, split sizes, fingerprint."""
        return {
            "name": self.name,
            "description": self.description,
            "metric": self.metric,
            "num_classes": self.num_classes,
            "n_train": int(len(self.y_train)),
            "n_val": int(len(self.y_val)),
            "n_test": int(len(self.y_test)),
            "input_name": self.input_name,
            "input_shape": list(self.input_shape),
            "fingerprint": self.fingerprint(),
        }

    def labelled_subset(self, per_class: int, seed: int) -> np.ndarray:
        """Indices of a class-balanced labelled subset of the training split (same for a given seed)."""
        rng = np.random.default_rng(10_000 + seed)
        idx = []
        for c in range(self.num_classes):
            members = np.flatnonzero(self.y_train == c)
            idx.append(rng.choice(members, size=min(per_class, len(members)), replace=False))
        return np.sort(np.concatenate(idx))
