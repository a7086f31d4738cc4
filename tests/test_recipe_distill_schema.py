"""One [distill] schema for recipes and `workbench distill --config` (issue 14): the same keys mean the
same thing, one function checks both, and a loaded task's type picks the distill runner by lookup."""
from __future__ import annotations

from dataclasses import fields

import pytest

from workbench.distill.run import RUNNERS, SUMMARIES, DistillJob, load_job
from workbench.errors import RecipeError, TaskError
from workbench.recipe import DistillSection, load_recipe, recipe_from_dict
from workbench.recipe.distill_keys import BY_NAME, COMMAND, RECIPE, check_distill, default, keys_for
from workbench.tasks import TASK_TYPES, load_task, task_type

STUDENTS = [{"name": "s", "arch": "cnn", "width": 4, "depth": 1}]
JOB = {"teacher": "zoo:digits-resnet", "student": "zoo:cnn?width=8", "task": "digits"}


def _recipe(distill: dict):
    return recipe_from_dict({"students": STUDENTS, "distill": distill})


def _config(tmp_path, body: str, **overrides):
    p = tmp_path / "job.toml"
    p.write_text("[distill]\n" + body)
    return load_job(str(p), overrides)


def test_both_config_types_are_the_schema_with_its_defaults():
    section = [f.name for f in fields(DistillSection)]
    job = [f.name for f in fields(DistillJob) if f.name != "base_dir"]
    assert sorted(section) == sorted(keys_for(RECIPE)) and sorted(job) == sorted(keys_for(COMMAND))
    for f in fields(DistillSection):
        assert f.default == default(f.name, RECIPE), f.name
    for f in fields(DistillJob):
        if f.name not in ("teacher", "student", "task", "base_dir"):
            assert f.default == default(f.name, COMMAND), f.name
    shared = set(keys_for(RECIPE)) & set(keys_for(COMMAND))
    assert {"temperature", "alpha", "augment_shift", "steps", "batch_size", "lr", "weight_decay"} <= shared
    # a shared key has one default, except the budget: a job without one trains the engine's 20 epochs
    assert [k for k in shared if default(k, RECIPE) != default(k, COMMAND)] == ["steps"]


@pytest.mark.parametrize("key, value, message", [
    ("lr", -0.1, "lr = -0.1 is not allowed; use a number > 0"),
    ("alpha", 1.5, "alpha = 1.5 is not allowed; use a number in [0, 1]"),
    ("temperature", 0, "temperature = 0.0 is not allowed; use a number > 0"),
    ("augment_shift", 7, "augment_shift = 7 is not allowed; use an integer in [0, 4]"),
    ("batch_size", 0, "batch_size = 0 is not allowed; use an integer >= 1"),
    ("steps", "many", "steps must be an integer, got 'many'"),
    ("weight_decay", True, "weight_decay must be a number, got True"),
])
def test_a_shared_key_is_refused_the_same_way_by_both_paths(tmp_path, key, value, message):
    with pytest.raises(RecipeError) as from_recipe:
        _recipe({key: value})
    toml_value = {True: "true"}.get(value, repr(value) if isinstance(value, str) else value)
    with pytest.raises(RecipeError) as from_config:
        _config(tmp_path, f"{key} = {toml_value}\n", **JOB)
    assert str(from_recipe.value) == str(from_config.value)
    assert str(from_recipe.value).startswith(f"[distill] {message}")


def test_a_key_of_the_other_path_says_what_to_use_instead(tmp_path):
    with pytest.raises(RecipeError, match=r"^\[distill\] epochs applies to workbench distill only; a recipe's "
                                          r"budget is in optimiser steps: steps, few_steps$"):
        _recipe({"epochs": 3})
    with pytest.raises(RecipeError, match=r"\[distill\] seed applies to workbench distill only; a recipe lists "
                                          r"its seeds: seeds = \[0, 1, 2\]"):
        _recipe({"seed": 3})
    with pytest.raises(RecipeError, match=r"\[distill\] seeds applies to a recipe only; workbench distill trains "
                                          r"one student: seed = N"):
        _config(tmp_path, "seeds = [0, 1]\n", **JOB)
    with pytest.raises(RecipeError, match=r"unknown key 'tempreature' in \[distill\]; valid keys: teacher, student"):
        _config(tmp_path, "tempreature = 2\n", **JOB)


def test_recipe_lists_are_checked_by_the_schema():
    for distill, message in (({"seeds": []}, "[distill] seeds must not be empty"),
                             ({"seeds": [-1]}, "[distill] seeds element = -1 is not allowed"),
                             ({"seeds": [True]}, "[distill] seeds must list whole numbers"),
                             ({"regimes": ["few-5"]}, "[distill] regimes must include \"full\""),
                             ({"regimes": ["full", "few-0"]}, "regime 'few-0' is not valid")):
        with pytest.raises(RecipeError) as e:
            _recipe(distill)
        assert message in str(e.value) and "\n" not in str(e.value)
    r = _recipe({"seeds": [3], "regimes": ["full", "few-2"], "lr": 1, "augment_shift": 0})
    assert r.distill.seeds == (3,) and r.distill.regimes == ("full", "few-2") and r.distill.lr == 1.0


