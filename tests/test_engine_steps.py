"""The engine's budget in optimiser steps (`FitConfig(steps=...)`): the schedule follows the step
count, the last pass over the data is partial, resume is exact, and a run without validation keeps
its final weights."""
import math

import pytest
import torch

from workbench.distill.engine import FitConfig, fit, lr_factor
from workbench.errors import RecipeError
from test_engine import _Problem, _equal, _interrupt_at, _weights


def test_a_budget_in_steps_runs_exactly_that_many_steps_with_its_schedule():
    p = _Problem()  # 40 examples, batch 8: 5 steps a pass
    seen = []
    cfg = FitConfig(steps=13, batch_size=8, lr=0.05, warmup_frac=0.2, schedule="linear", seed=1)
    res = fit({"m": p.model()}, p.step, len(p.y), p.evaluate, cfg, on_step=lambda s, loss: seen.append((s, loss)))
    assert len(p.calls) == 13 and [h["steps"] for h in res.history] == [5, 5, 3]
    assert res.epochs_run == 3 and res.steps_run == 13 and [e for e, _ in p.calls].count(2) == 3
    for h, done in zip(res.history, (5, 10, 13)):  # warm-up 3 steps (20% of 13), then linear decay to 0 at step 13
        assert h["lr"] == pytest.approx(0.05 * lr_factor(done, 13, 3, "linear"))
    assert res.history[-1]["lr"] == 0.0
    assert [s for s, _ in seen] == list(range(1, 14)) and all(math.isfinite(v) for _, v in seen)  # 13 // 20 -> every step


def test_the_budget_is_epochs_or_steps_never_both():
    with pytest.raises(RecipeError, match="epochs or as steps, not both"):
        FitConfig(epochs=2, steps=10)
    assert FitConfig().epochs == 20 and FitConfig().steps is None  # neither: 20 epochs
    assert FitConfig(steps=7).epochs is None
    for bad in (0, -3, 2.5):
        with pytest.raises(RecipeError, match="steps and batch_size must be >= 1"):
            FitConfig(steps=bad)
    # the same number of steps given either way trains the same
    a, b = _Problem(), _Problem()
    ma = a.model()  # each model built just before its run: dropout draws from the global RNG
    fit({"m": ma}, a.step, len(a.y), a.evaluate, FitConfig(epochs=2, batch_size=8, seed=4))
    mb = b.model()
    fit({"m": mb}, b.step, len(b.y), b.evaluate, FitConfig(steps=10, batch_size=8, seed=4))
    assert a.calls == b.calls and _equal(_weights(ma), _weights(mb))


def test_resume_with_a_budget_in_steps_is_exact(tmp_path):
    cfg = FitConfig(steps=17, batch_size=8, lr=0.02, seed=3)
    ref = _Problem()
    m_ref = ref.model()
    fit({"m": m_ref}, ref.step, len(ref.y), ref.evaluate, cfg)
    p = _Problem()
    ckpt = tmp_path / "ck.pt"
    with pytest.raises(KeyboardInterrupt):
        fit({"m": p.model()}, _interrupt_at(p, 3), len(p.y), p.evaluate, cfg, checkpoint=ckpt, key="k")
    p.calls.clear()
    m = p.model(seed=9)
    res = fit({"m": m}, p.step, len(p.y), p.evaluate, cfg, checkpoint=ckpt, key="k")
    assert res.resumed_from == 3 and p.calls == [(3, 8), (3, 8)] and res.steps_run == 17
    assert _equal(_weights(m), _weights(m_ref))
    other = FitConfig(steps=18, batch_size=8, lr=0.02, seed=3)  # another budget: the checkpoint is not reused
    assert fit({"m": p.model()}, p.step, len(p.y), p.evaluate, other, checkpoint=ckpt, key="k").resumed_from is None


def test_without_evaluate_the_final_weights_are_kept():
    cfg = FitConfig(steps=12, batch_size=8, lr=0.05, patience=1)
    runs = {}
    for name, evaluate in (("none", None), ("rising", iter([0.1, 0.2, 0.3]).__next__),
                           ("falling", iter([0.9, 0.5, 0.1]).__next__)):
        p = _Problem()
        m = p.model()
        res = fit({"m": m}, p.step, len(p.y), evaluate, FitConfig(steps=12, batch_size=8, lr=0.05))
        runs[name] = (res, _weights(m), m.training)
    res, final, training = runs["none"]
    assert math.isnan(res.best_metric) and res.best_epoch == res.epochs_run == 3 and not res.stopped_early
    assert res.history[-1]["val"] is None and not training
    assert _equal(final, runs["rising"][1])  # the last pass's weights, as when the last pass is the best
    assert not _equal(final, runs["falling"][1]) and runs["falling"][0].best_epoch == 1
    q = _Problem()
    assert fit({"m": q.model()}, q.step, len(q.y), None, cfg).epochs_run == 3  # patience needs a metric


def test_many_short_passes_are_validated_about_twenty_times():
    p = _Problem()  # 5 steps a pass; 225 steps = 45 passes: validated after every 3rd
    calls = []

    def evaluate():
        calls.append(len(p.calls))
        return p.evaluate()

    res = fit({"m": p.model()}, p.step, len(p.y), evaluate, FitConfig(steps=225, batch_size=8, lr=0.05))
    assert calls == list(range(15, 226, 15)) and len(res.history) == 45
    assert [h["epoch"] for h in res.history if h["val"] is not None] == list(range(3, 46, 3))
    assert res.best_epoch % 3 == 0 and res.best_metric == max(h["val"] for h in res.history if h["val"] is not None)
    # a budget in epochs validates after every one, however many
    q = _Problem()
    assert len([h for h in fit({"m": q.model()}, q.step, len(q.y), q.evaluate,
                               FitConfig(epochs=25, batch_size=8)).history if h["val"] is not None]) == 25
