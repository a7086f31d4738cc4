"""The training engine (schedule, early stopping, best weights, checkpoints and resume) and the
on-disk teacher-output cache."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from workbench.distill.cache import OutputCache
from workbench.distill.engine import FitConfig, fit, lr_factor
from workbench.errors import RecipeError
from conftest import RecordingProgress as _Progress


# ---------------------------------------------------------------- a tiny real problem
class _Problem:
    """Three Gaussian blobs in 8-D; a two-layer MLP with dropout (so resume must restore the RNG)."""

    def __init__(self, n=40, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.arange(n) % 3
        centres = torch.randn(3, 8, generator=g) * 2
        self.x = centres[self.y] + torch.randn(n, 8, generator=g)
        self.xv = centres[torch.arange(12) % 3] + torch.randn(12, 8, generator=g)
        self.yv = torch.arange(12) % 3
        self.calls = []

    def model(self, seed=0):
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Dropout(0.3),
                                       torch.nn.Linear(16, 3))
        return self.net

    def step(self, idx, epoch):
        self.calls.append((epoch, len(idx)))
        return F.cross_entropy(self.net(self.x[idx]), self.y[idx])

    def evaluate(self):
        return float((self.net(self.xv).argmax(1) == self.yv).float().mean())


def _weights(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- schedule
def test_lr_factor_shapes():
    assert [lr_factor(s, 10, 4, "cosine") for s in range(4)] == [0.25, 0.5, 0.75, 1.0]  # linear warm-up
    assert lr_factor(4, 10, 4, "cosine") == 1.0
    assert lr_factor(7, 10, 4, "cosine") == pytest.approx(0.5)  # half-way through the decay
    assert lr_factor(10, 10, 4, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(7, 10, 4, "linear") == pytest.approx(0.5) and lr_factor(12, 10, 4, "linear") == 0.0
    assert lr_factor(9, 10, 4, "constant") == 1.0
    assert lr_factor(0, 10, 0, "cosine") == 1.0  # no warm-up


def test_fit_follows_the_schedule_and_learns():
    p = _Problem()
    modules = {"m": p.model()}
    cfg = FitConfig(epochs=4, batch_size=10, lr=0.05, warmup_frac=0.25, schedule="linear", seed=1)
    res = fit(modules, p.step, len(p.y), p.evaluate, cfg)
    assert res.epochs_run == 4 and not res.stopped_early and res.resumed_from is None
    assert [h["epoch"] for h in res.history] == [1, 2, 3, 4]
    # lr after each epoch = base * factor(steps done so far): 4 steps per epoch, 16 in all, 4 of warm-up
    for h in res.history:
        assert h["lr"] == pytest.approx(0.05 * lr_factor(4 * h["epoch"], 16, 4, "linear"))
    assert res.history[-1]["loss"] < res.history[0]["loss"] and res.best_metric >= 0.9
    assert p.calls[:4] == [(0, 10)] * 4 and len(p.calls) == 16
    assert not modules["m"].training  # left in eval mode


def test_fit_is_deterministic_and_seeded():
    runs = []
    for seed in (0, 0, 1):
        p = _Problem()
        m = p.model()
        fit({"m": m}, p.step, len(p.y), p.evaluate, FitConfig(epochs=2, batch_size=8, lr=0.01, seed=seed))
        runs.append(_weights(m))
    assert _equal(runs[0], runs[1]) and not _equal(runs[0], runs[2])


def test_a_trailing_batch_of_one_is_skipped():
    # a batch of one example breaks BatchNorm after global pooling in training mode (mobile CNNs)
    p = _Problem(n=21)
    fit({"m": p.model()}, p.step, 21, p.evaluate, FitConfig(epochs=2, batch_size=10))
    assert all(n == 10 for _, n in p.calls) and len(p.calls) == 4


# ---------------------------------------------------------------- early stopping and best weights
def _scripted(p, metrics, snapshots):
    it = iter(metrics)

    def evaluate():
        snapshots.append(_weights(p.net))
        return next(it)
    return evaluate


def test_early_stopping_restores_the_best_epoch():
    p = _Problem()
    m = p.model()
    snaps = []
    prog = _Progress()
    res = fit({"m": m}, p.step, len(p.y), _scripted(p, [0.2, 0.6, 0.5, 0.6, 0.9], snaps),
              FitConfig(epochs=5, batch_size=20, patience=2), progress=prog)
    assert res.stopped_early and res.epochs_run == 4 and res.best_epoch == 2 and res.best_metric == 0.6
    assert [h["val"] for h in res.history] == [0.2, 0.6, 0.5, 0.6]  # equal is not better
    assert _equal(_weights(m), snaps[1]) and not _equal(_weights(m), snaps[3])
    assert any("early stop after epoch 4" in line for line in prog.lines)


def test_best_epoch_restored_without_patience_and_min_delta():
    p = _Problem()
    m = p.model()
    snaps = []
    res = fit({"m": m}, p.step, len(p.y), _scripted(p, [0.5, 0.8, 0.3], snaps), FitConfig(epochs=3, batch_size=20))
    assert res.best_epoch == 2 and not res.stopped_early and _equal(_weights(m), snaps[1])
    p2 = _Problem()
    m2 = p2.model()
    snaps2 = []
    res2 = fit({"m": m2}, p2.step, len(p2.y), _scripted(p2, [0.5, 0.55, 0.52], snaps2),
               FitConfig(epochs=3, batch_size=20, min_delta=0.1))
    assert res2.best_epoch == 1 and _equal(_weights(m2), snaps2[0])


# ---------------------------------------------------------------- checkpoints and resume
CFG = FitConfig(epochs=5, batch_size=8, lr=0.02, warmup_frac=0.1, seed=3)


def _interrupt_at(p, epoch):
    def step(idx, e):
        if e == epoch:
            raise KeyboardInterrupt
        return p.step(idx, e)
    return step


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_checkpoint_each_epoch_and_resume_after_a_kill_is_exact(tmp_path, optimizer):
    cfg = FitConfig(**{**CFG.to_json(), "optimizer": optimizer})
    ref = _Problem()
    m_ref = ref.model()
    res_ref = fit({"m": m_ref}, ref.step, len(ref.y), ref.evaluate, cfg, checkpoint=tmp_path / "ref.pt", key="k")
    ck = torch.load(tmp_path / "ref.pt", weights_only=False)
    assert ck["state"]["epoch"] == 5 and len(ck["state"]["history"]) == 5

    p = _Problem()
    ckpt = tmp_path / "work" / "ck.pt"
    with pytest.raises(KeyboardInterrupt):
        fit({"m": p.model()}, _interrupt_at(p, 2), len(p.y), p.evaluate, cfg, checkpoint=ckpt, key="k")
    assert torch.load(ckpt, weights_only=False)["state"]["epoch"] == 2  # epochs 1 and 2 are kept
    p.calls.clear()
    prog = _Progress()
    m = p.model(seed=99)  # whatever it starts from, the checkpoint's weights win
    res = fit({"m": m}, p.step, len(p.y), p.evaluate, cfg, checkpoint=ckpt, key="k", progress=prog)
    assert res.resumed_from == 2 and res.epochs_run == 5 and {e for e, _ in p.calls} == {2, 3, 4}
    assert any("resuming training after epoch 2/5" in line for line in prog.lines)
    assert _equal(_weights(m), _weights(m_ref))  # bit-identical to the uninterrupted run
    assert [h["loss"] for h in res.history] == [h["loss"] for h in res_ref.history]
    # a finished run called again does no work and restores the same best weights
    p.calls.clear()
    again = fit({"m": p.model(seed=5)}, p.step, len(p.y), p.evaluate, cfg, checkpoint=ckpt, key="k")
    assert not p.calls and again.resumed_from == 5 and _equal(_weights(p.net), _weights(m_ref))


def test_resume_after_early_stop_does_not_train_more(tmp_path):
    p = _Problem()
    cfg = FitConfig(epochs=6, batch_size=20, patience=1)
    first = fit({"m": p.model()}, p.step, len(p.y), _scripted(p, [0.5, 0.4, 0.9, 0.9, 0.9, 0.9], []), cfg,
                checkpoint=tmp_path / "c.pt", key="k")
    assert first.stopped_early and first.epochs_run == 2
    p.calls.clear()
    again = fit({"m": p.model()}, p.step, len(p.y), p.evaluate, cfg, checkpoint=tmp_path / "c.pt", key="k")
    assert not p.calls and again.stopped_early and again.best_epoch == 1


@pytest.mark.parametrize("change", ["key", "config", "n_train"])
def test_checkpoint_of_another_key_or_config_is_ignored(tmp_path, change):
    p = _Problem()
    ckpt = tmp_path / "ck.pt"
    with pytest.raises(KeyboardInterrupt):
        fit({"m": p.model()}, _interrupt_at(p, 2), len(p.y), p.evaluate, CFG, checkpoint=ckpt, key="k")
    key = "other" if change == "key" else "k"
    cfg = FitConfig(**{**CFG.to_json(), "lr": 0.03}) if change == "config" else CFG
    n = len(p.y) - 1 if change == "n_train" else len(p.y)
    prog = _Progress()
    p.calls.clear()
    res = fit({"m": p.model()}, p.step, n, p.evaluate, cfg, checkpoint=ckpt, key=key, progress=prog)
    assert res.resumed_from is None and {e for e, _ in p.calls} == {0, 1, 2, 3, 4}
    assert any("ignoring checkpoint" in line for line in prog.lines)
    assert torch.load(ckpt, weights_only=False)["state"]["epoch"] == 5  # overwritten by the new run


class _Evil:
    ran = []

    def __reduce__(self):
        return (_Evil.ran.append, ("unpickled",))


@pytest.mark.parametrize("content", ["garbage", "foreign", "pickle"])
def test_damaged_or_foreign_checkpoint_starts_over(tmp_path, content):
    ckpt = tmp_path / "ck.pt"
    if content == "garbage":
        ckpt.write_bytes(b"PK\x03\x04 torn")
    elif content == "foreign":
        torch.save([1, 2, 3], ckpt)
    else:  # a checkpoint is read weights-only: a planted pickle is not executed
        torch.save({"fingerprint": "x", "state": _Evil()}, ckpt)
    p = _Problem()
    res = fit({"m": p.model()}, p.step, len(p.y), p.evaluate, FitConfig(epochs=2, batch_size=20),
              checkpoint=ckpt, key="k")
    assert res.resumed_from is None and res.epochs_run == 2 and not _Evil.ran


# ---------------------------------------------------------------- errors
def test_non_finite_loss_is_a_recipe_error():
    p = _Problem()
    p.model()

    def step(idx, epoch):
        loss = p.step(idx, epoch)
        return loss * float("nan") if epoch == 1 else loss

    with pytest.raises(RecipeError, match=r"loss became nan at epoch 2; lower the learning rate"):
        fit({"m": p.net}, step, len(p.y), p.evaluate, FitConfig(epochs=3, batch_size=20))
    with pytest.raises(RecipeError, match="loss became inf"):
        fit({"m": p.net}, lambda i, e: p.step(i, e) + math.inf, len(p.y), p.evaluate, FitConfig(epochs=1))


def test_fit_input_errors():
    p = _Problem()
    with pytest.raises(RecipeError, match="training split is empty"):
        fit({"m": p.model()}, p.step, 0, p.evaluate, FitConfig())
    frozen = p.model().requires_grad_(False)
    with pytest.raises(RecipeError, match="no trainable parameters"):
        fit({"m": frozen}, p.step, 10, p.evaluate, FitConfig())


@pytest.mark.parametrize("kw, message", [
    ({"optimizer": "lamb"}, "unknown optimizer 'lamb'"),
    ({"schedule": "step"}, "unknown schedule 'step'"),
    ({"epochs": 0}, "epochs and batch_size must be >= 1"),
    ({"lr": 0}, "lr must be > 0"),
    ({"warmup_frac": 1.0}, "warmup_frac"),
    ({"patience": -1}, "patience >= 0"),
])
def test_fit_config_validation(kw, message):
    with pytest.raises(RecipeError, match=message):
        FitConfig(**kw)


def test_sgd_optimizer_trains():
    p = _Problem()
    res = fit({"m": p.model()}, p.step, len(p.y), p.evaluate,
              FitConfig(epochs=3, batch_size=10, lr=0.05, optimizer="sgd", max_grad_norm=1.0))
    assert res.history[-1]["loss"] < res.history[0]["loss"]


# ---------------------------------------------------------------- OutputCache
def test_cache_key_changes_with_every_part(tmp_path):
    c = OutputCache(tmp_path)
    base = dict(what="logits", teacher="sha-a", task="fp-1", shift=1, p=None)
    k = c.key(**base)
    assert k == c.key(**dict(reversed(list(base.items()))))  # order of parts does not matter
    keys = {k}
    for part, other in (("what", "at:layer1"), ("teacher", "sha-b"), ("task", "fp-2"), ("shift", 0), ("p", 2.0)):
        keys.add(c.key(**{**base, part: other}))
    keys.add(c.key(**base, extra="x"))
    assert len(keys) == 7


def test_cache_write_and_load(tmp_path):
    c = OutputCache(tmp_path / "cache")
    key = c.key(what="logits")
    assert c.load(key) is None
    with c.writer(key, {"a": ((2, 3), "float32"), "b": ((4,), "float16")}, parts={"what": "logits"}) as out:
        out["a"][:] = np.arange(6).reshape(2, 3)
        out["b"][:] = 0.5
    got = c.load(key)
    assert isinstance(got["a"], np.memmap) and np.array_equal(got["a"], np.arange(6).reshape(2, 3))
    assert got["b"].dtype == np.float16 and np.all(got["b"] == 0.5)
    meta = json.loads((c.path(key) / "meta.json").read_text())
    assert meta == {"arrays": ["a", "b"], "parts": {"what": "logits"}}
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [key]  # no temp folder left


def test_cache_writer_failure_leaves_nothing(tmp_path):
    c = OutputCache(tmp_path)
    key = c.key(what="x")
    with pytest.raises(RuntimeError, match="teacher crashed"):
        with c.writer(key, {"a": ((3,), "float32")}) as out:
            out["a"][:2] = 1
            raise RuntimeError("teacher crashed")
    assert c.load(key) is None and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("damage", ["truncated array", "missing array", "bad meta", "meta without arrays"])
def test_damaged_cache_entry_is_absent_and_rewritten(tmp_path, damage):
    c = OutputCache(tmp_path)
    key = c.key(what="x")
    for fill in (1.0, 2.0):
        if fill == 2.0:
            d = c.path(key)
            if damage == "truncated array":
                data = (d / "a.npy").read_bytes()
                (d / "a.npy").write_bytes(data[: len(data) // 2])
            elif damage == "missing array":
                (d / "a.npy").unlink()
            elif damage == "bad meta":
                (d / "meta.json").write_text('{"arrays": [')
            else:
                (d / "meta.json").write_text("{}")
            assert c.load(key) is None
        with c.writer(key, {"a": ((100,), "float32")}) as out:
            out["a"][:] = fill
        assert np.all(c.load(key)["a"] == fill)