def test_old_name_shift_is_accepted_with_a_note(tmp_path, capsys):
    job = _config(tmp_path, "shift = 2\n", **JOB)
    assert job.augment_shift == 2
    assert "[distill] shift is deprecated; call it augment_shift" in capsys.readouterr().err
    assert _recipe({"shift": 0}).distill.augment_shift == 0
    assert "[distill] shift is deprecated" in capsys.readouterr().err
    with pytest.raises(RecipeError, match="shift and .*augment_shift are the same key"):
        _recipe({"shift": 0, "augment_shift": 1})
    # the command's --shift option is the same key, without a note
    assert load_job(None, {**JOB, "shift": 3}).augment_shift == 3 and capsys.readouterr().err == ""


def test_budget_in_steps_or_epochs_and_the_command_line_replaces_the_files(tmp_path):
    assert load_job(None, JOB).fit_config().epochs == 20  # neither: the engine's default
    job = _config(tmp_path, "steps = 40\nlr = 0.01\n", **JOB)
    cfg = job.fit_config()
    assert (cfg.steps, cfg.epochs, cfg.lr) == (40, None, 0.01)
    job = _config(tmp_path, "steps = 40\n", **JOB, epochs=2)  # the CLI's budget replaces the file's
    assert (job.epochs, job.steps) == (2, None)
    with pytest.raises(RecipeError, match="epochs or as steps, not both"):
        _config(tmp_path, "steps = 40\nepochs = 2\n", **JOB)


def test_layer_pairs_are_normalised_in_every_spelling(tmp_path):
    want = (("features.2", "layer1"), ("fc", "fc"))
    assert load_job(None, {**JOB, "hint_layers": "features.2:layer1, fc:fc"}).hint_layers == want
    assert _config(tmp_path, 'hint_layers = ["features.2:layer1", "fc:fc"]\n', **JOB).hint_layers == want
    assert _config(tmp_path, 'hint_layers = [["features.2", "layer1"], ["fc", "fc"]]\n', **JOB).hint_layers == want
    with pytest.raises(RecipeError, match=r"^--attention-layers: 'fc' is not STUDENT_LAYER:TEACHER_LAYER$"):
        load_job(None, {**JOB, "attention_layers": "fc"})


def test_every_key_of_the_committed_recipes_goes_through_the_schema():
    r = load_recipe()
    values, notes = check_distill({k: getattr(r.distill, k) for k in keys_for(RECIPE)}, RECIPE)
    assert notes == () and DistillSection(**values) == r.distill
    assert all(k in BY_NAME for k in keys_for(COMMAND))


# ------------------------------------------------------------------ task types: one lookup, no class names
def test_task_type_is_a_registry_lookup(tmp_path):
    digits = load_task("digits")
    assert task_type(digits).name == "image-classification"
    csv = tmp_path / "t.csv"
    csv.write_text("text,label\n" + "".join(f"sentence number {i} here,{i % 2}\n" for i in range(20)))
    assert task_type(load_task(f"text:{csv}")).name == "text-classification"
    txt = tmp_path / "c.txt"
    txt.write_text("\n\n".join(f"This is document {i} with a few words in it for the corpus." for i in range(30)))
    assert task_type(load_task(f"corpus:{txt}")).name == "sentence-embedding"
    with pytest.raises(TaskError, match="str is not a registered task type"):
        task_type("digits")


def test_distill_has_a_runner_for_every_task_type_and_a_summary_for_every_card():
    assert set(TASK_TYPES) <= set(RUNNERS)
    assert {"workbench distill card", "workbench qat card", "classifier-distillation",
            "embedding-distillation"} <= set(SUMMARIES)


def test_qat_refuses_a_text_task_before_reading_it(capsys):
    from workbench.cli import main

    rc = main(["distill", "--qat", "static", "--alpha", "0", "--student", "drop:2", "--task", "corpus:nowhere.txt"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "workbench distill --qat needs a task with array inputs" in err


@pytest.mark.slow
def test_distill_dispatches_a_corpus_to_the_embedding_runner(tmp_path, capsys):
    """corpus: -> the sentence-embedding runner (by task type) -> its card's summary (by card kind)."""
    pytest.importorskip("transformers")
    import json

    import numpy as np
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from workbench.cli import main

    words = ("the a of to in is are was by for with on as at from that this it which or and not can function "
             "value object class method module name list string number error type call return").split()
    d = tmp_path / "bert"
    d.mkdir()
    (d / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(words)),
                                            *"abcdefghijklmnopqrstuvwxyz."]) + "\n")
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len((d / "vocab.txt").read_text().split()), hidden_size=16, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=32)
    BertModel(cfg).eval().save_pretrained(str(d))
    BertTokenizerFast(vocab_file=str(d / "vocab.txt"), do_lower_case=True).save_pretrained(str(d))
    rng = np.random.default_rng(0)
    docs = [" ".join(" ".join(rng.choice(words, size=8)).capitalize() + "." for _ in range(4)) for _ in range(20)]
    (tmp_path / "c.txt").write_text("\n\n".join(docs))
    out = tmp_path / "out"
    rc = main(["distill", "--teacher", f"hf:{d}", "--student", "drop:1", "--task", f"corpus:{tmp_path / 'c.txt'}",
               "--epochs", "1", "--max-len", "16", "--cache", str(tmp_path / "cache"), "--out", str(out), "--quiet"])
    stdout, err = capsys.readouterr()
    assert rc == 0, err
    card = json.loads((out / "card.json").read_text())
    assert card["kind"] == "embedding-distillation" and card["keep"] == [1]
    assert "mean cosine" in stdout and f"written: {out}/" in stdout
