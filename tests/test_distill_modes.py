"""[distill] mode = "standard" | "reverse" | "self" (issue 16, item 4): the schema, the plan of born-again
generations, the size checks, the studies and the report; both committed recipes through `workbench run --quick`."""
from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from workbench.errors import RecipeError
from workbench.recipe import BUILTIN_DIR, recipe_from_dict

STUDENT = {"name": "a", "arch": "cnn", "width": 4, "depth": 1}
TINY = {"name": "tiny-modes", "students": [STUDENT],
        "distill": {"seeds": [0, 1], "regimes": ["full", "few-3"], "steps": 4, "few_steps": 3, "augment_shift": 0},
        "quantize": {"teacher": ["static"], "students": ["static"], "calib_samples": 16},
        "measure": {"threads": [1], "runtimes": ["ort"], "rounds": 2}}


def _recipe(**distill):
    return recipe_from_dict({**TINY, "distill": {**TINY["distill"], **distill}})


def _plan(recipe, teacher_sha="a" * 64):
    from workbench.pipeline import families  # noqa: F401  (registers image-classification)
    from workbench.pipeline.plan import plan

    return plan(recipe, ["ort"], teacher_sha=teacher_sha, task_fp="f" * 16, family="image-classification")


# -- the schema --------------------------------------------------------------------------------------
def test_schema_modes_and_generations(tmp_path):
    from workbench.distill.run import load_job

    assert _recipe().distill.mode == "standard" and _recipe().distill.generations == 1
    assert _recipe(mode="self", generations=3).distill.generations == 3
    with pytest.raises(RecipeError, match=r"mode = 'bogus' is not allowed; use one of standard, reverse, self"):
        _recipe(mode="bogus")
    with pytest.raises(RecipeError, match=r'generations = 2 needs \[distill\] mode = "self"'):
        _recipe(mode="reverse", generations=2)
    with pytest.raises(RecipeError, match=r"generations = 0 is not allowed"):
        _recipe(mode="self", generations=0)
    # the command shares mode; generations is a recipe's (the command trains one generation)
    cfg = tmp_path / "job.toml"
    cfg.write_text('[distill]\nmode = "reverse"\nteacher = "zoo:digits-cnn8"\nstudent = "zoo:cnn?width=16"\n'
                   'task = "digits"\n')
    assert load_job(str(cfg), {}).mode == "reverse"
    cfg.write_text('[distill]\nmode = "self"\ngenerations = 2\n')
    with pytest.raises(RecipeError, match=r"generations applies to a recipe only; .*--teacher"):
        load_job(str(cfg), {})


# -- the plan ------------------------------------------------------------------------------------------
def test_standard_and_reverse_plans_are_the_standard_plan():
    base = _plan(recipe_from_dict(TINY))
    assert _plan(_recipe(mode="standard")) == base
    assert [(n.id, n.key, n.deps) for n in _plan(_recipe(mode="reverse")).nodes] == \
        [(n.id, n.key, n.deps) for n in base.nodes]  # the same training: only the report speaks of the sizes


def test_self_mode_plans_born_again_generations():
    g = _plan(_recipe(mode="self", generations=3))
    train = {n.id: n for n in g.of_unit("train_student")}
    assert len(train) == 2 * 2 * 4  # regimes x seeds x (labels, generations 1-3)
    for regime in ("full", "few-3"):
        for s in (0, 1):
            g1, g2, g3 = (train[f"train:a.{regime}.kd{x}.s{s}"] for x in ("", ".g2", ".g3"))
            assert g1.deps == ("teacher_outputs:teacher.logits",) and g1.job.job.teacher is None
            # generation k: after generation k-1 of the same seed, taught by its weights file, keyed by its key
            # (and after the teacher_outputs unit that caches generation k-1's logits)
            assert g2.deps == (g1.id, f"teacher_outputs:{g1.job.job.name}.logits")
            assert g3.deps == (g2.id, f"teacher_outputs:{g2.job.job.name}.logits")
            assert g2.job.job.teacher.weights == g1.job.weights and g2.job.job.teacher.key == g1.key
            assert g3.job.job.teacher.weights == g2.job.weights and len({g1.key, g2.key, g3.key}) == 3
    ids = [n.id for n in g.nodes]
    assert all(ids.index(d) < ids.index(n.id) for n in g.nodes for d in n.deps)
    # the deployed KD student is the last generation
    assert g.node("export:a.kd.fp32").deps == ("train:a.full.kd.g3.s0",)
    # a new teacher changes every generation's key (through generation 1); the twin's stays
    other = {n.id: n.key for n in _plan(_recipe(mode="self", generations=3), teacher_sha="b" * 64).nodes}
    assert other["train:a.full.kd.g3.s0"] != train["train:a.full.kd.g3.s0"].key
    assert other["train:a.full.labels.s0"] == train["train:a.full.labels.s0"].key


