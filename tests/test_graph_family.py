"""Graphs (issue 16, item 3): ``graph:`` tasks (workbench.tasks.graph), the ``pyg:`` model sources
(workbench.zoo.graph) and the node-classification family (GNN teacher -> graph-free MLP student, GLNN),
member by member on tiny generated graphs, then a whole ``workbench run --quick`` of a graph recipe."""
from __future__ import annotations

import json

import numpy as np
import pytest

from workbench.errors import RecipeError, TaskError

TINY = "graph:csbm?nodes=120&classes=3&features=8&signal=1.5&train_per_class=8&val_per_class=8"


# --------------------------------------------------------------------------- tasks (no torch_geometric needed)

def test_csbm_is_deterministic_with_exact_ground_truth_and_stated_splits():
    """The generator gives the same graph for the same seed, balanced blocks as labels, the requested
    homophily (within sampling error), undirected edges listed both ways and disjoint stated splits."""
    from workbench.tasks import load_task, task_type

    a, b = load_task("graph:csbm?nodes=600&classes=3&features=8"), load_task("graph:csbm?nodes=600&classes=3&features=8")
    assert a.fingerprint() == b.fingerprint() and np.array_equal(a.edge_index, b.edge_index)
    assert load_task("graph:csbm?nodes=600&classes=3&features=8&seed=1").fingerprint() != a.fingerprint()
    assert task_type(a).name == "node-classification"
    assert np.bincount(a.y).tolist() == [200, 200, 200] and a.x.dtype == np.float32 and a.x.shape == (600, 8)
    same = (a.y[a.edge_index[0]] == a.y[a.edge_index[1]]).mean()
    assert 0.7 < same < 0.9  # requested 0.8
    pairs = set(map(tuple, a.edge_index.T.tolist()))
    assert all((j, i) in pairs for i, j in pairs)
    assert np.bincount(a.y_train).tolist() == [20, 20, 20] and np.bincount(a.y_val).tolist() == [100, 100, 100]
    splits = [set(a.train_idx), set(a.val_idx), set(a.test_idx)]
    assert sum(map(len, splits)) == 600 and not (splits[0] & splits[2]) and not (splits[1] & splits[2])
    sub = a.labelled_subset(5, seed=0)
    assert np.bincount(a.y[sub]).tolist() == [5, 5, 5] and set(sub) <= splits[0]
    assert "p_in" in a.summary()["options"] and "exact ground truth" in a.description


def test_karate_is_the_real_club_graph():
    """graph:karate: Zachary's 34 members, 78 friendships, 2 clubs (networkx)."""
    from workbench.tasks import load_task

    k = load_task("graph:karate")
    assert k.num_nodes == 34 and k.edge_index.shape == (2, 156) and k.num_classes == 2
    assert len(k.train_idx) + len(k.val_idx) + len(k.test_idx) == 34


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return f"graph:{path}"


@pytest.mark.parametrize("change, says", [
    (dict(edge_index=np.array([[0, 1], [1, 9]])), "outside [0, 6)"),
    (dict(edge_index=np.array([0, 1, 2])), "must be [2, edges]"),
    (dict(y=np.array([0, 1, 0])), "y must be [nodes] = [6]"),
    (dict(x=np.full((6, 2), np.nan, np.float32)), "NaN"),
    (dict(train_mask=np.ones(6, bool)), "give all three masks or none"),
])
def test_user_graph_npz_is_checked_with_one_line_errors(tmp_path, change, says):
    """graph:FILE.npz: a malformed array is one TaskError line naming it; a good file loads with its masks."""
    from workbench.tasks import load_task

    good = dict(x=np.arange(12, dtype=np.float32).reshape(6, 2), edge_index=np.array([[0, 1, 2, 3], [1, 2, 3, 4]]),
                y=np.array([0, 1, 0, 1, 0, 1]))
    with pytest.raises(TaskError) as e:
        load_task(_npz(tmp_path / "bad.npz", **{**good, **change}))
    assert says in str(e.value) and "\n" not in str(e.value)
    masks = dict(train_mask=np.array([1, 1, 0, 0, 0, 0], bool), val_mask=np.array([0, 0, 1, 1, 0, 0], bool),
                 test_mask=np.array([0, 0, 0, 0, 1, 1], bool))
    t = load_task(_npz(tmp_path / "good.npz", **good, **masks))
    assert t.train_idx.tolist() == [0, 1] and t.test_idx.tolist() == [4, 5] and t.edge_index.dtype == np.int64
    with pytest.raises(TaskError, match="takes no options"):
        load_task(f"graph:{tmp_path / 'good.npz'}?nodes=3")


