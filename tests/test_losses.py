"""Distillation losses (golden values + independent NumPy formulas + special cases) and FeatureTap.

Regenerate the golden file after an intended change to a loss definition:
    .venv/bin/python tests/golden/make_losses_golden.py
"""
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from workbench.distill.features import FeatureTap, feature_shapes, list_layers
from workbench.distill.losses import (attention_map_loss, attention_transfer_loss, cosine_loss, hidden_mse_loss,
                                      hint_loss, hinton_kd_loss, kd_soft_loss, make_adapter, mean_pool)
from workbench.errors import RecipeError
from workbench.zoo.models import ResNet, SmallCNN

GOLDEN = Path(__file__).parent / "golden" / "losses.npz"
CASES = ["kd_soft", "hinton", "hint_down", "hint_up", "hint_seq", "at_same", "at_down", "at_up", "attn_same",
         "attn_heads", "attn_nomask", "hidden", "hidden_adapt", "cos_emb", "cos_tok", "mean_pool"]


@pytest.fixture(scope="module")
def golden():
    assert GOLDEN.exists(), "no golden file; run tests/golden/make_losses_golden.py"
    with np.load(GOLDEN) as z:
        return {k: z[k] for k in z.files}


# ---------------------------------------------------------------- torch side (the code under test)
def _conv(w):
    m = nn.Conv2d(w.shape[1], w.shape[0], 1, bias=False)
    m.weight.data = torch.from_numpy(w)
    return m


def _linear(w):
    m = nn.Linear(w.shape[1], w.shape[0], bias=False)
    m.weight.data = torch.from_numpy(w)
    return m


def _torch_case(case, d):
    def t(k):
        return torch.from_numpy(d[f"{case}.{k}"])

    def f(k):
        return float(d[f"{case}.{k}"])

    if case == "kd_soft":
        return kd_soft_loss(torch.from_numpy(d["kd.student"]), torch.from_numpy(d["kd.teacher"]), float(d["kd.temperature"]))
    if case == "hinton":
        return hinton_kd_loss(*(torch.from_numpy(d[f"kd.{k}"]) for k in ("student", "teacher", "labels")),
                              float(d["kd.temperature"]), float(d["kd.alpha"]))
    if case in ("hint_down", "hint_up"):
        return hint_loss(t("student"), t("teacher"), _conv(d[f"{case}.weight"]))
    if case == "hint_seq":
        return hint_loss(t("student"), t("teacher"), _linear(d[f"{case}.weight"]))
    if case.startswith("at_"):
        return attention_transfer_loss(t("student"), t("teacher"), p=f("p"))
    if case == "attn_nomask":
        return attention_map_loss(t("student"), t("teacher"))
    if case.startswith("attn_"):
        return attention_map_loss(t("student"), t("teacher"), t("mask"))
    if case == "hidden":
        return hidden_mse_loss(t("student"), t("teacher"), t("mask"))
    if case == "hidden_adapt":
        return hidden_mse_loss(t("student"), t("teacher"), t("mask"), adapter=_linear(d[f"{case}.weight"]))
    if case == "cos_emb":
        return cosine_loss(t("student"), t("teacher"))
    if case == "cos_tok":
        return cosine_loss(t("student"), t("teacher"), t("mask"))
    if case == "mean_pool":
        return mean_pool(t("hidden"), t("mask"))
    raise KeyError(case)


# ---------------------------------------------------------------- NumPy references (float64, written from the papers)
def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _np_kd_soft(s, t, T):
    lp_s, lp_t = _log_softmax(s / T), _log_softmax(t / T)
    return T * T * (np.exp(lp_t) * (lp_t - lp_s)).sum(1).mean()


def _np_ce(s, y):
    return -_log_softmax(s)[np.arange(len(y)), y].mean()


def _np_adaptive_avg_pool(x, h, w):
    H, W = x.shape[-2:]
    out = np.zeros(x.shape[:-2] + (h, w))
    for i in range(h):
        i0, i1 = (i * H) // h, -((-(i + 1) * H) // h)
        for j in range(w):
            j0, j1 = (j * W) // w, -((-(j + 1) * W) // w)
            out[..., i, j] = x[..., i0:i1, j0:j1].mean(axis=(-2, -1))
    return out


