"""Reports in the run's own metric: a cosine run (sentence embeddings) reads as plain numbers, its budget in
cosine units, its study as KD vs the twin trained without the teacher's hidden states."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from workbench.report import apply_budget, load_results, render_html, render_markdown
from workbench.report.analysis import analyse
from workbench.report.budget import parse_budget

FIXTURE = Path(__file__).parent / "data" / "results_fixture.json"
TEACHER_ACC = 0.9944


def _cos(acc: float) -> float:
    """The fixture's accuracy mapped to a cosine to the teacher (teacher = 1.0; 2x the accuracy gap)."""
    return round(min(1.0, 1.0 - 2 * (TEACHER_ACC - acc)), 4)


def cosine_results(budget: dict | None = None) -> dict:
    """The accuracy fixture turned into a sentence-embedding run: task.metric and every quality in cosine."""
    doc = copy.deepcopy(load_results(FIXTURE).to_json())
    doc["run"]["task"]["metric"] = "cosine"
    if budget is not None:
        doc["run"]["recipe"] = {**doc["run"].get("recipe", {}), "budget": budget}
    for r in doc["results"]:
        q = r.get("quality")
        if q:
            q.update(metric="cosine", value=_cos(q["value"]), ci95=[_cos(c) for c in q["ci95"]],
                     vs_reference=round(_cos(q["value"]) - 1.0, 4))
    for s in doc["studies"]["distillation"]:
        for key in ("labels_acc", "kd_acc"):
            s[key] = [_cos(v) for v in s[key]]
        s["labels_mean"], s["kd_mean"] = _cos(s["labels_mean"]), _cos(s["kd_mean"])
        s["diff_mean"] = round(2 * s["diff_mean"], 4)
        s["diff_ci95"] = [round(2 * c, 4) for c in s["diff_ci95"]]
    return doc


@pytest.fixture(scope="module")
def cos_md() -> str:
    return render_markdown(cosine_results())


def test_cosine_run_recommends_within_the_default_cosine_budget():
    rep = analyse(cosine_results())
    assert rep.metric.name == "cosine" and rep.max_drop_points == 0.05
    assert "whose cosine is within 0.05 (cosine) of the fp32 teacher's" in rep.rule and "default budget" in rep.rule
    rec = rep.recommended
    assert rec is not None and not rec.is_reference  # not "keep the teacher": a student 0.03-0.04 below qualifies
    assert rec.vs_ref >= -0.05 and rec.accuracy >= 0.95
    # every faster row outside the budget really is more than 0.05 below the teacher
    assert all(r.vs_ref < -0.05 for r in rep.beyond_budget)
    assert rep.answer.startswith(f"Recommended: {rec.variant} on ort, 1 thread")
    assert f"cosine {rec.accuracy:.4f} [" in rep.answer and f"({rec.vs_ref:+.4f} vs the teacher's 1.0000)" in rep.answer
    assert "%" not in rep.answer and "pts" not in rep.answer and "accuracy" not in rep.answer


def test_cosine_markdown_speaks_cosine(cos_md):
    head = cos_md[: cos_md.index("## All measurements")]
    assert "accuracy" not in head.lower().replace("most accurate", "")
    assert "| cosine [95% CI] | Δ cosine vs teacher |" in head
    assert "## Cosine vs latency" in head and "(1.0000)" not in head  # the teacher's value with 4 decimals
    assert "teacher.fp32@ort (" in head and ", 1.0000)" in head
    # the table: cosine as numbers with their CIs, never percentages
    table = cos_md[cos_md.index("## All measurements"):cos_md.index("## Stability warnings")]
    assert "| cosine [95% CI] |" in table and "| 1.0000 [0.9712, 1.0000] |" in table
    assert "%" not in table.split("★ =")[0].replace("95%", "")


def test_cosine_study_compares_kd_with_the_no_hidden_states_twin(cos_md):
    sec = cos_md[cos_md.index("## What distillation bought"):cos_md.index("## Students vs the quantized teacher")]
    assert "| no hidden states mean | KD mean | KD − no hidden states cosine [95% CI] |" in sec
    assert "train samples" in sec and "labels-only" not in sec
    assert "+0.0056 [-0.0222, +0.0334]" in sec  # cnn-s: 2 x (+0.28 pts [-1.11, +1.67])
    assert "cosine vs the twin trained without the teacher's hidden states, 3 seeds" in sec


def test_cosine_html_axes_and_headers():
    text = render_html(cosine_results())
    assert "cosine [95% CI]" in text and "Cosine vs median latency" in text
    assert "accuracy (%)" not in text and "no hidden states cosine (95% CI)" in text


def test_cosine_budget_from_the_recipe_and_the_command_line():
    tight = analyse(cosine_results({"max_drop": 0.01}))
    assert "within 0.01 (cosine)" in tight.rule and "budget from the recipe" in tight.rule
    assert tight.recommended is not None and tight.recommended.vs_ref >= -0.01
    none = analyse(cosine_results({"min_metric": 0.999}))
    assert "cosine >= 0.999" in none.rule
    assert none.recommended is not None and none.recommended.accuracy >= 0.999
    loose = analyse(apply_budget(cosine_results(), parse_budget("max_drop=0.2")))
    assert "within 0.2 (cosine)" in loose.rule and "budget given to workbench report" in loose.rule
    assert loose.recommended.median <= analyse(cosine_results()).recommended.median


def test_accuracy_run_keeps_points_and_percentages():
    rep = analyse(load_results(FIXTURE))
    assert rep.metric.name == "accuracy" and rep.max_drop_points == 0.5
    assert "within 0.5 points" in rep.rule and "%" in rep.answer and "pts" in rep.answer
    # the recipe's [budget] min_metric for accuracy is a fraction (or a percentage)
    doc = load_results(FIXTURE).to_json()
    doc["run"]["recipe"] = {**doc["run"].get("recipe", {}), "budget": {"min_metric": 99}}
    assert "accuracy >= 99%" in analyse(doc).rule


def test_recipe_budget_section(tmp_path):
    from workbench.errors import RecipeError
    from workbench.recipe import load_recipe, recipe_from_dict

    r = load_recipe(Path(__file__).parent.parent / "workbench" / "recipes" / "minilm.toml")
    assert r.budget.max_drop == 0.05 and r.to_dict()["budget"]["max_drop"] == 0.05
    base = load_recipe().to_dict()
    with pytest.raises(RecipeError, match=r"unknown key 'max_accuracy' in \[budget\]"):
        recipe_from_dict({**base, "budget": {"max_accuracy": 1}})
    with pytest.raises(RecipeError, match=r"\[budget\] max_drop must be a number >= 0"):
        recipe_from_dict({**base, "budget": {"max_drop": -1}})
