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


class RecordingProgress:
    """A Progress stand-in that records info lines and shows no bars (tests read ``.lines``)."""

    def __init__(self):
        self.lines = []

    def info(self, msg):
        self.lines.append(msg)

    def bar(self, description, total):
        import contextlib

        return contextlib.nullcontext(lambda *a, **k: None)