def test_graph_task_refused_by_array_commands_in_one_line():
    """workbench train needs array inputs: a graph task says what to use instead."""
    from workbench.tasks import ARRAYS, LABELS, load_task

    with pytest.raises(TaskError, match="workbench run workbench/recipes/graph.toml"):
        load_task("graph:karate", command="train", needs={ARRAYS, LABELS})


# --------------------------------------------------------------------------- models and the family

pytest.importorskip("torch")


@pytest.mark.graph
def test_pyg_sources_build_gnns_and_the_graph_free_mlp():
    """pyg:gcn / pyg:sage read (x, edge_index); pyg:mlp reads features only; bad options are one line."""
    pytest.importorskip("torch_geometric")
    import torch

    from workbench.tasks import load_task
    from workbench.zoo.graph import takes_graph
    from workbench.zoo.sources import load_model

    task = load_task(TINY)
    x, ei = torch.from_numpy(task.x), torch.from_numpy(task.edge_index)
    for spec in ("pyg:gcn?hidden=16", "pyg:sage?hidden=16&layers=3"):
        m = load_model(spec, role="student", task=task).module
        assert takes_graph(m) and m(x, ei).shape == (task.num_nodes, 3)
    mlp = load_model("pyg:mlp?hidden=16", role="student", task=task).module
    assert not takes_graph(mlp) and mlp(x[:5]).shape == (5, 3)
    with pytest.raises(RecipeError, match="unknown option 'width'"):
        load_model("pyg:mlp?width=3", role="student", task=task)
    with pytest.raises(RecipeError, match="use one of pyg:gcn"):
        load_model("pyg:gat", role="student", task=task)


def _recipe(tmp_path, teacher_quant='["dynamic"]', students='["static"]', steps=60) -> str:
    text = f"""
schema_version = 1
name = "graph-tiny"
[task]
name = "{TINY}"
[teacher]
source = "pyg:gcn?hidden=16&layers=2"
[[students]]
name = "mlp"
arch = "pyg:mlp?hidden=32&layers=2"
[distill]
temperature = 1.0
alpha = 0.9
seeds = [0, 1]
regimes = ["full"]
steps = {steps}
few_steps = {steps}
batch_size = 64
lr = 0.01
[quantize]
teacher = {teacher_quant}
students = {students}
calib_samples = 32
[measure]
runtimes = ["ort"]
threads = [1]
warmup_runs = 2
warmup_s = 0.05
min_runs = 5
min_s = 0.1
max_s = 0.3
memory_runs = 3
rounds = 1
"""
    path = tmp_path / "graph.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.graph
