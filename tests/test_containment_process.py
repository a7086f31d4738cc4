"""Nothing outlives the command (issue 13, items 2 and 6): SIGTERM / SIGHUP on `workbench bench` kill the
measurement worker and end with one line; a worker whose parent is SIGKILLed ends by itself; temp files of
killed runs are removed by the next run (never a live run's); user code calling sys.exit() is one line, exit 2.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

psutil = pytest.importorskip("psutil")

WORKER = "workbench.measure.worker"


@pytest.fixture(scope="module")
def hanging_onnx(tmp_path_factory) -> Path:
    """A model whose first inference never ends: a Loop with a trip count of 2**62 (built with onnx.helper)."""
    import onnx
    from onnx import TensorProto as T
    from onnx import helper

    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["v_in", "one"], ["v_out"])],
        "body",
        [helper.make_tensor_value_info("i", T.INT64, []), helper.make_tensor_value_info("cond_in", T.BOOL, []),
         helper.make_tensor_value_info("v_in", T.FLOAT, [1])],
        [helper.make_tensor_value_info("cond_out", T.BOOL, []), helper.make_tensor_value_info("v_out", T.FLOAT, [1])],
        [helper.make_tensor("one", T.FLOAT, [1], [1.0])])
    graph = helper.make_graph(
        [helper.make_node("Loop", ["M", "cond", "x"], ["y"], body=body)], "hang",
        [helper.make_tensor_value_info("x", T.FLOAT, [1])], [helper.make_tensor_value_info("y", T.FLOAT, [1])],
        [helper.make_tensor("M", T.INT64, [], [2 ** 62]), helper.make_tensor("cond", T.BOOL, [], [True])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("hang") / "hang.onnx"
    onnx.save(model, path)
    return path


def _workers_of(pid: int, timeout_s: float = 90) -> list:
    """The measurement workers below ``pid``, once one has started and had a moment to reach the model."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            kids = psutil.Process(pid).children(recursive=True)
        except psutil.NoSuchProcess:
            break
        workers = [k for k in kids if WORKER in " ".join(_cmdline(k))]
        if workers:
            time.sleep(1.5)  # past imports and load: inside the endless first inference
            return psutil.Process(pid).children(recursive=True)
        time.sleep(0.2)
    pytest.fail(f"no measurement worker started under pid {pid} within {timeout_s} s")


def _cmdline(p) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def _alive(procs, wait_s: float = 2.0) -> list:
    end = time.monotonic() + wait_s
    while True:
        alive = []
        for p in procs:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > end:
            return alive
        time.sleep(0.1)


def _kill_all(procs) -> None:
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_signal_on_bench_kills_the_worker_and_says_so(hanging_onnx, tmp_path, sig, code):
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "bench", str(hanging_onnx)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    below = []
    try:
        below = _workers_of(proc.pid)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        left = _alive(below)
        _kill_all(left)
    assert proc.returncode == code
    assert not left, f"still running after {signal.Signals(sig).name}: {[(p.pid, _cmdline(p)) for p in left]}"
    lines = [ln for ln in err.decode().splitlines() if ln.strip()]
    assert lines == [f"terminated by {signal.Signals(sig).name}; workers and temp files cleaned up, finished steps "
                     "are kept and a re-run resumes from them"]
    assert not list(Path(tmp_path).iterdir())  # nothing written beside it


@pytest.mark.slow
def test_a_worker_ends_when_its_parent_is_killed_with_sigkill(hanging_onnx):
    code = ("import sys\nfrom workbench.measure import Protocol, measure_latency\n"
            "measure_latency(sys.argv[1], 'ort', 1, None, Protocol(timeout_s=600))\n")
    parent = subprocess.Popen([sys.executable, "-c", code, str(hanging_onnx)], stderr=subprocess.DEVNULL)
    below = []
    try:
        below = _workers_of(parent.pid)
        parent.kill()  # SIGKILL: no handler, no finally: only the worker's own death signal can end it
        parent.wait()
        left = _alive(below)
    finally:
        if parent.poll() is None:
            parent.kill()
        _kill_all(_alive(below, 0))
    assert below and not left


CHILD = """
import sys, time
from workbench.measure.lifeline import die_with_parent
die_with_parent(int(sys.argv[1]), use_prctl=False, interval_s=0.2)
open(sys.argv[2], "w").close()
time.sleep(120)
"""
MIDDLE = """
import subprocess, sys, time
c = subprocess.Popen([sys.executable, "-c", sys.argv[1], str(__import__("os").getpid()), sys.argv[2]])
print(c.pid, flush=True)
time.sleep(120)
"""


