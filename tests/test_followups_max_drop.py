"""[quantize] max_drop is 100 x the allowed drop of the task's metric: accuracy points, or for a cosine metric
max_drop / 100 in cosine. The recipe's messages and auto's words say so per metric (behaviour unchanged)."""
from __future__ import annotations

import pytest

from workbench.errors import RecipeError
from workbench.quantize.choice import AutoResult, CandidateResult, choose, drop_words
from workbench.recipe import recipe_from_dict


def _row(spec, ratio, verdict, drop, within):
    return CandidateResult(spec=spec, describe=spec, key=spec, precision="int8", reason="test", metric=0.9 - drop,
                           drop=drop, within_budget=within, ratio=ratio, ci95=(ratio * 0.9, ratio * 1.1),
                           verdict=verdict)


def test_drop_words_per_metric():
    assert drop_words(0.0035) == "0.35 points" and drop_words(0.005, budget=True) == "0.5 points"
    assert drop_words(0.001, sign=True) == "+0.10 points"
    assert drop_words(0.0012, "cosine") == "0.0012 cosine"
    assert drop_words(0.005, "cosine to fp32 outputs", budget=True) == "0.005 cosine to fp32 outputs"


def test_auto_messages_speak_the_metric():
    rows = [_row("static", 0.5, "faster", 0.002, True)]
    _, msg, _ = choose(rows, 0.005)
    assert "metric drop +0.20 points within the 0.5 points budget" in msg
    _, msg, _ = choose(rows, 0.005, metric="cosine")
    assert "metric drop +0.002 cosine within the 0.005 cosine budget" in msg and "points" not in msg
    none, msg, loud = choose([_row("static", 0.5, "faster", 0.03, False)], 0.005, metric="cosine")
    assert none is None and loud and "loses 0.03 cosine (budget 0.005 cosine)" in msg
    res = AutoResult(chosen=_row("static", 0.5, "faster", 0.002, True), message=msg, loud=False, candidates=(),
                     skipped=(), metric="cosine", reference_metric=0.99, max_drop=0.005, threads=1, rounds=1,
                     out_path="x", elapsed_s=0.0)
    doc = res.to_json()
    assert doc["budget"] == "metric drop <= 0.005 cosine (point estimate)" and doc["max_drop_points"] == 0.5


def test_recipe_says_what_max_drop_means():
    with pytest.raises(RecipeError) as e:
        recipe_from_dict({"students": [{"name": "a", "arch": "cnn", "width": 4, "depth": 1}],
                          "quantize": {"max_drop": 150}})
    assert "accuracy points" in str(e.value) and "cosine" in str(e.value) and "0.005" in str(e.value)
