"""`workbench run --backend ray`: the Ray executor on a local two-node cluster (head with one CPU + a bench
node with no CPU), against the local executor on the same recipe; plus fast checks of ``[measure]
group_size`` and of the messages for bad input."""
from __future__ import annotations

import json

import pytest

from workbench.errors import RecipeError, RuntimeUnavailable, WorkbenchError
from workbench.recipe import recipe_from_dict

TINY = {
    "name": "tiny-ray",
    "students": [{"name": "a", "arch": "cnn", "width": 4, "depth": 1}],
    "distill": {"seeds": [0], "regimes": ["full"], "steps": 6, "few_steps": 3, "augment_shift": 0},
    "quantize": {"teacher": ["static"], "students": [], "calib_samples": 16},
    "export": {"parity_samples": 8},
    "measure": {"threads": [1], "runtimes": ["ort"], "warmup_runs": 2, "warmup_s": 0.02, "min_runs": 10,
                "min_s": 0.05, "max_s": 0.3, "rounds": 1, "memory_runs": 3, "group_size": 3},
}  # 4 artifacts (teacher fp32 + int8, student labels + kd): group_size 3 -> two sub-groups with both teachers
PLAN_RECIPE = {**TINY, "quantize": {"teacher": ["static", "dynamic"], "students": ["static"], "calib_samples": 16},
               "students": [{"name": "a", "arch": "cnn", "width": 4, "depth": 1},
                            {"name": "b", "arch": "cnn", "width": 6, "depth": 1}]}


def _plan(data):
    from workbench.pipeline import families  # noqa: F401  (registers image-classification)
    from workbench.pipeline.plan import plan

    return plan(recipe_from_dict(data), ["ort"], teacher_sha="a" * 64, task_fp="f" * 16,
                family="image-classification")


# -- fast: group_size and bad input -----------------------------------------------------------------
def test_group_size_splits_groups_and_each_sub_group_holds_the_references():
    g = _plan({**PLAN_RECIPE, "measure": {**TINY["measure"], "group_size": 4}})
    groups = g.of_unit("measure_group")
    arts = dict(g.artifacts)["ort"]  # teacher fp32 + 2 quantized, a/b labels + kd fp32, 2 student int8 = 9
    refs = {"export:teacher.fp32", "quantize:teacher.int8-static", "quantize:teacher.int8-dynamic"}
    assert len(arts) == 9 and [n.id for n in groups] == [f"measure:ort/t1/g{i}" for i in range(6)]
    for n in groups:
        assert refs <= set(n.job.arts) and len(n.job.arts) <= 4 and n.deps == n.job.arts
    others = [a for n in groups for a in n.job.arts if a not in refs]
    assert sorted(others) == sorted(set(arts) - refs) and len(others) == len(set(others))  # each once
    # default: one group, the plan of before (same ids)
    one = _plan({**PLAN_RECIPE, "measure": {k: v for k, v in TINY["measure"].items() if k != "group_size"}})
    assert [n.id for n in one.of_unit("measure_group")] == ["measure:ort/t1"]
    assert one.of_unit("measure_group")[0].job.arts == tuple(arts)
    assert "group_size" not in recipe_from_dict(PLAN_RECIPE | {"measure": {"threads": [1]}}).to_toml()


@pytest.mark.parametrize("value", [1, 0, "4", 2.5, True])
def test_group_size_bad_values_say_what_to_use(value):
    with pytest.raises(RecipeError, match=r"\[measure\] group_size must be a whole number >= 2"):
        recipe_from_dict({**TINY, "measure": {**TINY["measure"], "group_size": value}})


def test_group_size_without_room_beside_the_references_is_refused():
    with pytest.raises(RecipeError, match="group_size = 3 leaves no room beside the 3 reference artifacts"):
        _plan({**PLAN_RECIPE, "measure": {**TINY["measure"], "group_size": 3}})