# -- size checks ---------------------------------------------------------------------------------------
def test_size_checks_per_mode():
    from workbench.distill.modes import check_sizes, mode_note
    from workbench.zoo import build_arch

    small, big, other = build_arch("cnn", 1, 10, width=8, depth=1), build_arch("cnn", 1, 10, width=16, depth=2), \
        build_arch("cnn", 1, 10, width=4, depth=1)
    check_sizes("standard", big, small, "s")  # standard: no check (today's behaviour)
    check_sizes("reverse", small, big, "b")
    check_sizes("reverse", small, build_arch("cnn", 1, 10, width=8, depth=1), "equal")
    with pytest.raises(RecipeError, match=r'mode = "reverse" .* student s has 6,274 params, fewer than the '
                                          r"teacher's 72,666"):
        check_sizes("reverse", big, small, "s")
    check_sizes("self", small, build_arch("cnn", 1, 10, width=8, depth=1), "same")
    with pytest.raises(RecipeError, match=r'mode = "self" .* student o \(1,702 params\) differs'):
        check_sizes("self", small, other, "o")
    assert mode_note("reverse", 6274, 72666, "cnn-m") == \
        "reverse distillation: teacher 6,274 params -> student 72,666 params (cnn-m, 11.6x the teacher)"
    assert mode_note("standard", 1, 1, "x") is None


