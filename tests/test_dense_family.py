"""Dense prediction (issue 16, item 1) through the pipeline: the KD loss pieces, and a whole
``workbench run --quick`` of a dense recipe on tiny pages."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from workbench.cli import main
from workbench.distill.dense_loss import dense_loss, hint_loss, pixel_kd_loss
from workbench.zoo.dense import build_dense


def test_pixel_kd_is_zero_for_equal_maps_and_positive_otherwise():
    t = torch.randn(2, 2, 8, 8)
    assert pixel_kd_loss(t, t, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    assert pixel_kd_loss(torch.zeros_like(t), t, 2.0).item() > 0
    masks = torch.zeros(2, 8, 8, dtype=torch.long)
    ce = dense_loss(t, masks)
    assert dense_loss(t, masks, teacher_logits=t, alpha=0.5).item() == pytest.approx(0.5 * ce.item(), rel=1e-5)


def test_hint_loss_trains_the_adapter_towards_the_teacher_neck():
    adapter = torch.nn.Conv2d(4, 8, 1)
    s, t = torch.randn(2, 4, 4, 4), torch.randn(2, 8, 4, 4)
    before = hint_loss(adapter, s, t).item()
    opt = torch.optim.SGD(adapter.parameters(), lr=0.1)
    for _ in range(50):
        opt.zero_grad()
        hint_loss(adapter, s, t).backward()
        opt.step()
    assert hint_loss(adapter, s, t).item() < before


def test_dense_nets_map_an_image_to_two_class_maps_and_expose_the_neck():
    for arch in ("unet", "fcn"):
        m = build_dense(arch, width=4, depth=2)
        logits, neck = m.forward_with_neck(torch.zeros(3, 1, 32, 32))
        assert logits.shape == (3, 2, 32, 32) and neck.shape == (3, m.neck_channels, 8, 8)


@pytest.mark.parametrize("stride", [4, 8, 16])
def test_a_torchvision_backbone_with_a_light_head_maps_back_to_full_resolution(stride):
    """dense:mobilenet_v3_small: torchvision's MobileNetV3-Small features (first conv on the task's 1 channel) cut
    at the output stride, a 1x1 head and a bilinear upsample; its neck is the backbone's last map."""
    from workbench.errors import RecipeError
    from workbench.zoo.dense import check_options

    m = build_dense("mobilenet_v3_small", **check_options("mobilenet_v3_small", {"width_mult": 0.25, "stride": stride}, "s"))
    logits, neck = m.eval().forward_with_neck(torch.rand(2, 1, 48, 48))
    assert logits.shape == (2, 2, 48, 48) and neck.shape == (2, m.neck_channels, 48 // stride, 48 // stride)
    assert m.body[0][0].in_channels == 1
    # PyTorch's BatchNorm momentum, not torchvision's 0.01 (too slow for a few hundred steps: eval output collapses)
    assert {b.momentum for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)} == {0.1}
    for bad, said in (({"stride": 32}, "stride = 32 must be 4, 8 or 16"), ({"width": 4}, "unknown option 'width'")):
        with pytest.raises(RecipeError, match=said):
            check_options("mobilenet_v3_small", bad, "s")


RECIPE = """schema_version = 1
name = "dense-tiny"
[task]
name = "dense:pages?size=32&n_train=32&n_val=6&n_test=10&seed=1"
[teacher]
source = "dense:unet?width=6&depth=1&steps=40"
[[students]]
name = "fcn-2"
arch = "dense:fcn?width=2&depth=1&hint=1.0"
[distill]
seeds = [0, 1]
regimes = ["full"]
steps = 15
batch_size = 8
[quantize]
teacher = ["static"]
students = ["static"]
calib_samples = 8
[measure]
runtimes = ["ort"]
"""


@pytest.mark.slow
def test_workbench_run_quick_on_tiny_pages(tmp_path, monkeypatch):
    """`workbench run --quick` of a dense recipe: the U-Net teacher (trained once, cached), both twins per
    seed, int8 teacher and student, all measured on ORT with the mean IoU (and box F1) of each artifact."""
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    (tmp_path / "dense.toml").write_text(RECIPE)
    assert main(["run", str(tmp_path / "dense.toml"), "--quick", "--quiet", "--out", str(tmp_path / "run")]) == 0
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["run"]["task"]["metric"] == "mean IoU" and res["run"]["task"]["n_test"] == 10
    rows = [r for r in res["results"] if r["status"] == "ok"]
    variants = {r["variant"] for r in rows}
    assert any(v.startswith("teacher") for v in variants) and any(v.startswith("fcn-2") for v in variants)
    assert any("int8" in v or "static" in v for v in variants), variants
    for r in rows:
        q = r["quality"]
        assert q["metric"] == "mean IoU" and 0.0 <= q["value"] <= 1.0 and q["ci95"][0] <= q["value"] <= q["ci95"][1]
        assert 0.0 <= q["box_f1"] <= 1.0 and q["n"] == 10
        assert r["latency"]["median"] > 0
    (study,) = res["studies"]["distillation"]
    assert study["metric"] == "mean IoU" and study["student"] == "fcn-2" and len(study["kd_acc"]) == 2
    assert study["diff_ci95"][0] <= study["diff_mean"] <= study["diff_ci95"][1]
    cards = list((tmp_path / "cache" / "dense-teachers").glob("*.card.json"))
    assert len(cards) == 1 and json.loads(cards[0].read_text())["fit"]["steps_run"] == 40
    report = (tmp_path / "run" / "report.md").read_text()
    assert "mean IoU" in report and "fcn-2" in report
