"""The pipeline as a graph of units: the plan is pure and its keys stable; a unit run in a fresh process
from pickled arguments writes byte-identical files to the same unit run in this process."""
from __future__ import annotations

import multiprocessing
import pickle

import numpy as np
import pytest

from workbench.pipeline.plan import plan
from workbench.recipe import recipe_from_dict

TINY = {
    "name": "tiny-units",
    "students": [{"name": "a", "arch": "cnn", "width": 4, "depth": 1}],
    "distill": {"seeds": [0, 1], "regimes": ["full", "few-3"], "steps": 4, "few_steps": 3, "augment_shift": 0},
    "quantize": {"teacher": ["static", "dynamic", "auto"], "students": ["static"], "calib_samples": 16},
    "export": {"parity_samples": 8},
    "measure": {"threads": [1], "runtimes": ["ort"], "rounds": 2},
}


def _plan(teacher_sha="a" * 64, task_fp="f" * 16, runtimes=("ort",)):
    from workbench.pipeline import families  # noqa: F401  (registers image-classification)

    return plan(recipe_from_dict(TINY), list(runtimes), teacher_sha=teacher_sha, task_fp=task_fp,
                family="image-classification")


def test_plan_is_pure_ordered_and_keys_are_stable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    g1, g2 = _plan(), _plan()
    assert g1 == g2 and not list(tmp_path.iterdir())  # same graph twice, nothing written
    seen = set()
    for node in g1.nodes:  # every node after its dependencies; ids unique
        assert node.id not in seen and set(node.deps) <= seen, node.id
        seen.add(node.id)
    s = g1.summary()
    assert s["training_runs"] == 2 * 2 * 2  # regimes x seeds x (labels, kd)
    assert s["artifacts"] == {"ort": 1 + 3 + 2 + 1}  # teacher fp32 + 3 methods, a.labels, a.kd, a.kd.int8-static
    assert s["measurements"] == 7 and s["units"]["auto_quantize"] == 1
    auto = g1.node("auto:teacher.auto")
    assert set(auto.deps) == {"export:teacher.fp32", "quantize:teacher.int8-static", "quantize:teacher.int8-dynamic"}
    train = {n.id: n for n in g1.of_unit("train_student")}
    assert all(n.key and n.job.weights.endswith(f".{n.key}.safetensors") for n in train.values())


def test_plan_keys_follow_their_inputs():
    base, other_teacher, other_task = _plan(), _plan(teacher_sha="b" * 64), _plan(task_fp="e" * 16)
    key = {n.id: n.key for n in base.nodes}
    t2 = {n.id: n.key for n in other_teacher.nodes}
    f2 = {n.id: n.key for n in other_task.nodes}
    # the teacher enters the keys of its own export and of KD training, never of the labels-only twin
    assert t2["export:teacher.fp32"] != key["export:teacher.fp32"]
    assert t2["train:a.full.kd.s0"] != key["train:a.full.kd.s0"]
    assert t2["train:a.full.labels.s0"] == key["train:a.full.labels.s0"]
    assert t2["export:a.labels.fp32"] == key["export:a.labels.fp32"]
    # the task enters every key computed up front
    assert all(f2[i] != k for i, k in key.items() if k is not None)


def test_plan_of_mobile_runtimes_names_their_artifacts():
    g = _plan(runtimes=("ort", "ort-mobile", "executorch", "litert"))
    arts = dict(g.artifacts)
    ids = {rt: [g.node(n).job.art_id for n in arts[rt]] for rt in arts}
    # the teacher and the KD students of [mobile] students (default: every student); auto and dynamic stay on ort
    assert ids["ort-mobile"] == ["teacher.fp32", "teacher.int8-static", "a.kd.fp32", "a.kd.int8-static"]
    assert ids["executorch"] == ["teacher.fp32", "teacher.int8-pt2e", "a.kd.fp32", "a.kd.int8-pt2e"]
    assert ids["litert"][0] == "teacher.fp32" and "a.kd.fp32" in ids["litert"]
    assert g.summary()["artifacts"] == {"ort": 7, "ort-mobile": 4, "executorch": 4, "litert": len(ids["litert"])}
    assert g.node("convert:ort-mobile:teacher.int8-static").deps == ("quantize:teacher.int8-static",)
    assert g.node("convert:executorch:teacher.int8-pt2e").job.method == "pt2e"


def _run_nodes(payload: bytes) -> bytes:
    """Runs in a fresh (spawned) interpreter: unpickle (ctx, nodes), run them in order, pickle the results."""
    from workbench.pipeline.units import run_unit

    ctx, nodes = pickle.loads(payload)
    results = {}
    for node in nodes:
        results[node.id] = run_unit(node.unit, ctx, node.job, {d: results[d] for d in node.deps})
    return pickle.dumps(results)


def _setup(root, recipe, pre):
    from workbench.pipeline.rundir import RunDir
    from workbench.pipeline.runner import context_of

    rd = RunDir(root)
    np.savez(rd.root / "inputs.npz", **pre.family.inputs(pre.task, "test", 1))
    return context_of(recipe, rd.root, pre)


@pytest.mark.slow
def test_unit_in_a_fresh_process_writes_byte_identical_files(tmp_path):
    from workbench.pipeline.runner import graph_of, preflight

    recipe = recipe_from_dict(TINY)
    pre = preflight(recipe)
    graph = graph_of(recipe, pre)
    ids = ["export:teacher.fp32", "quantize:teacher.int8-static", "train:a.full.labels.s0"]
    nodes = [graph.node(i) for i in ids]
    here, there = _setup(tmp_path / "here", recipe, pre), _setup(tmp_path / "there", recipe, pre)
    assert pickle.loads(pickle.dumps(here)) == here

    local = pickle.loads(_run_nodes(pickle.dumps((here, nodes))))  # in this process
    with multiprocessing.get_context("spawn").Pool(1) as pool:  # a fresh interpreter, arguments pickled
        remote = pickle.loads(pool.apply(_run_nodes, (pickle.dumps((there, nodes)),)))

    for i in ids[:2]:
        a, b = local[i].artifact, remote[i].artifact
        assert (a.id, a.path, a.sha256, a.size_bytes) == (b.id, b.path, b.sha256, b.size_bytes)
        assert (tmp_path / "here" / a.path).read_bytes() == (tmp_path / "there" / b.path).read_bytes()
        assert not local[i].reused and not remote[i].reused
    w_here, w_there = tmp_path / "here" / local[ids[2]].weights, tmp_path / "there" / remote[ids[2]].weights
    assert w_here.read_bytes() == w_there.read_bytes()  # fixed seed: the same weights in either process
    assert local[ids[2]].row["test_accuracy"] == remote[ids[2]].row["test_accuracy"]
    # a unit whose key exists is skipped: the same node again reuses its file
    again = pickle.loads(_run_nodes(pickle.dumps((here, nodes[:1]))))
    assert again[ids[0]].reused and again[ids[0]].artifact == local[ids[0]].artifact


def test_local_executor_refuses_a_node_before_its_dependencies():
    from workbench.errors import WorkbenchError
    from workbench.pipeline.executor import LocalExecutor
    from workbench.pipeline.plan import Graph, Node

    g = _plan()
    bad = Graph((g.node("quantize:teacher.int8-static"), g.node("export:teacher.fp32")))
    with pytest.raises(WorkbenchError, match="quantize:teacher.int8-static runs before export:teacher.fp32"):
        LocalExecutor().run(bad, ctx=None)
    assert Node("x", "evaluate", None).deps == ()