def test_the_parent_watch_thread_ends_an_orphan_without_prctl(tmp_path):
    ready = tmp_path / "ready"
    middle = subprocess.Popen([sys.executable, "-c", MIDDLE, CHILD, str(ready)], stdout=subprocess.PIPE)
    child = None
    try:
        child = psutil.Process(int(middle.stdout.readline()))
        end = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < end:
            time.sleep(0.05)
        assert ready.exists()
        middle.kill()
        middle.wait()
        left = _alive([child], 3.0)
    finally:
        if middle.poll() is None:
            middle.kill()
        if child is not None:
            _kill_all(_alive([child], 0))
    assert not left


def test_sigterm_unwinds_like_ctrl_c(capsys):
    from workbench.fileio.containment import run_contained

    before = signal.getsignal(signal.SIGTERM)
    cleaned, stopped = [], []

    def command():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
            return 0
        finally:
            cleaned.append(True)  # a worker kill / temp folder removal in real code

    assert run_contained(command, on_stop=lambda: stopped.append(True)) == 143
    assert cleaned == [True] and stopped == [True]
    assert capsys.readouterr().err.startswith("terminated by SIGTERM; ")
    assert signal.getsignal(signal.SIGTERM) is before


# --------------------------------------------------------------------------- leftovers of killed runs

def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_temp_folders_of_dead_owners_are_removed_never_a_live_ones(tmp_path):
    from workbench.fileio.containment import sweep_temp_dirs, temp_prefix

    dead = _dead_pid()
    gone = tmp_path / f"workbench-auto-p{dead}-abc_123"
    mine = Path(os.fspath(tmp_path / (temp_prefix("auto") + "xyz")))
    other = tmp_path / "workbench-notes"  # untagged and new: could be anyone's
    unrelated = tmp_path / f"something-p{dead}-abc"
    for d in (gone, mine, other, unrelated):
        d.mkdir()
        (d / "model.onnx").write_bytes(b"x")
    assert sweep_temp_dirs(tmp_path) == [gone]
    assert mine.is_dir() and other.is_dir() and unrelated.is_dir() and not gone.exists()
    # a pid that is alive again, but for a process that started after the folder was last written: stale
    os.utime(mine, (1, 1))
    assert sweep_temp_dirs(tmp_path) == [mine]


def test_a_run_dir_drops_atomic_temp_files_of_killed_runs(tmp_path):
    from workbench.fileio import atomic_path
    from workbench.pipeline.rundir import RunDir

    notes = []
    RunDir(tmp_path / "run", notify=notes.append)
    dead = _dead_pid()
    gone = [tmp_path / "run" / "work" / f".u.abc.json.wb{dead}.k2j_x9aa.tmp",
            tmp_path / "run" / "artifacts" / f".m.onnx.wb{dead}.q1w2e3r4.tmp.onnx"]
    for p in gone:
        p.write_text("half")
    with atomic_path(tmp_path / "run" / "artifacts" / "live.onnx", suffix=".onnx") as live:
        live.write_text("being written")  # this process's own temp file: never touched
        assert f".wb{os.getpid()}." in live.name
        RunDir(tmp_path / "run", notify=notes.append)
        assert live.is_file()
    assert not any(p.exists() for p in gone)
    assert notes == [f"removed 2 temp file(s) left by a killed run in {tmp_path / 'run'}"]


# --------------------------------------------------------------------------- user code that exits

@pytest.mark.slow
def test_py_source_exiting_at_import_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    from workbench.cli import main

    (tmp_path / "quits.py").write_text("import sys\nsys.exit(5)\n\ndef make():\n    pass\n")
    monkeypatch.chdir(tmp_path)
    code = main(["distill", "--list-layers", "py:quits.py:make", "--task", "digits"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: py:quits.py:make exited with status 5 while being imported;")


@pytest.mark.parametrize("body,said", [
    ("pass\nsys.exit(5)", "exited with status 5 while being imported"),
    ("sys.exit(5)", "exited with status 5 while building the model"),
    ("sys.exit('no GPU here')", "exited with status 1 (no GPU here) while building the model"),
    ("raise KeyboardInterrupt", "raised KeyboardInterrupt while building the model"),
])
def test_py_factory_exiting_is_a_source_error(tmp_path, body, said):
    from workbench.errors import SourceError
    from workbench.zoo.sources import load_model

    (tmp_path / "fac.py").write_text(f"import sys\n\ndef make(num_classes=10):\n    {body}\n")
    with pytest.raises(SourceError) as e:
        load_model(f"py:{tmp_path / 'fac.py'}:make", num_classes=10, role="student")
    assert f"py:{tmp_path / 'fac.py'}:make {said};" in str(e.value)