def test_family_trains_teacher_once_distils_and_exports_both_kinds(tmp_path, monkeypatch):
    """The family trains the GCN teacher on first use and caches it; the KD MLP learns the teacher's soft
    labels; the GNN exports with (x, edge_index) inputs and the MLP with a batch of node features, each with
    parity, and evaluates through ORT to its PyTorch accuracy."""
    pytest.importorskip("torch_geometric")
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    from workbench.pipeline.family import StudentJob, remember
    from workbench.pipeline.families import family_of
    from workbench.pipeline.runner import context_of, preflight
    from workbench.recipe import load_recipe

    recipe = load_recipe(_recipe(tmp_path))
    pre = preflight(recipe)
    fam = pre.family
    assert fam.name == "node-classification" and pre.runtimes == ["ort"]
    cached = list((tmp_path / "cache" / "graph-teachers").glob("*.safetensors"))
    assert len(cached) == 1 and pre.teacher.weights == cached[0]
    assert preflight(recipe).teacher.sha256 == pre.teacher.sha256  # the second load reuses the cached teacher
    ctx = context_of(recipe, tmp_path / "run", pre)
    (tmp_path / "run").mkdir()
    remember(ctx, task=pre.task, teacher=pre.teacher.module)
    teacher_acc = fam.pytorch_metric(pre.teacher.module, ctx)
    assert teacher_acc > 0.6  # 3 classes: chance is 1/3
    rows = {}
    for method in ("labels", "kd"):
        job = StudentJob(recipe.students[0], "full", 0, method)
        rows[method] = fam.train(job, ctx, tmp_path / f"{method}.safetensors", None)
        assert rows[method]["n_train"] == 24 and rows[method]["kd_nodes"] == (120 if method == "kd" else 0)
    student = fam.load_student(StudentJob(recipe.students[0], "full", 0, "kd"), ctx, tmp_path / "kd.safetensors")
    soft = fam.soft_labels(ctx).argmax(1)
    from workbench.pipeline.families.graph_train import graph_logits

    assert (graph_logits(student, pre.task).argmax(1) == soft).mean() > 0.8  # it learned the teacher's labels
    assert fam.export(pre.teacher.module, tmp_path / "gnn.onnx", ctx) < 1e-4
    assert fam.export(student, tmp_path / "mlp.onnx", ctx) < 1e-4
    import onnx

    assert [i.name for i in onnx.load(str(tmp_path / "gnn.onnx")).graph.input] == ["x", "edge_index"]
    assert [i.name for i in onnx.load(str(tmp_path / "mlp.onnx")).graph.input] == ["features"]
    q = fam.evaluate(str(tmp_path / "gnn.onnx"), "ort", ctx)
    assert q["value"] == pytest.approx(teacher_acc, abs=1e-9) and q["n"] == len(pre.task.test_idx)
    assert q["ci95"][0] <= q["value"] <= q["ci95"][1]
    assert fam.evaluate(str(tmp_path / "mlp.onnx"), "ort", ctx)["value"] == pytest.approx(rows["kd"]["test_metric"], abs=1e-9)
    assert family_of(pre.task) is fam


@pytest.mark.graph
def test_graph_recipe_refuses_calibrated_teacher_quantization(tmp_path, capsys):
    """A GNN's one input is the whole graph: static / auto quantization of the teacher is refused before any work."""
    pytest.importorskip("torch_geometric")
    from workbench.cli import main

    recipe = _recipe(tmp_path, teacher_quant='["static"]')
    assert main(["run", recipe, "--dry-run", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no set of examples to calibrate" in err[0] and not (tmp_path / "run").exists()


@pytest.mark.graph
@pytest.mark.slow
def test_workbench_run_quick_on_a_tiny_graph(tmp_path, monkeypatch):
    """`workbench run --quick` of a graph recipe: the GNN teacher, both MLP twins, the int8 teacher and
    student, each evaluated on the test nodes through ORT and measured with its own inputs (the GNN the
    whole graph, the MLP the test nodes' features); the KD - twin study over the two seeds."""
    pytest.importorskip("torch_geometric")
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    from workbench.cli import main

    assert main(["run", _recipe(tmp_path), "--quick", "--quiet", "--out", str(tmp_path / "run")]) == 0
    doc = json.loads((tmp_path / "run" / "results.json").read_text())
    records = {r["variant"]: r for r in doc["results"]}
    assert set(records) == {"teacher.fp32", "teacher.int8-dynamic", "mlp.kd.fp32", "mlp.labels.fp32",
                            "mlp.kd.int8-static"}
    for name, r in records.items():
        assert r["status"] == "ok" and r["quality"]["metric"] == "accuracy" and r["quality"]["n"] == 72
        want = {"x", "edge_index"} if name.startswith("teacher") else {"features"}
        assert set(r["input"]["shapes"]) == want
    assert records["mlp.kd.fp32"]["input"]["shapes"]["features"] == [72, 8]
    assert records["teacher.fp32"]["input"]["shapes"]["x"] == [120, 8]
    study = doc["studies"]["distillation"][0]
    assert study["student"] == "mlp" and len(study["kd_acc"]) == len(study["labels_acc"]) == 2
    report = (tmp_path / "run" / "report.md").read_text()
    assert "the whole graph per call" in report and "mlp.kd.fp32" in report
