"""The teacher-output cache as a unit of its own (issue 15): the plan has one ``teacher_outputs`` node per cache
entry (the run's teacher; each born-again generation's teacher) and every training node that reads the entry
depends on it; a local run fills it once and a re-run recomputes nothing; a training unit that finds its entry
missing computes it with a note; the text families' unit fills exactly the entry their training reads.
(On a Ray cluster: tests/test_cluster_ray.py.)"""
from __future__ import annotations

import json

import pytest
from test_run_text import world  # noqa: F401  (the text fixtures: a tiny BERT classifier and encoder, made once)

from workbench.recipe import recipe_from_dict

STUDENTS = [{"name": "a", "arch": "cnn", "width": 4, "depth": 1}, {"name": "b", "arch": "cnn", "width": 6, "depth": 1}]
IMAGES = {"name": "tiny-cache", "students": STUDENTS,
          "distill": {"seeds": [0, 1], "regimes": ["full", "few-3"], "steps": 4, "few_steps": 3, "augment_shift": 0},
          "quantize": {"teacher": [], "students": []},
          "measure": {"threads": [1], "runtimes": ["ort"], "rounds": 1}}
TEXT = {"name": "tiny-text", "task": {"name": "text:/nowhere.csv"},
        "teacher": {"source": "hf:/nowhere?task=classification"},
        "students": [{"name": "L2", "arch": "drop:2"}, {"name": "L1", "arch": "drop:1"}],
        "distill": {"seeds": [0, 1], "regimes": ["full", "few-2"], "steps": 4, "few_steps": 3},
        "quantize": {"teacher": [], "students": []}, "measure": {"runtimes": ["ort"], "threads": [1]}}


def _plan(data, family="image-classification", teacher_sha="a" * 64):
    from workbench.pipeline import families  # noqa: F401  (registers the families)
    from workbench.pipeline.plan import plan

    return plan(recipe_from_dict(data), ["ort"], teacher_sha=teacher_sha, task_fp="f" * 16, family=family)


def _cache_deps(g) -> dict:
    """train node id -> the teacher_outputs nodes it depends on."""
    caches = {n.id for n in g.of_unit("teacher_outputs")}
    return {n.id: [d for d in n.deps if d in caches] for n in g.of_unit("train_student")}


def test_one_cache_node_per_key_every_kd_node_after_it_twins_not():
    g = _plan(IMAGES)
    (cache,) = g.of_unit("teacher_outputs")
    assert cache.id == "teacher_outputs:teacher.logits" and cache.deps == () and cache.key
    deps = _cache_deps(g)
    assert len(deps) == 2 * 2 * 2 * 2  # students x regimes x seeds x (labels, kd)
    assert all(d == ([cache.id] if ".kd." in i else []) for i, d in deps.items())  # labels-only twins: none
    ids = [n.id for n in g.nodes]
    assert all(ids.index(cache.id) < ids.index(i) for i in deps if ".kd." in i)
    assert g.summary()["teacher_output_caches"] == 1 and g.summary()["units"]["teacher_outputs"] == 1
    # the entry's key follows the teacher and the shift; the training keys are what they were without the node
    other = _plan(IMAGES, teacher_sha="b" * 64).node(cache.id)
    shifted = _plan({**IMAGES, "distill": {**IMAGES["distill"], "augment_shift": 1}}).node(cache.id)
    assert len({cache.key, other.key, shifted.key}) == 3
    from workbench.pipeline.family import FAMILIES
    from workbench.pipeline.rundir import content_key

    sj = g.node("train:a.full.kd.s0").job.job
    fam, recipe = FAMILIES.get("image-classification"), recipe_from_dict(IMAGES)
    assert g.node("train:a.full.kd.s0").key == content_key("train", sj.student.to_toml(), sj.regime,
                                                           fam.job_config(recipe, sj), "f" * 16, "a" * 64)


def test_each_born_again_generation_teacher_has_its_own_cache_node():
    g = _plan({**IMAGES, "students": STUDENTS[:1], "distill": {**IMAGES["distill"], "mode": "self", "generations": 3}})
    caches = {n.id: n for n in g.of_unit("teacher_outputs")}
    # the run's teacher, plus generations 1 and 2 (they teach 2 and 3) of every regime and seed
    assert len(caches) == 1 + 2 * 2 * 2
    for regime in ("full", "few-3"):
        for s in (0, 1):
            g1, g2, g3 = (f"a.{regime}.kd{x}.s{s}" for x in ("", ".g2", ".g3"))
            c1, c2 = caches[f"teacher_outputs:{g1}.logits"], caches[f"teacher_outputs:{g2}.logits"]
            assert c1.deps == (f"train:{g1}",) and c2.deps == (f"train:{g2}",)  # after the training that teaches
            assert c1.job.job.teacher.weights == g.node(f"train:{g1}").job.weights
            assert g.node(f"train:{g1}").deps == ("teacher_outputs:teacher.logits",)
            assert g.node(f"train:{g2}").deps == (f"train:{g1}", c1.id)
            assert g.node(f"train:{g3}").deps == (f"train:{g2}", c2.id)
    assert len({n.key for n in caches.values()}) == len(caches)