def test_backend_and_address_errors_are_one_line_exit_2(monkeypatch, tmp_path, capsys):
    from workbench.cli import main

    def err(*args):
        code = main(["run", *args, "--out", str(tmp_path / "x")])
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(lines) == 1, lines
        return lines[0]

    assert "unknown backend 'spark'; available: local, ray" in err("--backend", "spark")
    assert "--address needs --backend ray" in err("--address", "auto")
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # Ray not installed
    assert "pip install -e '.[cluster]'" in err("--backend", "ray")
    assert not (tmp_path / "x").exists()  # nothing written


def test_a_cluster_without_a_bench_node_says_how_to_start_one():
    from workbench.pipeline.executors.ray import check_cluster

    cpu = {"NodeID": "n1" * 28, "Alive": True, "Resources": {"CPU": 4.0}}
    with pytest.raises(WorkbenchError) as e:
        check_cluster([cpu, {**cpu, "Alive": False, "Resources": {"bench": 1.0}}], "10.0.0.1:6379")
    assert "ray start --address=10.0.0.1:6379 --num-cpus=0 --resources='{\"bench\": 1}'" in str(e.value)
    assert check_cluster([cpu, {"NodeID": "b", "Alive": True, "Resources": {"bench": 1.0}}], "h:1") == []
    notes = check_cluster([{"NodeID": "b", "Alive": True, "Resources": {"bench": 1.0, "CPU": 2.0}}], "h:1")
    assert len(notes) == 1 and "--num-cpus=0" in notes[0]
    with pytest.raises(WorkbenchError, match="offers no CPUs"):
        check_cluster([{"NodeID": "b", "Alive": True, "Resources": {"bench": 1.0}}], "h:1")


def test_token_auth_cluster_hints_carry_the_auth_mode_and_a_missing_token_is_one_line(monkeypatch):
    """Ray 2.60: a head started where ~/.ray/auth_token exists uses token auth, and `ray start --address`
    joins it only with RAY_AUTH_MODE=token (seen in benchmarks/scale/results/ray_start_e2e.txt); a driver
    without a usable token gets Ray's AuthenticationError, which is no RuntimeError."""
    import types

    import ray

    from workbench.pipeline.executors.ray import RayExecutor, check_cluster

    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # what ray.init sets in the driver when it found a token
    with pytest.raises(WorkbenchError) as e:
        check_cluster([{"NodeID": "c", "Alive": True, "Resources": {"CPU": 1.0}}], "h:1")
    assert "RAY_AUTH_MODE=token ray start --address=h:1 --num-cpus=0" in str(e.value)

    def init(**kw):
        raise ray.exceptions.AuthenticationError("Authentication token is missing or incorrect")

    fake = types.SimpleNamespace(is_initialized=lambda: False, init=init, exceptions=ray.exceptions)
    with pytest.raises(WorkbenchError) as e:
        RayExecutor("auto").connect(fake, None)
    msg = str(e.value)
    assert "\n" not in msg and "token authentication" in msg and "~/.ray/auth_token" in msg


def test_failure_summary_names_node_error_and_resume():
    from workbench.pipeline.executors.timing import Failed, failure_summary

    s = failure_summary([Failed("train:a.full.kd.s0", "abcdef0123456789", "ValueError: boom"),
                         Failed("export:a.kd.fp32", None, "not run", cause="train:a.full.kd.s0")], 20)
    assert s.startswith("1 of 20 units failed (train:a.full.kd.s0 on node abcdef01: ValueError: boom); 1 unit(s)")
    assert "run the same command again to resume" in s


