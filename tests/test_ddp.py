"""`workbench distill --nproc-per-node 2` under torchrun (gloo, CPU): the same weights as one process,
only rank 0 writes and prints, and a run whose rank 0 is SIGKILLed mid-way resumes from its checkpoint
to those same weights.

The crash comes from the test's own student (``nets.py``, user code to the workbench): with $DIE_AT_FORWARD = k
in its environment, rank 0 (torchrun's $RANK) SIGKILLs itself in its k-th training-mode forward, as a crash
or an OOM kill would, mid-step; the workbench has no test hook of its own."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import tiny_digits

from workbench.cli import main
from workbench.zoo.models import SmallCNN
from workbench.zoo.weights import load_weights, save_weights

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

DIE_AT_FORWARD = "DIE_AT_FORWARD"  # read by the test's student below, never by the workbench

NETS = '''
import os
import signal

from torch import nn

CALLS = [0]


class Net(nn.Sequential):
    """An MLP whose rank 0 SIGKILLs itself in its $DIE_AT_FORWARD-th training forward (eval and export untouched)."""

    def forward(self, x):
        if self.training and os.environ.get("DIE_AT_FORWARD") and os.environ.get("RANK") == "0":
            CALLS[0] += 1
            if CALLS[0] == int(os.environ["DIE_AT_FORWARD"]):
                os.kill(os.getpid(), signal.SIGKILL)
        return super().forward(x)


def mlp(num_classes, in_channels=1, side=16):
    """No BatchNorm: under DDP a BatchNorm layer normalises each rank's share, not the global batch."""
    return Net(nn.Flatten(), nn.Linear(in_channels * side * side, 24), nn.ReLU(), nn.Linear(24, num_classes))
'''


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The tiny task (150 / 40 / 60 digits at 16x16) as .npz, a conv teacher's weights, the student factory."""
    root = tmp_path_factory.mktemp("ddp")
    t = tiny_digits(150, 40, 60)
    np.savez(root / "tiny.npz", x_train=t.x_train, y_train=t.y_train, x_val=t.x_val, y_val=t.y_val,
             x_test=t.x_test, y_test=t.y_test)
    torch.manual_seed(0)
    save_weights(SmallCNN(in_channels=1, num_classes=10, width=4, depth=1).eval(), root / "teacher.safetensors")
    (root / "nets.py").write_text(NETS)
    return root


def _args(root, out) -> list[str]:
    # 150 examples in batches of 33: 5 steps per pass (the last batch of 18), 3 passes; ranks take 17 + 16
    # of each batch (9 + 9 of the last); shift 1: 9 views drawn per example over the whole batch
    return ["distill", "--teacher", f"zoo:cnn?width=4&depth=1&weights={root / 'teacher.safetensors'}",
            "--student", f"py:{root / 'nets.py'}:mlp", "--task", f"npz:{root / 'tiny.npz'}", "--steps", "15",
            "--batch-size", "33", "--lr", "5e-3", "--shift", "1", "--patience", "0", "--device", "cpu",
            "--cache", str(root / "cache"), "--out", str(out)]


def _torchrun(args, env_extra=None, cwd=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop(DIE_AT_FORWARD, None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args, "--nproc-per-node", "2"], env=env,
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def _weights(path):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 24), torch.nn.ReLU(), torch.nn.Linear(24, 10))
    load_weights(model, path)
    return model.state_dict()


def test_two_processes_match_one_and_a_killed_run_resumes(files, tmp_path, capsys):
    ref = tmp_path / "one"
    assert main(_args(files, ref)) == 0  # one process, in this one: the reference
    capsys.readouterr()
    entries = sorted(p.name for p in (files / "cache").iterdir())

    out = tmp_path / "two"
    killed = _torchrun(_args(files, out), {DIE_AT_FORWARD: "8"}, cwd=tmp_path)  # rank 0 dies in step 8 (pass 2)
    assert killed.returncode != 0, killed.stdout + killed.stderr
    assert "torchrun exited with code" in killed.stderr
    assert (out / "work" / "checkpoint.pt").is_file() and not (out / "card.json").exists()

    done = _torchrun(_args(files, out), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    card = json.loads((out / "card.json").read_text())
    assert card["fit"]["resumed_from"] == 1 and card["fit"]["steps_run"] == 15  # pass 1 from the checkpoint
    a, b = _weights(ref / "student.safetensors"), _weights(out / "student.safetensors")
    assert a.keys() == b.keys()
    for k in a:  # the same global batches, views and steps: equal up to float summation order
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-5), (k, (a[k] - b[k]).abs().max())
    one = json.loads((ref / "card.json").read_text())
    assert [round(h["loss"], 4) for h in card["fit"]["history"]] == [round(h["loss"], 4) for h in one["fit"]["history"]]
    # rank 0 alone printed and wrote: one summary, the expected files, no second cache entry
    assert done.stdout.count("written: ") == 1
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "student.onnx", "student.safetensors", "work"]
    assert sorted(p.name for p in (out / "work").iterdir()) == ["checkpoint.pt"]
    assert sorted(p.name for p in (files / "cache").iterdir()) == entries
    assert "torchrun: 2 processes (gloo)" in done.stderr + done.stdout
