"""`workbench train`'s job: the architecture spec plus the engine's FitConfig (budget in steps or epochs)."""
import math

import pytest

from workbench.distill.engine import FitConfig
from workbench.errors import RecipeError


def test_a_budget_in_epochs_trains_through_the_engine_and_the_card_says_so(tmp_path):
    from workbench.distill.classifier_train import accuracy
    from workbench.pipeline.train import TrainSpec, prepare, train_reference
    from workbench.zoo import build_arch
    from workbench.zoo.weights import load_weights

    spec = TrainSpec(task="digits?image_size=16", arch="cnn", arch_options=(("depth", 1), ("width", 4)), augment_shift=0,
                     fit=FitConfig(epochs=2, batch_size=256, lr=1e-2))
    out = tmp_path / "m.safetensors"
    seen = []
    card = train_reference(spec, out, on_step=lambda s, loss: seen.append(s))
    n = len(prepare(spec, out).task.y_train)
    steps = 2 * math.ceil(n / 256)
    assert card["recipe"]["train_config"]["epochs"] == 2 and card["recipe"]["train_config"]["steps"] is None
    assert f"--steps {steps} " in card["recipe"]["command"] and seen[-1] == steps
    assert "pass" in card["recipe"]["kept"] and 0 <= card["metrics"]["val_accuracy"] <= 1
    task = prepare(spec, out).task
    m = build_arch("cnn", 1, task.num_classes, depth=1, width=4)
    load_weights(m, out)
    assert accuracy(m, task.x_test, task.y_test) == pytest.approx(card["metrics"]["test_accuracy"])


def test_the_default_budget_is_in_steps_and_both_budgets_are_refused():
    from workbench.pipeline.train import TrainSpec

    assert TrainSpec().fit.steps == 1200 and TrainSpec().fit.epochs is None
    with pytest.raises(RecipeError, match="not both"):
        TrainSpec(fit=FitConfig(epochs=1, steps=5))