@pytest.mark.slow
def test_preflight_refuses_a_student_that_does_not_fit_the_mode(tmp_path, capsys):
    """One line, exit 2, nothing written: reverse with a smaller student, self with another architecture."""
    from workbench.cli import main

    for mode, student in (("reverse", STUDENT), ("self", {**STUDENT, "width": 16})):
        p = tmp_path / f"{mode}.toml"
        import tomli_w

        p.write_text(tomli_w.dumps({**TINY, "teacher": {"source": "zoo:digits-cnn8"}, "students": [student],
                                    "distill": {**TINY["distill"], "mode": mode}}))
        assert main(["run", str(p), "--dry-run", "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f'mode = "{mode}"' in err[0] and not (tmp_path / "run").exists()


# -- the studies and the report ---------------------------------------------------------------------------
def test_generation_study_pairs_each_generation_over_seeds():
    from workbench.pipeline.families import FAMILIES
    from workbench.pipeline.generations import mode_studies
    from workbench.pipeline.study import paired_difference

    recipe = _recipe(mode="self", generations=2, regimes=["full"], seeds=[0, 1, 2])
    acc = {"labels": [0.90, 0.92, 0.91], "kd": [0.93, 0.94, 0.935], "kd.g2": [0.95, 0.94, 0.96]}
    trained = {f"a.full.{m}.s{s}": {"test_metric": v, "params": 1702, "n_train": 1257}
               for m, vals in acc.items() for s, v in enumerate(vals)}
    out = mode_studies(recipe, trained, FAMILIES.get("image-classification"), 6274)
    assert out["mode"]["mode"] == "self" and out["mode"]["student_params"] == {"a": 1702}
    assert "born-again, 2 generations" in out["mode"]["notes"][0]
    rows = {(r["generation"], r["against"]): r for r in out["generations"]}
    assert set(rows) == {(1, "labels-only twin"), (2, "labels-only twin"), (2, "generation 1")}
    want = paired_difference(acc["kd"], acc["kd.g2"])
    r = rows[(2, "generation 1")]
    assert r["diff_mean"] == pytest.approx(want["diff_mean"]) and r["diff_ci95"] == want["diff_ci95"]
    assert r["base_acc"] == acc["kd"] and r["generation_acc"] == acc["kd.g2"]
    assert rows[(1, "labels-only twin")]["verdict"] == "generation 1 better"  # +2.5 points on every seed
    assert mode_studies(_recipe(), trained, FAMILIES.get("image-classification"), 6274) == {}  # standard: nothing


def test_report_shows_the_mode_and_the_generations():
    from workbench.pipeline.results import ResultSet
    from workbench.report.modes import build_modes, modes_html, modes_markdown

    studies = {"mode": {"mode": "self", "notes": ["self-distillation (born-again, 2 generations): ..."]},
               "generations": [{"student": "a", "regime_label": "full training split (1257 images)", "generation": 2,
                                "against": "generation 1", "seeds": [0, 1, 2], "base_mean": 0.93,
                                "generation_mean": 0.95, "diff_mean": 0.02, "diff_ci95": [0.01, 0.03],
                                "verdict": "generation 2 better"}]}
    view = build_modes(ResultSet(run=None, results=(), studies=studies))
    md = "\n".join(modes_markdown(view))
    assert "Distillation mode: self" in md and "generation 2 better" in md and "| a | full training split" in md
    assert "<td>generation 1</td>" in "".join(modes_html(view))
    assert build_modes(ResultSet(run=None, results=(), studies={"distillation": []})) is None


# -- the committed recipes, end to end -----------------------------------------------------------------------
def _tiny_copy(name: str, tmp_path: Path) -> Path:
    """The committed recipe with a test-sized budget (a few optimiser steps, short measurements)."""
    import tomli_w

    data = tomllib.loads((BUILTIN_DIR / name).read_text())
    data["distill"].update(steps=6, few_steps=4, augment_shift=0)
    data["quantize"]["calib_samples"] = 16
    data["export"] = {"parity_samples": 8}
    data["measure"].update(warmup_runs=2, warmup_s=0.02, min_runs=10, min_s=0.05, max_s=0.3, rounds=2, memory_runs=3)
    p = tmp_path / name
    p.write_text(tomli_w.dumps(data))
    return p


@pytest.mark.slow
def test_reverse_recipe_runs_quick(tmp_path):
    from workbench.cli import main

    out = tmp_path / "run"
    assert main(["run", str(_tiny_copy("reverse.toml", tmp_path)), "--quick", "--out", str(out)]) == 0
    doc = json.loads((out / "results.json").read_text())
    assert {r["variant"] for r in doc["results"]} == {"teacher.fp32", "teacher.int8-static", "cnn-m.labels.fp32",
                                                      "cnn-m.kd.fp32", "cnn-m.kd.int8-static"}
    assert all(r["status"] == "ok" for r in doc["results"])
    note = "reverse distillation: teacher 6,274 params -> student 41,110 params (cnn-m, 6.6x the teacher)"
    assert doc["studies"]["mode"]["notes"] == [note] and "generations" not in doc["studies"]
    assert len(doc["studies"]["distillation"][0]["kd_acc"]) == 2  # --quick: 2 seeds, paired
    assert note in (out / "report.md").read_text()


@pytest.mark.slow
def test_self_recipe_runs_quick_with_generations(tmp_path):
    from workbench.artifact import sha256_file
    from workbench.cli import main
    from workbench.distill.cache import cache_key

    out = tmp_path / "run"
    assert main(["run", str(_tiny_copy("self.toml", tmp_path)), "--quick", "--out", str(out)]) == 0
    doc = json.loads((out / "results.json").read_text())
    gens = doc["studies"]["generations"]
    # 2 regimes x (3 generations vs the twin + 2 vs the previous one), each paired over the 2 quick seeds
    assert len(gens) == 2 * 5 and all(len(r["generation_acc"]) == len(r["base_acc"]) == 2 for r in gens)
    assert {(r["generation"], r["against"]) for r in gens} >= {(3, "generation 2"), (3, "labels-only twin")}
    kd = next(r for r in doc["results"] if r["variant"] == "cnn8.kd.fp32")
    assert kd["status"] == "ok"
    # every generation that teaches has its own logits file, keyed by its weights' sha256
    weights = sorted((out / "work" / "train").glob("cnn8.full.kd.g2.s0.*.safetensors"))
    assert len(weights) == 1
    key = cache_key(sha256_file(weights[0]), doc["run"]["task"]["fingerprint"], 0)
    assert (out / "cache" / f"teacher-logits-{key}.npy").is_file()
    assert "Born-again generations" in (out / "report.md").read_text()