def test_records_name_their_node_and_the_report_says_when_machines_were_mixed():
    from workbench.pipeline.assemble import _across_nodes
    from workbench.pipeline.results import Result, ResultSet, RunInfo
    from workbench.report.analysis import machine_line

    cross = [{"against": "teacher.fp32@ort/t1", "paired": True}, {"against": "a.fp32@ort/t1", "paired": False}]
    out = _across_nodes(cross, "n2", {"teacher.fp32@ort/t1": "n1", "a.fp32@ort/t1": "n2"})
    assert out[0]["paired"] is False and out[0]["nodes"] == ["n1", "n2"] and "different nodes" in out[0]["note"]
    assert out[1] == cross[1]  # same node: left as it was

    def rs(*recs):
        return ResultSet(run=RunInfo(), results=tuple(Result.from_json(r) for r in recs))

    x86, arm = "Xeon, 16 cores, x86_64", "Graviton, 8 cores, aarch64"
    assert machine_line(x86, rs({"id": "a", "machine": x86})) == x86  # the in-process executor: no nodes
    assert machine_line(x86, rs({"id": "a", "machine": x86, "node": "n1"})) == x86
    mixed = machine_line(x86, rs({"id": "a", "machine": x86, "node": "n1"}, {"id": "b", "machine": arm, "node": "n2"},
                                 {"id": "c", "machine": arm, "node": "n3"}))
    assert mixed.startswith("this run mixed machine types: ") and f"{arm} (2 records on 2 node(s))" in mixed
    two = machine_line(x86, rs({"id": "a", "machine": x86, "node": "n1"}, {"id": "b", "machine": x86, "node": "n2"}))
    assert two.startswith("measured on a cluster: ") and "unpaired" in two


class _Ref:
    def __init__(self, value):
        self.value = value


class _FakeRay:
    """Just enough of Ray to run the executor's scheduling in this process: each task runs when submitted."""

    class exceptions:  # noqa: N801  (ray.exceptions)
        RayError = RuntimeError

    def __init__(self):
        self.submitted = []

    def remote(self, fn):
        outer = self

        class Task:
            def options(self, **kw):
                self.kw = kw
                return self

            def remote(self, *args):
                outer.submitted.append((args[0], self.kw))
                return _Ref(fn(*args))

        return Task()

    def wait(self, refs, num_returns=1):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        return ref.value

    def cancel(self, ref):
        pass

    def get_runtime_context(self):
        from types import SimpleNamespace

        return SimpleNamespace(get_node_id=lambda: "fake-node")


def test_a_failed_unit_is_reported_with_its_node_and_the_rest_of_the_graph_goes_on(monkeypatch, tmp_path):
    import sys
    from types import SimpleNamespace

    from workbench.errors import OutputError
    from workbench.pipeline.executors.ray import _schedule, task_options
    from workbench.pipeline.executors.timing import NODE_ENV, UnitsFailed
    from workbench.pipeline.family import RunContext
    from workbench.pipeline.plan import Graph, Node
    from workbench.pipeline.units import UNITS

    def boom(ctx, job, inputs, progress=None):
        raise ValueError("boom")

    fake = _FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setenv(NODE_ENV, "")
    monkeypatch.setitem(UNITS._items, "t_ok", lambda ctx, job, inputs, progress=None: SimpleNamespace(job=job))
    monkeypatch.setitem(UNITS._items, "t_boom", boom)
    ctx = RunContext(str(tmp_path), "", None, "a" * 64, "f" * 16, "image-classification")
    g = Graph((Node("a", "t_ok", 1), Node("b", "t_boom", 2), Node("c", "t_ok", 3, ("b",)), Node("d", "t_ok", 4, ("a",))))
    lines = []
    with pytest.raises(UnitsFailed) as e:
        _schedule(fake, g, ctx, SimpleNamespace(info=lines.append))
    assert str(e.value).startswith("1 of 4 units failed (b on node fake-node: ValueError: boom); 1 unit(s)")
    assert any("failed b on node fake-node: ValueError: boom" in x for x in lines)
    assert [s[0] for s in fake.submitted] == ["t_ok", "t_boom", "t_ok"]  # c (needs b) never submitted; d ran
    units = json.loads((tmp_path / "units.json").read_text())
    assert [(u["id"], u["node"]) for u in units] == [("a", "fake-node"), ("b", "fake-node"), ("d", "fake-node")]
    assert task_options("measure_group") == {"num_cpus": 0, "resources": {"bench": 1}, "max_retries": 0}
    assert task_options("train_student")["num_cpus"] == 1 and task_options("memory_profile")["resources"]
    # a unit whose file the driver cannot see: the run directory is not shared
    monkeypatch.setitem(UNITS._items, "t_ok", lambda ctx, job, inputs, progress=None:
                        SimpleNamespace(artifact=SimpleNamespace(path="artifacts/x.onnx")))
    with pytest.raises(OutputError, match="must be on storage shared by all nodes"):
        _schedule(fake, Graph((Node("a", "t_ok", 1),)), ctx, None)


