import os

import pytest

# keep the tests' own torch/ORT work on one thread each: the machine has 2 cores
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def digits():
    from workbench.tasks import get_task

    return get_task("digits")


@pytest.fixture(scope="session")
def tiny_cnn():
    import torch

    from workbench.zoo.models import SmallCNN

    torch.manual_seed(0)
    m = SmallCNN(width=4, depth=1)
    m.eval()
    return m


@pytest.fixture(scope="session")
def trained_cnn(digits):
    """A tiny CNN (width 4, depth 1) trained for a few seconds on digits, so that accuracy and top-1
    agreement of its exported artifacts mean something."""
    import torch

    from workbench.zoo.models import SmallCNN

    torch.manual_seed(0)
    m = SmallCNN(width=4, depth=1)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    x, y = torch.from_numpy(digits.x_train), torch.from_numpy(digits.y_train).long()
    for _ in range(4):
        for s in range(0, len(x), 64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(m(x[s:s + 64]), y[s:s + 64]).backward()
            opt.step()
    return m.eval()


def tiny_digits(n_train: int, n_val: int, n_test: int):
    """The first n_train / n_val / n_test real digits of each split at 16x16 (a task in seconds)."""
    import dataclasses

    from workbench.tasks import get_task

    d = get_task("digits", image_size=16)
    return dataclasses.replace(d, name="digits-tiny", x_train=d.x_train[:n_train], y_train=d.y_train[:n_train],
                               x_val=d.x_val[:n_val], y_val=d.y_val[:n_val], x_test=d.x_test[:n_test],
                               y_test=d.y_test[:n_test])


def tiny_protocol(**overrides):
    """A harness protocol short enough for tests (a real measurement, a fraction of a second)."""
    from workbench.measure import Protocol

    return Protocol(**{**dict(warmup_runs=3, warmup_s=0.05, min_runs=20, min_s=0.2, max_s=0.5, memory_runs=3,
                              timeout_s=90, bootstrap_resamples=300), **overrides})


class RecordingProgress:
    """A Progress stand-in that records info lines and shows no bars (tests read ``.lines``)."""

    def __init__(self):
        self.lines = []

    def info(self, msg):
        self.lines.append(msg)

    def bar(self, description, total):
        import contextlib

        return contextlib.nullcontext(lambda *a, **k: None)