def test_text_families_and_graphs():
    # text classification: twins read the entry too (their card's teacher accuracy); few-N: one entry per seed
    deps = _cache_deps(_plan(TEXT, "text-classification"))
    assert {d for ds in deps.values() for d in ds} == {"teacher_outputs:teacher.logits",
                                                       "teacher_outputs:teacher.logits.few-2.s0",
                                                       "teacher_outputs:teacher.logits.few-2.s1"}
    assert all(len(d) == 1 for d in deps.values())
    assert deps["train:L1.few-2.labels.s1"] == deps["train:L2.few-2.kd.s1"] == [
        "teacher_outputs:teacher.logits.few-2.s1"]
    # sentence embeddings: one entry (every student's mapped layers) for every job
    corpus = {**TEXT, "task": {"name": "corpus:/nowhere.txt"}, "teacher": {"source": "hf:/nowhere"},
              "distill": {**TEXT["distill"], "regimes": ["full"]}}
    deps = _cache_deps(_plan(corpus, "sentence-embedding"))
    assert len(deps) == 8 and all(d == ["teacher_outputs:teacher.embeddings"] for d in deps.values())
    # graphs: soft labels are one in-memory GNN pass per process, no unit (see the family's docstring)
    assert _plan(IMAGES, "node-classification").of_unit("teacher_outputs") == []


# --------------------------------------------------------------------------- a tiny image run

@pytest.mark.slow
def test_local_run_fills_once_rerun_recomputes_nothing_and_training_remakes_a_deleted_entry(tmp_path):
    from workbench.pipeline.family import remember
    from workbench.pipeline.rundir import RunDir
    from workbench.pipeline.runner import context_of, graph_of, preflight, run
    from workbench.pipeline.units import run_unit
    from workbench.progress import Progress

    data = {**IMAGES, "students": STUDENTS[:1], "task": {"name": "digits", "image_size": 16},
            "distill": {**IMAGES["distill"], "seeds": [0], "regimes": ["full"], "steps": 6},
            "export": {"parity_samples": 8},
            "measure": {"threads": [1], "runtimes": ["ort"], "warmup_runs": 2, "warmup_s": 0.01, "min_runs": 10,
                        "min_s": 0.02, "max_s": 0.1, "rounds": 1, "memory_runs": 2}}
    recipe, out = recipe_from_dict(data), tmp_path / "run"
    first = json.loads(run(recipe, out, progress=Progress(quiet=True)).read_text())
    units = {u["id"]: u for u in json.loads((out / "units.json").read_text())}
    (npy,) = out.glob("cache/teacher-logits-*.npy")
    made = units["teacher_outputs:teacher.logits"]
    assert [u["unit"] for u in units.values()].count("teacher_outputs") == 1 and made["cached"] is False
    assert made["start"] - 0.05 <= npy.stat().st_mtime_ns / 1e9 <= made["end"] < units["train:a.full.kd.s0"]["start"]
    (record,) = out.glob("work/teacher_outputs/logits.*.json")
    rec = json.loads(record.read_text())
    assert rec["made_here"] and rec["paths"] == [str(npy.relative_to(out))] and len(rec["sha256"]) == 64

    again = json.loads(run(recipe, out, progress=Progress(quiet=True)).read_text())
    redo = json.loads((out / "units.json").read_text())
    assert [u["id"] for u in redo if not u["cached"]] == []  # the cache unit too: nothing recomputed, nothing written
    assert [r["artifact"]["sha256"] for r in again["results"]] == [r["artifact"]["sha256"] for r in first["results"]]

    # the entry deleted by hand and the KD student to train again: the training unit computes it, with a note
    pre = preflight(recipe)
    ctx, node = context_of(recipe, out, pre), graph_of(recipe, pre).node("train:a.full.kd.s0")
    notes = []
    remember(ctx, rundir=RunDir(out, notify=notes.append))
    weights = (out / node.job.weights).read_bytes()
    npy.unlink()
    next(out.glob("work/train/a.full.kd.s0.*.json")).unlink()
    res = run_unit("train_student", ctx, node.job, {})
    assert res.teacher_outputs == "made" and npy.is_file()
    assert len(notes) == 1 and "was missing when train:a.full.kd.s0 began" in notes[0]
    assert (out / node.job.weights).read_bytes() == weights  # the same logits again: the same student
    next(out.glob("work/train/a.full.kd.s0.*.json")).unlink()
    assert run_unit("train_student", ctx, node.job, {}).teacher_outputs == "read" and len(notes) == 1


# --------------------------------------------------------------------------- the text families

@pytest.mark.slow
@pytest.mark.parametrize("kind", ["classification", "embedding"])
def test_text_unit_fills_the_entry_training_reads(tmp_path, kind, world):
    """The family's fill and its training compute the same key: after the unit, training runs no teacher pass."""
    from test_run_text import _ctx, _recipe

    from workbench.distill.transformer_data import TEACHER_PASSES
    from workbench.pipeline.family import StudentJob
    from workbench.pipeline.units.teacher_outputs import TeacherOutputsJob, teacher_outputs

    ctx, fam, recipe, _, _ = _ctx(world, kind, tmp_path / "run", _recipe(world, kind))
    job = StudentJob(recipe.students[0], "full", 0, "kd")
    spec = fam.teacher_outputs(recipe, job)
    before = TEACHER_PASSES["count"]
    made = teacher_outputs(ctx, TeacherOutputsJob(job, "k", spec.label), {})
    assert made.made and TEACHER_PASSES["count"] == before + 1
    assert all((tmp_path / "run" / p).is_file() for p in made.paths)
    assert any(p.endswith("meta.json") for p in made.paths)
    again = teacher_outputs(ctx, TeacherOutputsJob(job, "k", spec.label), {})
    assert again.reused and (again.key, again.sha256) == (made.key, made.sha256)
    for method in ("labels", "kd"):  # both twins read it (same entry), neither runs the teacher
        fam.train(StudentJob(recipe.students[0], "full", 0, method), ctx, tmp_path / f"{method}.safetensors", None)
    assert TEACHER_PASSES["count"] == before + 1