# -- the cluster ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        c.add_node(num_cpus=0, resources={"bench": 1})
        c.wait_for_nodes()
        yield c
    finally:
        if ray.is_initialized():
            ray.shutdown()
        c.shutdown()


def _records(path):
    doc = json.loads(path.read_text())
    return doc, {r["id"]: (r["artifact"]["sha256"], r["quality"]["value"], r["status"]) for r in doc["results"]}


@pytest.mark.cluster
@pytest.mark.slow
def test_ray_run_equals_local_run_measures_only_on_the_bench_node(cluster, tmp_path):
    from workbench.pipeline.executors import executor_for
    from workbench.pipeline.runner import run
    from workbench.progress import Progress

    recipe = recipe_from_dict(TINY)
    quiet = Progress(quiet=True)
    local = run(recipe, tmp_path / "local", command="pytest local", progress=quiet)
    on_ray = run(recipe, tmp_path / "ray", command="pytest ray", progress=quiet,
                 executor=executor_for("ray", cluster.address))
    doc_l, rec_l = _records(local)
    doc_r, rec_r = _records(on_ray)
    assert rec_l == rec_r and len(rec_l) == 4  # same ids, same artifact bytes, same metric values
    assert all(status == "ok" for _, _, status in rec_r.values())

    import ray

    ray.init(address=cluster.address)
    try:
        bench = {n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("bench")}
        cpu = {n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU")}
    finally:
        ray.shutdown()
    units = json.loads((tmp_path / "ray" / "units.json").read_text())
    assert {u["id"] for u in units} == {u["id"] for u in json.loads((tmp_path / "local" / "units.json").read_text())}
    meas = [u for u in units if u["unit"] in ("measure_group", "memory_profile")]
    assert len([u for u in meas if u["unit"] == "measure_group"]) == 2  # group_size 3: two sub-groups
    assert meas and {u["node"] for u in meas} == bench  # measurement units only on the bench node
    assert {u["node"] for u in units if u not in meas} == cpu  # everything else on the CPU node
    spans = sorted((u["start"], u["end"]) for u in meas)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))  # never two at once
    # the teacher-output cache is a unit of its own: filled once, before the KD training, which only reads it
    (fill,) = [u for u in units if u["unit"] == "teacher_outputs"]
    kd = next(u for u in units if u["id"] == "train:a.full.kd.s0")
    (npy,) = (tmp_path / "ray").glob("cache/teacher-logits-*.npy")
    assert fill["cached"] is False
    assert fill["start"] - 0.05 <= npy.stat().st_mtime_ns / 1e9 <= fill["end"] <= kd["start"]
    # each record names the node and machine that measured it
    node = next(iter(bench))
    assert all(r["node"] == node and r["environment"]["cpu_model"] for r in doc_r["results"])
    assert all("node" not in r for r in doc_l["results"])  # the in-process executor names no nodes

    # a local re-run of the ray run's directory recomputes nothing
    again = run(recipe, tmp_path / "ray", command="pytest again", progress=quiet)
    redo = json.loads((tmp_path / "ray" / "units.json").read_text())
    assert {u["id"] for u in redo} == {u["id"] for u in units}
    assert [u["id"] for u in redo if not u["cached"]] == []
    assert _records(again)[1] == rec_r
