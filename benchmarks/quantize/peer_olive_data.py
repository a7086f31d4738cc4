"""Olive user script of benchmarks/quantize/peer_olive_worker.py: the calibration samples as an Olive dataset.

Olive imports this file itself (``user_script`` of the data config); ``npz_samples`` reads an .npz of
input name -> [N, ...] array and yields N samples ({name: sample}, label 0), which Olive's default
dataloader batches one at a time (the same samples `auto` calibrates on).
"""
import numpy as np
from olive.data.registry import Registry


class NpzSamples:
    """Sample i of every input array in an .npz, as a {name: array} dict with a dummy label."""

    def __init__(self, path: str):
        with np.load(path) as z:
            self.arrays = {k: z[k] for k in z.files}
        self.n = min(len(a) for a in self.arrays.values())

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i >= self.n:
            raise IndexError(i)
        return {k: a[i] for k, a in self.arrays.items()}, 0


@Registry.register_dataset("npz_samples")
def npz_samples(path: str, **kwargs):
    """Olive dataset: the samples of the .npz at ``path``."""
    return NpzSamples(path)
