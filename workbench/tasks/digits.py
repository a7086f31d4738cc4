"""Built-in task `digits`: scikit-learn's bundled handwritten digits (real data, no download).

1,797 grey 8x8 images of the digits 0-9 (UCI optical recognition of handwritten digits; values 0-16).
Fixed stratified split with seed 0: 70% train (1,257), 10% validation (180), 20% test (360).
Images are scaled to [0, 1], resized bilinearly to `image_size` (default 32x32, so that
convolutions and pooling do real work as on a small camera crop) and standardised with the
training split's mean and std.
"""
from __future__ import annotations

import numpy as np

from ..errors import TaskError
from .base import Task

SPLIT_SEED = 0


def load_digits_task(image_size: int = 32) -> Task:
    """The built-in digits task (scikit-learn's 8x8 digits, resized): fixed stratified splits, so every run sees the
    same data."""
    if not isinstance(image_size, int) or not 8 <= image_size <= 128:
        raise TaskError(f"digits: image_size must be an integer between 8 and 128, got {image_size!r}")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = data.target.astype(np.int64)
    idx = np.arange(len(y))
    i_train, i_rest = train_test_split(idx, test_size=0.3, stratify=y, random_state=SPLIT_SEED)
    i_val, i_test = train_test_split(i_rest, test_size=2 / 3, stratify=y[i_rest], random_state=SPLIT_SEED)
    x = _resize(x, image_size)
    mean, std = float(x[i_train].mean()), float(x[i_train].std())
    x = ((x - mean) / std).astype(np.float32)
    return Task(
        name="digits",
        description=(
            f"scikit-learn load_digits (1,797 real handwritten digits), resized 8x8 -> {image_size}x{image_size}, "
            "stratified 70/10/20 split (seed 0)"
        ),
        metric="accuracy",
        num_classes=10,
        input_name="input",
        sample_shape=(1, image_size, image_size),
        x_train=x[i_train], y_train=y[i_train],
        x_val=x[i_val], y_val=y[i_val],
        x_test=x[i_test], y_test=y[i_test],
        options={"image_size": image_size, "normalise": [round(mean, 6), round(std, 6)]},
    )


def _resize(x: np.ndarray, size: int) -> np.ndarray:
    if x.shape[-1] == size:
        return x
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        return F.interpolate(torch.from_numpy(x), size=(size, size), mode="bilinear", align_corners=False).numpy()