def _np_bilinear_axis(x, n, axis):
    """Half-pixel (align_corners=False) linear resampling along one axis."""
    m = x.shape[axis]
    src = np.maximum((np.arange(n) + 0.5) * m / n - 0.5, 0.0)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, m - 1)
    lam = (src - i0).reshape([-1 if a == axis % x.ndim else 1 for a in range(x.ndim)])
    return np.take(x, i0, axis) * (1 - lam) + np.take(x, i1, axis) * lam


def _np_resize(x, h, w):
    H, W = x.shape[-2:]
    if (H, W) == (h, w):
        return x
    if H >= h and W >= w:
        return _np_adaptive_avg_pool(x, h, w)
    return _np_bilinear_axis(_np_bilinear_axis(x, h, -2), w, -1)


def _np_hint(s, t, w):
    if s.ndim == 4:
        a = np.einsum("oc,bchw->bohw", w[:, :, 0, 0], s)
        a = _np_resize(a, *t.shape[-2:])
    else:
        a = s @ w.T
    return ((a - t) ** 2).mean()


def _np_at_map(x, p, size=None):
    a = (np.abs(x) ** p).mean(1)
    if size is not None:
        a = _np_resize(a, *size)
    a = a.reshape(len(a), -1)
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def _np_at(s, t, p):
    return ((_np_at_map(s, p, t.shape[-2:]) - _np_at_map(t, p)) ** 2).mean()


def _np_masked_mean(v, mask):
    """v: (B, L, ...) per-token values; mean over real tokens and the trailing dims."""
    if mask is None:
        return v.mean()
    m = mask.astype(np.float64).reshape(mask.shape + (1,) * (v.ndim - 2))
    return (v * m).sum() / (m.sum() * (v[0, 0].size if v.ndim > 2 else 1))


def _np_attn(s, t, mask=None):
    if s.shape[1] != t.shape[1]:
        s, t = s.mean(1, keepdims=True), t.mean(1, keepdims=True)
    kl = np.where(t > 0, t * (np.log(np.where(t > 0, t, 1.0)) - np.log(np.maximum(s, 1e-12))), 0.0).sum(-1)  # B,H,L
    return _np_masked_mean(kl.transpose(0, 2, 1), mask)


def _np_cos(s, t, mask=None):
    c = (s * t).sum(-1) / (np.linalg.norm(s, axis=-1) * np.linalg.norm(t, axis=-1))
    return _np_masked_mean(1 - c, mask)


def _np_case(case, d):
    g = {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in d.items()}

    def a(k):
        return g[f"{case}.{k}"]

    if case == "kd_soft":
        return _np_kd_soft(g["kd.student"], g["kd.teacher"], float(g["kd.temperature"]))
    if case == "hinton":
        al = float(g["kd.alpha"])
        return al * _np_kd_soft(g["kd.student"], g["kd.teacher"], float(g["kd.temperature"])) + \
            (1 - al) * _np_ce(g["kd.student"], g["kd.labels"])
    if case.startswith("hint_"):
        return _np_hint(a("student"), a("teacher"), a("weight"))
    if case.startswith("at_"):
        return _np_at(a("student"), a("teacher"), float(a("p")))
    if case == "attn_nomask":
        return _np_attn(a("student"), a("teacher"))
    if case.startswith("attn_"):
        return _np_attn(a("student"), a("teacher"), a("mask"))
    if case == "hidden":
        return _np_masked_mean((a("student") - a("teacher")) ** 2, a("mask"))
    if case == "hidden_adapt":
        return _np_masked_mean((a("student") @ a("weight").T - a("teacher")) ** 2, a("mask"))
    if case == "cos_emb":
        return _np_cos(a("student"), a("teacher"))
    if case == "cos_tok":
        return _np_cos(a("student"), a("teacher"), a("mask"))
    if case == "mean_pool":
        m = a("mask")[..., None].astype(np.float64)
        return (a("hidden") * m).sum(1) / m.sum(1)
    raise KeyError(case)


