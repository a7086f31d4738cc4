"""--mlflow: log results.json to a REAL `mlflow server` (SQLite backend, loopback), started and stopped here.

The server runs once per module (start-up takes a few seconds); every test that needs it logs into
its own experiment so tests do not see each other's runs.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from workbench.errors import ArtifactError, TrackingError, WorkbenchError

pytestmark = pytest.mark.mlflow

HERE = Path(__file__).parent
FIXTURE = HERE / "data" / "results_fixture.json"
# fail in seconds when nobody listens (MLflow's defaults retry for minutes)
FAST = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """http://127.0.0.1:PORT of a fresh `mlflow server`; terminated (with its workers) at teardown."""
    pytest.importorskip("mlflow", reason="install the mlflow extra: pip install -c constraints.txt -e '.[mlflow]'")
    pytest.importorskip("sqlalchemy", reason="mlflow server needs sqlalchemy: install the mlflow extra")
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no background job runner: 2 cores
    log = open(root / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True)  # its own process group: teardown stops uvicorn too
    try:
        deadline = time.monotonic() + 90
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (root / "server.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"mlflow server did not start (exit {proc.poll()}):\n{tail}")
            time.sleep(0.25)
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        log.close()


@pytest.fixture()
def fast_fail(monkeypatch):
    for k, v in FAST.items():
        monkeypatch.setenv(k, v)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run directory as `workbench run` leaves it: results.json + report.md + report.html."""
    from workbench.report import write_reports

    d = tmp_path_factory.mktemp("run")
    shutil.copy(FIXTURE, d / "results.json")
    write_reports(d / "results.json")
    return d


@pytest.fixture(scope="module")
def logged(server, run_dir):
    """(client, experiment name, run ids) after logging the fixture once."""
    from mlflow.tracking import MlflowClient

    from workbench.report.tracking import log_to_mlflow

    ids = log_to_mlflow(run_dir / "results.json", server, experiment="fixture")
    return MlflowClient(tracking_uri=server), "fixture", ids


def _by_name(client, exp_name, parent_id):
    exp = client.get_experiment_by_name(exp_name)
    runs = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'", max_results=1000)
    return {r.info.run_name: r for r in runs}


# ------------------------------------------------------------------ against the real server
@pytest.mark.slow
def test_parent_run_holds_recipe_counts_and_reports(logged, run_dir):
    client, exp_name, ids = logged
    assert len(ids) == 1 + 19 and len(set(ids)) == 20
    parent = client.get_run(ids[0])
    assert parent.info.run_name == "demo" and parent.info.status == "FINISHED"
    assert parent.info.experiment_id == client.get_experiment_by_name(exp_name).experiment_id
    assert "mlflow.parentRunId" not in parent.data.tags
    tags, params, metrics = parent.data.tags, parent.data.params, parent.data.metrics
    assert tags["workbench.run_id"] == "demo" and tags["workbench.version"] == "0.1.0"
    assert tags["workbench.status"] == "partial" and tags["workbench.kind"] == "run"
    assert params["recipe.distill.temperature"] == "4.0" and params["recipe.threads"] == "[1,2]"
    assert params["machine"].startswith("AMD EPYC 7B13")
    assert metrics["records"] == 19 and metrics["records_failed"] == 1 and metrics["variants"] == 10
    names = {f.path for f in client.list_artifacts(ids[0])}
    assert names == {"results.json", "report.md", "report.html"}
    got = Path(client.download_artifacts(ids[0], "report.md", dst_path=str(run_dir.parent / "dl")))
    assert got.read_text(encoding="utf-8") == (run_dir / "report.md").read_text(encoding="utf-8")


@pytest.mark.slow
def test_one_child_run_per_record_with_params_and_metrics(logged):
    client, exp_name, ids = logged
    children = _by_name(client, exp_name, ids[0])
    assert len(children) == 19 and {r.info.run_id for r in children.values()} == set(ids[1:])

    ref = children["teacher.fp32@ort/t1"]
    p, m, t = ref.data.params, ref.data.metrics, ref.data.tags
    assert ref.info.status == "FINISHED" and t["workbench.status"] == "ok" and t["workbench.run_id"] == "demo"
    assert (p["variant"], p["role"], p["family"], p["runtime"], p["threads"]) == (
        "teacher.fp32", "teacher", "teacher", "ort", "1")
    assert p["lineage"] == "teacher zoo:digits-resnet > export(onnx, opset 18)"
    assert p["lineage.2"] == "export(onnx, opset 18)" and p["precision"] == "fp32"
    assert p["recipe.distill.alpha"] == "0.9" and "machine" in p
    assert m["accuracy"] == pytest.approx(0.9944)
    assert (m["accuracy_ci95_lo"], m["accuracy_ci95_hi"]) == pytest.approx((0.98, 0.9985))
    assert m["latency_median_ms"] == pytest.approx(1.525)
    assert m["latency_median_ci95_lo_ms"] < m["latency_median_ms"] < m["latency_median_ci95_hi_ms"]
    assert m["latency_p90_ms"] > m["latency_median_ms"]
    assert m["ratio_to_reference"] == 1.0 and m["pareto"] == 1.0
    assert m["peak_memory_mb"] == pytest.approx(20.9) and m["artifact_size_mb"] == pytest.approx(6.33)
    assert m["load_ms"] == pytest.approx(27.0)

    dyn = children["teacher.int8-dynamic@ort/t1"]
    assert dyn.data.metrics["ratio_to_reference"] == pytest.approx(1.9338)
    assert (dyn.data.metrics["ratio_to_reference_ci95_lo"],
            dyn.data.metrics["ratio_to_reference_ci95_hi"]) == pytest.approx((1.9174, 1.9554))
    assert dyn.data.tags["workbench.verdict"] == "slower"
    assert len(dyn.data.params["lineage"].split(" > ")) == 3

    # filtering the way a team would browse: one runtime, one thread count
    exp = client.get_experiment_by_name(exp_name)
    t2 = client.search_runs([exp.experiment_id], "params.runtime = 'ort' and params.threads = '2'")
    assert len(t2) == 9


@pytest.mark.slow
def test_failed_record_is_a_failed_run_with_its_error(logged):
    client, exp_name, ids = logged
    failed = _by_name(client, exp_name, ids[0])["student.cnn-m.kd.int8-dynamic@ort/t1"]
    assert failed.info.status == "FAILED"
    assert failed.data.tags["workbench.status"] == "failed"
    assert "SIGSEGV" in failed.data.tags["workbench.error"]
    assert "latency_median_ms" not in failed.data.metrics and "accuracy" not in failed.data.metrics
    assert failed.data.params["variant"] == "student.cnn-m.kd.int8-dynamic"


@pytest.mark.slow
def test_relogging_makes_new_runs_found_by_the_workbench_run_id(server, run_dir):
    from mlflow.tracking import MlflowClient

    from workbench.report.tracking import log_to_mlflow

    first = log_to_mlflow(run_dir, server, experiment="relog")
    second = log_to_mlflow(run_dir, server, experiment="relog")
    assert not set(first) & set(second)
    client = MlflowClient(tracking_uri=server)
    exp = client.get_experiment_by_name("relog")
    parents = client.search_runs([exp.experiment_id],
                                 "tags.`workbench.run_id` = 'demo' and tags.`workbench.kind` = 'run'")
    assert {r.info.run_id for r in parents} == {first[0], second[0]}
    assert len({r.data.tags["workbench.results_sha256"] for r in parents}) == 1


@pytest.mark.slow
def test_default_experiment_is_the_recipe_name(server, tmp_path):
    import json

    from mlflow.tracking import MlflowClient

    from workbench.report.tracking import log_to_mlflow

    doc = json.loads(FIXTURE.read_text(encoding="utf-8"))
    doc["run"]["recipe"]["name"] = "recipe-named"
    doc["results"] = doc["results"][:2]
    (tmp_path / "results.json").write_text(json.dumps(doc), encoding="utf-8")
    ids = log_to_mlflow(tmp_path / "results.json", server)  # no report files: only results.json is logged
    client = MlflowClient(tracking_uri=server)
    run = client.get_run(ids[0])
    assert run.info.experiment_id == client.get_experiment_by_name("recipe-named").experiment_id
    assert {f.path for f in client.list_artifacts(ids[0])} == {"results.json"}


@pytest.mark.slow
def test_a_failure_midway_marks_the_parent_failed_and_says_how_far_it_got(server, run_dir, monkeypatch):
    from mlflow.tracking import MlflowClient

    from workbench.report.tracking import log_to_mlflow

    def broken(self, run_id, local_path, artifact_path=None):
        raise ConnectionError("connection reset by peer")

    monkeypatch.setattr(MlflowClient, "log_artifact", broken)
    with pytest.raises(TrackingError) as e:
        log_to_mlflow(run_dir, server, experiment="midway")
    msg = str(e.value)
    assert "\n" not in msg and "after 20 of 20 runs" in msg and "connection reset by peer" in msg
    client = MlflowClient(tracking_uri=server)
    exp = client.get_experiment_by_name("midway")
    parent = client.search_runs([exp.experiment_id], "tags.`workbench.kind` = 'run'")[0]
    assert parent.info.status == "FAILED" and "connection reset" in parent.data.tags["workbench.log_error"]


# ------------------------------------------------------------------ errors (no server)
def test_unreachable_server_is_one_line_and_quick(fast_fail):
    pytest.importorskip("mlflow")
    from workbench.report.tracking import log_to_mlflow

    uri = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(TrackingError) as e:
        log_to_mlflow(FIXTURE, uri)
    assert time.monotonic() - t0 < 15
    msg = str(e.value)
    assert "\n" not in msg and uri in msg and "mlflow server" in msg and "refused" in msg.lower()
    assert isinstance(e.value, WorkbenchError) and e.value.exit_code == 2


def test_unreachable_server_fails_in_seconds_with_mlflow_defaults(monkeypatch):
    """Without the user's own retry settings, the first request still gives up in seconds."""
    pytest.importorskip("mlflow")
    from workbench.report.tracking import log_to_mlflow

    for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"):
        monkeypatch.delenv(k, raising=False)
    t0 = time.monotonic()
    with pytest.raises(TrackingError, match="cannot reach the MLflow tracking server"):
        log_to_mlflow(FIXTURE, f"http://127.0.0.1:{_free_port()}")
    assert time.monotonic() - t0 < 20
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ  # the temporary defaults are gone again


def test_missing_mlflow_names_the_install_command(monkeypatch):
    from workbench.report.tracking import log_to_mlflow

    for name in [m for m in sys.modules if m == "mlflow" or m.startswith("mlflow.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` now raises ImportError
    with pytest.raises(TrackingError) as e:
        log_to_mlflow(FIXTURE, "http://127.0.0.1:5000")
    msg = str(e.value)
    assert "\n" not in msg and "pip install" in msg and ".[mlflow]" in msg


def test_unreadable_results_is_an_artifact_error(tmp_path):
    pytest.importorskip("mlflow")
    from workbench.report.tracking import log_to_mlflow

    with pytest.raises(ArtifactError, match="results file not found"):
        log_to_mlflow(tmp_path / "nope.json", "http://127.0.0.1:5000")


# ------------------------------------------------------------------ the plan (no MLflow needed)
def test_plan_flattens_the_recipe_and_keeps_keys_and_values_within_mlflow_limits():
    import json

    from workbench.report.tracking import _MAX_PARAM, plan_runs

    doc = json.loads(FIXTURE.read_text(encoding="utf-8"))
    doc["run"]["recipe"]["notes"] = {"why: (odd) key!": "x" * 10_000}
    parent, children = plan_runs(doc)
    assert len(children) == len(doc["results"])
    odd = [k for k in parent.params if k.startswith("recipe.notes.")]
    assert odd == ["recipe.notes.why_ _odd_ key_"]
    assert len(parent.params[odd[0]]) == _MAX_PARAM and parent.params[odd[0]].endswith("...")
    for plan in [parent, *children]:
        assert all(isinstance(v, str) for v in [*plan.params.values(), *plan.tags.values()])
        assert all(isinstance(v, float) for v in plan.metrics.values())
        assert all(len(k) <= 250 for k in [*plan.params, *plan.metrics, *plan.tags])


def test_importing_workbench_tracking_does_not_import_mlflow():
    code = "import sys, workbench.report.tracking, workbench.cli; print('mlflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------ the CLI
@pytest.mark.slow
def test_cli_report_logs_to_mlflow(server, run_dir, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    from workbench.cli import main

    assert main(["report", str(run_dir / "results.json"), "--out", str(tmp_path), "--mlflow", server,
                 "--mlflow-experiment", "cli"]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("mlflow:")]
    assert line and "19 runs under parent run" in line[0]
    exp = MlflowClient(tracking_uri=server).get_experiment_by_name("cli")
    assert exp is not None and len(MlflowClient(tracking_uri=server).search_runs([exp.experiment_id])) == 20


def test_cli_unreachable_mlflow_is_one_line_and_exit_2(fast_fail, tmp_path, capsys):
    from workbench.cli import main

    shutil.copy(FIXTURE, tmp_path / "results.json")
    assert main(["report", str(tmp_path / "results.json"), "--mlflow", f"http://127.0.0.1:{_free_port()}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach the MLflow tracking server" in err[0]
    assert (tmp_path / "report.html").is_file()  # the reports were written before logging failed
