import numpy as np
import pytest
import torch
import torch.nn.functional as F

from workbench.distill.cache import cache_key, teacher_logits
from workbench.distill.losses import hinton_kd_loss
from workbench.distill.classifier_train import accuracy, train_classifier
from workbench.distill.engine import FitConfig
from workbench.distill.loss_config import LossConfig
from workbench.distill.views import ShiftViews


def _fixed_inputs():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(4, 10, generator=g)
    t = torch.randn(4, 10, generator=g) * 3
    y = torch.tensor([1, 0, 7, 3])
    return s, t, y


def test_kd_loss_golden_values():
    s, t, y = _fixed_inputs()
    # golden numbers (computed once, guard against drift of the loss definition)
    assert float(hinton_kd_loss(s, t, y, temperature=4.0, alpha=0.9)) == pytest.approx(GOLDEN_T4_A09, rel=1e-5)
    assert float(hinton_kd_loss(s, t, y, temperature=1.0, alpha=0.5)) == pytest.approx(GOLDEN_T1_A05, rel=1e-5)


def test_kd_loss_matches_its_definition():
    s, t, y = _fixed_inputs()
    T = 4.0
    p_t = F.softmax(t / T, 1)
    kl = (p_t * (torch.log(p_t) - F.log_softmax(s / T, 1))).sum(1).mean() * T * T
    expect = 0.9 * kl + 0.1 * F.cross_entropy(s, y)
    assert float(hinton_kd_loss(s, t, y, T, 0.9)) == pytest.approx(float(expect), rel=1e-6)
    # alpha = 0 is plain cross-entropy; identical logits give zero soft loss
    assert float(hinton_kd_loss(s, t, y, T, 0.0)) == pytest.approx(float(F.cross_entropy(s, y)), rel=1e-6)
    assert float(hinton_kd_loss(s, s, y, T, 1.0)) == pytest.approx(0.0, abs=1e-6)


GOLDEN_T4_A09 = 3.9781386852264404
GOLDEN_T1_A05 = 2.2242050170898438


def test_shift_views_are_exact_shifts():
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).reshape(2, 1, 5, 5)
    v = ShiftViews(x, 1)
    assert v.n_views == 9
    assert torch.equal(v.all_views(v.identity_view), x)
    up_left = v.get(torch.tensor([1]), torch.tensor([8]))  # offset (2, 2): content moves up-left by 1
    assert torch.equal(up_left[0, 0, :4, :4], x[1, 0, 1:, 1:])
    assert torch.all(up_left[0, 0, 4, :] == x[1].min())  # background fill, not zeros


def test_teacher_cache_is_computed_once_and_keyed(tmp_path, tiny_cnn):
    x = torch.randn(20, 1, 32, 32)
    views = ShiftViews(x, 1)
    calls = []
    key = cache_key("sha-a", "data-1", 1)
    a = teacher_logits(tiny_cnn, views, tmp_path, key, progress=calls.append)
    assert a.shape == (9, 20, 10) and calls and calls[-1] == 1.0
    calls.clear()
    b = teacher_logits(tiny_cnn, views, tmp_path, key, progress=calls.append)
    assert not calls and isinstance(b, np.memmap) and np.array_equal(a, b)
    # exactness: the cached logits equal the teacher on that view
    with torch.inference_mode():
        direct = tiny_cnn(views.all_views(3)).numpy()
    assert np.allclose(b[3], direct, atol=1e-5)
    # every key component changes the key
    assert len({key, cache_key("sha-b", "data-1", 1), cache_key("sha-a", "data-2", 1), cache_key("sha-a", "data-1", 2)}) == 4


def test_trainer_learns_and_is_seeded(digits):
    from workbench.zoo.models import SmallCNN

    views = ShiftViews(torch.from_numpy(digits.x_train), 0)
    accs = []
    for _ in range(2):
        torch.manual_seed(0)
        m = SmallCNN(width=4, depth=1)
        seen = []
        res = train_classifier(m, views, digits.y_train, FitConfig(steps=60, seed=3), on_step=lambda s, l: seen.append(s))
        accs.append(accuracy(m, digits.x_test, digits.y_test))
        assert res.fit.history[-1]["loss"] < res.fit.history[0]["loss"] and res.final_loss == res.fit.history[-1]["loss"]
        assert res.fit.steps_run == 60 and seen[-1] == 60 and res.val_accuracy is None  # no val split: final weights
    assert accs[0] == accs[1] and accs[0] > 0.5


def test_trainer_keeps_the_best_pass_on_val(digits):
    from workbench.zoo.models import SmallCNN

    views = ShiftViews(torch.from_numpy(digits.x_train), 1)
    torch.manual_seed(0)
    m = SmallCNN(width=4, depth=1)
    res = train_classifier(m, views, digits.y_train, FitConfig(steps=40, batch_size=128, seed=0),
                           subset=np.arange(300), val=(digits.x_val, digits.y_val))
    hist = res.fit.history
    assert sum(h["steps"] for h in hist) == 40 and len(hist) == 14  # 300 examples, batch 128: 3 steps a pass
    assert res.val_accuracy == max(h["val_accuracy"] for h in hist) == accuracy(m, digits.x_val, digits.y_val)


def test_kd_needs_teacher_logits_and_no_feature_losses(digits):
    from workbench.errors import RecipeError
    from workbench.zoo.models import SmallCNN

    views = ShiftViews(torch.from_numpy(digits.x_train[:64]), 0)
    with pytest.raises(RecipeError, match="needs the teacher's logits"):
        train_classifier(SmallCNN(width=4, depth=1), views, digits.y_train[:64], FitConfig(steps=2), losses=LossConfig())
    with pytest.raises(RecipeError, match="workbench distill"):
        train_classifier(SmallCNN(width=4, depth=1), views, digits.y_train[:64], FitConfig(steps=2),
                         losses=LossConfig(hint=1.0, hint_layers=(("a", "b"),)))


def test_kd_training_uses_teacher_logits(digits, tiny_cnn):
    from workbench.zoo.models import SmallCNN

    views = ShiftViews(torch.from_numpy(digits.x_train[:64]), 0)
    logits = np.zeros((1, 64, 10), dtype=np.float32)
    logits[0, :, 3] = 20.0  # a teacher that always says "3"
    torch.manual_seed(0)
    m = SmallCNN(width=4, depth=1)
    train_classifier(m, views, digits.y_train[:64], FitConfig(steps=40, seed=0, lr=1e-2), losses=LossConfig(alpha=1.0),
                     teacher_logits=logits)
    with torch.inference_mode():
        pred = m(torch.from_numpy(digits.x_test[:50])).argmax(1)
    assert (pred == 3).float().mean() > 0.9