# ---------------------------------------------------------------- golden values
def test_golden_file_covers_every_case(golden):
    assert sorted(k[4:] for k in golden if k.startswith("out.")) == sorted(CASES)


@pytest.mark.parametrize("case", CASES)
def test_loss_matches_golden_value(golden, case):
    got = _torch_case(case, golden).detach().numpy()
    np.testing.assert_allclose(got, golden[f"out.{case}"], rtol=1e-5, atol=1e-8, err_msg=case)


@pytest.mark.parametrize("case", CASES)
def test_golden_value_matches_numpy_formula(golden, case):
    np.testing.assert_allclose(golden[f"out.{case}"], _np_case(case, golden), rtol=1e-5, atol=1e-7, err_msg=case)


# ---------------------------------------------------------------- special cases
def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def test_identical_inputs_give_zero_loss():
    g = _g()
    logits, fmap, hid = torch.randn(4, 10, generator=g), torch.randn(2, 4, 6, 6, generator=g), torch.randn(2, 5, 8, generator=g)
    attn = torch.softmax(torch.randn(2, 3, 5, 5, generator=g), -1)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    assert float(kd_soft_loss(logits, logits, 3.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(hint_loss(fmap, fmap, make_adapter((4, 6, 6), (4, 6, 6)))) == 0.0
    assert float(attention_transfer_loss(fmap, fmap)) == pytest.approx(0.0, abs=1e-9)
    assert float(attention_map_loss(attn, attn, mask)) == pytest.approx(0.0, abs=1e-6)
    assert float(hidden_mse_loss(hid, hid, mask)) == 0.0
    assert float(cosine_loss(hid, hid, mask)) == pytest.approx(0.0, abs=1e-6)
    assert float(cosine_loss(hid[:, 0], hid[:, 0])) == pytest.approx(0.0, abs=1e-6)


def test_hinton_is_alpha_mix_of_soft_loss_and_cross_entropy():
    g = _g(1)
    s, t, y = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g) * 2, torch.tensor([0, 6, 2, 2, 3])
    ce = F.cross_entropy(s, y)
    assert float(hinton_kd_loss(s, t, y, 4.0, 0.0)) == pytest.approx(float(ce), rel=1e-6)
    assert float(hinton_kd_loss(s, t, y, 4.0, 1.0)) == pytest.approx(float(kd_soft_loss(s, t, 4.0)), rel=1e-6)
    mix = 0.3 * kd_soft_loss(s, t, 2.0) + 0.7 * ce
    assert float(hinton_kd_loss(s, t, y, 2.0, 0.3)) == pytest.approx(float(mix), rel=1e-6)


@pytest.mark.parametrize("ts", [(2, 6, 8, 8), (2, 3, 4, 4), (2, 3, 11, 11)])
def test_attention_transfer_is_invariant_to_positive_scaling(ts):
    g = _g(2)
    s, t = torch.randn(2, 4, 8, 8, generator=g), torch.randn(*ts, generator=g)
    base = float(attention_transfer_loss(s, t))
    assert base > 0
    assert float(attention_transfer_loss(3.0 * s, t)) == pytest.approx(base, rel=1e-5)
    assert float(attention_transfer_loss(s, 0.25 * t)) == pytest.approx(base, rel=1e-5)
    assert float(attention_transfer_loss(-s, t)) == pytest.approx(base, rel=1e-5)  # |a|^p


def test_cosine_loss_of_orthogonal_and_opposite_vectors():
    e = torch.eye(4)
    assert float(cosine_loss(e[:2], e[2:])) == pytest.approx(1.0, abs=1e-7)
    assert float(cosine_loss(e, -3 * e)) == pytest.approx(2.0, abs=1e-7)
    assert float(cosine_loss(e, 5 * e)) == pytest.approx(0.0, abs=1e-7)


def test_masked_rows_do_not_change_the_loss():
    g = _g(3)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    pad = (mask == 0)
    hs, ht = torch.randn(2, 6, 8, generator=g), torch.randn(2, 6, 8, generator=g)
    a_s, a_t = (torch.softmax(torch.randn(2, 3, 6, 6, generator=g), -1) for _ in range(2))
    junk_h = torch.where(pad[..., None], torch.randn(2, 6, 8, generator=g) * 100, hs)
    junk_ht = torch.where(pad[..., None], torch.zeros(()), ht)
    junk_as = torch.where(pad[:, None, :, None], torch.softmax(torch.randn(2, 3, 6, 6, generator=g) * 9, -1), a_s)
    assert float(hidden_mse_loss(junk_h, junk_ht, mask)) == pytest.approx(float(hidden_mse_loss(hs, ht, mask)), rel=1e-6)
    assert float(cosine_loss(junk_h, ht, mask)) == pytest.approx(float(cosine_loss(hs, ht, mask)), rel=1e-6)
    assert float(attention_map_loss(junk_as, a_t, mask)) == pytest.approx(float(attention_map_loss(a_s, a_t, mask)),
                                                                          rel=1e-6)
    assert torch.allclose(mean_pool(junk_h, mask), mean_pool(hs, mask))
    # the masked loss of a padded example is the loss of the unpadded example
    one = mask[1:]
    assert float(hidden_mse_loss(hs[1:], ht[1:], one)) == pytest.approx(float(hidden_mse_loss(hs[1:, :4], ht[1:, :4])),
                                                                        rel=1e-6)
    assert float(cosine_loss(hs[1:], ht[1:], one)) == pytest.approx(float(cosine_loss(hs[1:, :4], ht[1:, :4])), rel=1e-6)
    assert torch.allclose(mean_pool(hs[1:], one), hs[1:, :4].mean(1))
    # without a mask every row counts
    assert float(hidden_mse_loss(junk_h, ht)) != pytest.approx(float(hidden_mse_loss(hs, ht)))


def test_attention_map_loss_averages_heads_when_counts_differ():
    g = _g(4)
    s, t = torch.softmax(torch.randn(2, 2, 5, 5, generator=g), -1), torch.softmax(torch.randn(2, 4, 5, 5, generator=g), -1)
    expect = attention_map_loss(s.mean(1, keepdim=True), t.mean(1, keepdim=True))
    assert float(attention_map_loss(s, t)) == pytest.approx(float(expect), rel=1e-6)
    # a zero student probability where the teacher has mass stays finite (clamped log)
    z = torch.zeros(1, 1, 2, 2)
    z[..., 0] = 1.0
    assert torch.isfinite(attention_map_loss(z, torch.full((1, 1, 2, 2), 0.5)))


# ---------------------------------------------------------------- adapters and shape errors
def test_make_adapter_kinds():
    conv = make_adapter((4, 8, 8), (6, 4, 4))
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.bias is None
    assert tuple(conv.weight.shape) == (6, 4, 1, 1)
    lin = make_adapter((8,), (12,))
    assert isinstance(lin, nn.Linear) and lin.bias is None and tuple(lin.weight.shape) == (12, 8)
    assert isinstance(make_adapter((5, 8), (5, 12)), nn.Linear)
    assert isinstance(make_adapter((4, 8, 8), (4, 2, 2)), nn.Identity)
    assert isinstance(make_adapter(torch.Size([7]), torch.Size([7])), nn.Identity)


@pytest.mark.parametrize("s,t", [((4, 8, 8), (12,)), ((8,), (5, 8)), ((1, 2, 3, 4), (1, 2, 3, 4)), ((5, 8), (6, 8))])
def test_make_adapter_rejects_unsupported_shapes(s, t):
    with pytest.raises(RecipeError) as e:
        make_adapter(s, t)
    assert str(e.value).count("\n") == 0 and str(t) in str(e.value)


def test_shape_mismatches_raise_recipe_error():
    with pytest.raises(RecipeError, match="make_adapter"):
        hint_loss(torch.randn(2, 4, 8, 8), torch.randn(2, 6, 8, 8))
    with pytest.raises(RecipeError, match="4-D"):
        attention_transfer_loss(torch.randn(2, 8), torch.randn(2, 8))
    with pytest.raises(RecipeError, match="batch size"):
        hidden_mse_loss(torch.randn(2, 5, 8), torch.randn(3, 5, 8))
    with pytest.raises(RecipeError, match="attention_mask"):
        hidden_mse_loss(torch.randn(2, 5, 8), torch.randn(2, 5, 8), torch.ones(2, 4))


# ---------------------------------------------------------------- gradients
def test_hint_loss_trains_the_student_and_the_adapter():
    g = _g(5)
    student = torch.randn(4, 3, 8, 8, generator=g, requires_grad=True)
    # a teacher the student can reach: 5 channels spanned by 3, at half the resolution
    teacher = torch.einsum("oc,bchw->bohw", torch.randn(5, 3, generator=g), torch.randn(4, 3, 4, 4, generator=g))
    torch.manual_seed(0)
    adapter = make_adapter(student.shape[1:], teacher.shape[1:])
    loss = hint_loss(student, teacher, adapter)
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert adapter.weight.grad is not None and adapter.weight.grad.abs().sum() > 0
    # the mean over all elements makes per-element gradients small, hence the large step
    opt = torch.optim.SGD([student, *adapter.parameters()], lr=5.0)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = hint_loss(student, teacher, adapter)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    assert all(b <= a for a, b in zip(losses, losses[1:]))


@pytest.mark.parametrize("name", ["kd_soft", "at", "attn", "hidden", "cos"])
def test_every_loss_has_a_gradient_for_the_student(name):
    g = _g(6)
    if name == "kd_soft":
        s, fn = torch.randn(3, 5, generator=g), lambda s: kd_soft_loss(s, torch.randn(3, 5, generator=g), 2.0)
    elif name == "at":
        s, fn = torch.randn(2, 3, 6, 6, generator=g), lambda s: attention_transfer_loss(s, torch.randn(2, 5, 3, 3, generator=g))
    elif name == "attn":
        s = torch.randn(2, 2, 4, 4, generator=g)
        fn = lambda s: attention_map_loss(torch.softmax(s, -1), torch.softmax(torch.randn(2, 2, 4, 4, generator=g), -1))  # noqa: E731
    elif name == "hidden":
        s, fn = torch.randn(2, 4, 6, generator=g), lambda s: hidden_mse_loss(s, torch.randn(2, 4, 6, generator=g))
    else:
        s, fn = torch.randn(2, 4, 6, generator=g), lambda s: cosine_loss(s, torch.randn(2, 4, 6, generator=g))
    s.requires_grad_(True)
    loss = fn(s)
    assert loss.dim() == 0
    loss.backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


# ---------------------------------------------------------------- FeatureTap
def _no_hooks(model):
    return all(not m._forward_hooks for m in model.modules())


def test_feature_tap_on_small_cnn_captures_named_outputs_in_given_order():
    torch.manual_seed(0)
    m = SmallCNN(width=4, depth=1).eval()
    x = torch.randn(2, 1, 32, 32)
    with FeatureTap(m, ["features.5", "features.1"]) as tap:
        logits = m(x)
        feats = tap.outputs
    assert list(feats) == ["features.5", "features.1"]
    assert logits.shape == (2, 10)
    assert feats["features.1"].shape == (2, 4, 16, 16) and feats["features.5"].shape == (2, 8, 8, 8)
    # a BatchNorm followed by ReLU(inplace=True): the capture is the BatchNorm's output, not the ReLU's
    with torch.no_grad():
        expect = m.features[:2](x)
    assert torch.allclose(feats["features.1"], expect) and (feats["features.1"] < 0).any()
    assert _no_hooks(m)


def test_feature_tap_on_resnet_keeps_the_graph_and_reuses_across_batches():
    torch.manual_seed(0)
    m = ResNet(in_channels=1, num_classes=10, channels=(8, 16, 32, 64)).train()
    tap = FeatureTap(m, ["stem", "features.2"])
    with tap:
        m(torch.randn(2, 1, 16, 16)).sum()
        assert {n: tuple(t.shape) for n, t in tap.outputs.items()} == {"stem": (2, 8, 16, 16), "features.2": (2, 32, 4, 4)}
        tap.outputs["features.2"].pow(2).mean().backward()
        assert m.stem[0].weight.grad is not None and m.fc.weight.grad is None
        tap.clear()
        assert tap.outputs == {}
        m(torch.randn(3, 1, 16, 16))
        assert tap.outputs["stem"].shape[0] == 3
    assert _no_hooks(m)
    with tap:  # re-entering starts empty
        assert tap.outputs == {}
    with FeatureTap(m, ["features.2"], detach=True) as t2:
        m(torch.randn(2, 1, 16, 16))
    assert not t2.outputs["features.2"].requires_grad


def test_feature_tap_removes_hooks_on_exception():
    m = SmallCNN(width=4, depth=1)
    with pytest.raises(ZeroDivisionError):
        with FeatureTap(m, ["features.0", "fc"]):
            assert m.fc._forward_hooks
            1 / 0
    assert _no_hooks(m)


def test_unknown_layer_names_the_bad_layer_and_suggests_valid_ones():
    m = ResNet(in_channels=1, num_classes=10)
    with pytest.raises(RecipeError) as e:
        FeatureTap(m, ["features.0.conv1", "featurs.1"])
    msg = str(e.value)
    assert "\n" not in msg and "'featurs.1'" in msg
    assert "features.1" in msg and "stem" in msg and "fc" in msg  # close match, then top-level children
    assert len(msg.split("e.g. ", 1)[1].split(", ")) <= 12
    assert _no_hooks(m)


def test_feature_shapes_restores_modes_and_builds_adapters():
    torch.manual_seed(0)
    student, teacher = SmallCNN(width=4, depth=1), ResNet(in_channels=1, num_classes=10, channels=(8, 16, 32, 64))
    student.train()
    student.features[1].eval()  # mixed modes must come back exactly
    modes = [mod.training for mod in student.modules()]
    x = torch.randn(2, 1, 32, 32)
    s_shapes = feature_shapes(student, ["features.5"], x)
    assert s_shapes == {"features.5": (8, 8, 8)}
    assert [mod.training for mod in student.modules()] == modes
    teacher.eval()
    t_shapes = feature_shapes(teacher, ["features.1"], (x,))
    assert t_shapes == {"features.1": (16, 16, 16)} and not teacher.training
    assert _no_hooks(student) and _no_hooks(teacher)
    # end to end: adapter from the shapes, hint + AT loss between the two nets, gradients reach the student
    adapter = make_adapter(s_shapes["features.5"], t_shapes["features.1"])
    with FeatureTap(student, ["features.5"]) as ts, FeatureTap(teacher, ["features.1"], detach=True) as tt:
        student(x)
        with torch.no_grad():
            teacher(x)
        s, t = ts.outputs["features.5"], tt.outputs["features.1"]
        loss = hint_loss(s, t, adapter) + attention_transfer_loss(s, t)
    loss.backward()
    assert student.features[4].weight.grad.abs().sum() > 0 and adapter.weight.grad is not None


def test_feature_shapes_reports_layers_not_on_the_forward_path():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(3, 3), nn.Linear(3, 3)

        def forward(self, x):
            return self.used(x)

    with pytest.raises(RecipeError, match="unused"):
        feature_shapes(Branchy(), ["used", "unused"], torch.randn(1, 3))


def test_list_layers():
    m = SmallCNN(width=4, depth=1)
    assert list_layers(m, max_depth=1) == [("features", "Sequential"), ("pool", "AdaptiveAvgPool2d"), ("fc", "Linear")]
    full = list_layers(m)
    assert ("features.1", "BatchNorm2d") in full and len(full) == 3 + len(m.features)
