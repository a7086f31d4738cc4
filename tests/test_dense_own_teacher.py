"""A dense task's teacher can be the user's own PyTorch network (``py:FILE:factory`` with weights), not only a
``dense:`` net: checked on one page for per-pixel logits, distilled on its logit maps (no neck: no hint)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.distill.engine import FitConfig
from workbench.errors import RecipeError
from workbench.pipeline.families import FAMILIES
from workbench.pipeline.families.dense_train import fit_dense, teacher_maps
from workbench.recipe import load_recipe
from workbench.tasks import load_task
from workbench.zoo.dense import build_dense
from workbench.zoo.weights import save_weights

TASK = "dense:pages?n_train=8&n_val=2&n_test=4&size=32"

NETS = '''
import torch


class Seg(torch.nn.Module):
    def __init__(self, out=2):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, out, 1))

    def forward(self, x):
        return self.body(x)


def seg(num_classes=2, **_):
    return Seg(num_classes)


def wrong(num_classes=2, **_):
    return Seg(3)
'''


def _recipe(tmp_path, source: str, hint: float = 0.0):
    (tmp_path / "r.toml").write_text(f'''schema_version = 1
name = "own-teacher"
[task]
name = "{TASK}"
[teacher]
source = "{source}"
[[students]]
name = "fcn"
arch = "dense:fcn?width=2&depth=1&hint={hint}"
[distill]
regimes = ["full"]
''')
    return load_recipe(tmp_path / "r.toml")


@pytest.fixture()
def nets(tmp_path):
    (tmp_path / "nets.py").write_text(NETS)
    torch.manual_seed(0)
    exec(compile(NETS, "nets", "exec"), ns := {})
    save_weights(ns["seg"](), tmp_path / "seg.safetensors")
    save_weights(ns["wrong"](), tmp_path / "wrong.safetensors")
    return tmp_path


def test_an_own_pytorch_teacher_gives_logit_maps_and_distils_without_a_hint(nets):
    task, fam = load_task(TASK), FAMILIES.get("dense-text")
    rec = _recipe(nets, f"py:{nets / 'nets.py'}:seg?weights={nets / 'seg.safetensors'}")
    loaded = fam.load_teacher(rec, task, nets)
    assert loaded.module is not None and loaded.sha256
    logits, necks = teacher_maps(loaded.module, task)
    assert logits.shape == (8, 2, 32, 32) and necks is None
    student = build_dense("fcn", in_channels=1, classes=2, width=2, depth=1)
    res = fit_dense(student, task, FitConfig(steps=2, batch_size=4, seed=0), teacher=(logits, necks),
                    temperature=2.0, alpha=0.5)
    assert np.isfinite(res.final_loss)


@pytest.mark.parametrize("source, hint, said", [
    ("py:{d}/nets.py:wrong?weights={d}/wrong.safetensors", 0.0, "returns (1, 3, 32, 32)"),
    ("py:{d}/nets.py:seg?weights={d}/seg.safetensors", 1.0, "has no forward_with_neck"),
])
def test_an_own_teacher_that_cannot_serve_the_run_is_one_line(nets, source, hint, said):
    rec = _recipe(nets, source.format(d=nets), hint=hint)
    with pytest.raises(RecipeError) as e:
        FAMILIES.get("dense-text").load_teacher(rec, load_task(TASK), nets)
    assert said in str(e.value) and "\n" not in str(e.value)
