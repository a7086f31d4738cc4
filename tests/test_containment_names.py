"""Names that become paths can't escape the run directory, and one run at a time writes into a directory.

Issue 13: a student named ``../../escaped-student`` wrote its .kd/.labels ONNX files beside the run
directory; a recipe ``name = "../../x"`` sent the whole run there; two runs into one directory both redid
all the work.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from workbench.cli import main
from workbench.errors import OutputError, RecipeError
from workbench.fileio import check_name, inside
from workbench.pipeline.rundir import RunDir
from workbench.pipeline.runlock import RunLock, read_holder

STUDENT = '[[students]]\nname = "{name}"\narch = "cnn"\nwidth = 4\ndepth = 1\n'


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _recipe(folder, name="tiny", student="s", extra=""):
    p = folder / "recipes" / "r.toml"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(f'name = "{name}"\n' + STUDENT.format(name=student) + extra)
    return p


@pytest.mark.parametrize("name", ["../../escaped-student", "a/b", "/abs", "..", ".hidden", "a..b", "x" * 65, "sp ace",
                                  "", "nul\x00"])
def test_unsafe_names_are_refused(name):
    with pytest.raises(RecipeError) as e:
        check_name(name, "student name")
    msg = str(e.value)
    assert "\n" not in msg and "student name" in msg and "A-Z a-z 0-9 . _ -" in msg


@pytest.mark.parametrize("name", ["cnn-s", "digits_v2.1", "a", "A9", "x" * 64])
def test_safe_names_pass(name):
    assert check_name(name, "student name") == name


@pytest.mark.parametrize("field, toml_name", [("student", "../../escaped-student"), ("recipe", "../../x"),
                                               ("recipe", "/tmp/wb-abs-run")])
def test_cli_refuses_traversal_names_and_writes_nothing(tmp_path, monkeypatch, capsys, field, toml_name):
    """Traversal student / recipe names: exit 2, one line, nothing outside the folder and no run directory."""
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    recipe = _recipe(work, **({"student": toml_name} if field == "student" else {"name": toml_name}))
    monkeypatch.chdir(work)
    before = _tree(tmp_path)
    args = ["run", str(recipe)] + (["--out", str(work / "runs" / "demo")] if field == "student" else [])
    for extra in ([], ["--dry-run"]):
        t0 = time.perf_counter()
        assert main(args + extra) == 2
        took = time.perf_counter() - t0
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"{field} name" in err and "cannot be used in a file name" in err, err
        assert took < 10, took
        assert _tree(tmp_path) == before  # nothing inside, nothing beside or above
    assert not os.path.exists("/tmp/wb-abs-run")


def test_rundir_joins_stay_inside(tmp_path):
    """Even a name that slipped past the recipe (a Recipe built in code) cannot leave the run directory."""
    rd = RunDir(tmp_path / "run")
    with pytest.raises(OutputError, match="outside"):
        rd.path("artifacts", "../../escaped-student.kd.fp32.onnx")
    with pytest.raises(OutputError, match="outside"):
        rd.unit("train", "../../../escaped", "k")
    with pytest.raises(OutputError, match="outside"):
        rd.artifact("../../escaped-student.kd.fp32", "k", lambda p: pytest.fail("must not be called"))
    with pytest.raises(OutputError, match="outside"):
        inside(tmp_path / "run", "/etc/passwd")
    assert rd.path("artifacts", "cnn-s.kd.fp32.onnx") == tmp_path / "run" / "artifacts" / "cnn-s.kd.fp32.onnx"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


# --------------------------------------------------------------------------- one run per directory

def test_second_run_into_a_locked_directory_exits_2(tmp_path, monkeypatch, capsys):
    """The test process holds the lock (as a running `workbench run` would); a run into the same directory
    exits 2 naming the holder's pid, and writes nothing there."""
    out = tmp_path / "runs" / "demo"
    recipe = _recipe(tmp_path, extra='[distill]\nregimes = ["full"]\nseeds = [0]\n')
    rd = RunDir(out)
    with rd.lock("workbench run demo.toml"):
        before = _tree(out)
        import workbench.zoo  # noqa: F401  (torch: imported by any recipe with students; not what is timed)

        t0 = time.perf_counter()
        assert main(["run", str(recipe), "--out", str(out), "--quiet"]) == 2
        assert time.perf_counter() - t0 < 2  # said at once, before the task and the teacher are loaded
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0, err
        assert f"is in use by pid {os.getpid()} (workbench run, started " in err and "--out" in err, err
        assert _tree(out) == before  # no recipe.toml, no inputs: the second run wrote nothing
        assert read_holder(out)["pid"] == os.getpid()
    assert not (out / ".lock").exists()  # released: the file is gone


def test_check_free_creates_nothing(tmp_path):
    from workbench.pipeline.runlock import check_free

    check_free(tmp_path / "not-yet")  # no directory: free, and still no directory
    assert not (tmp_path / "not-yet").exists()
    with RunLock(tmp_path, "workbench run x"):
        with pytest.raises(OutputError, match=f"in use by pid {os.getpid()} "):
            check_free(tmp_path)
    check_free(tmp_path)


def test_wait_blocks_until_the_holder_releases(tmp_path):
    notes = []
    first = RunLock(tmp_path, "workbench run a")
    first.acquire()
    threading.Timer(0.5, first.release).start()
    t0 = time.perf_counter()
    with RunLock(tmp_path, "workbench run b", wait=True, note=notes.append):
        assert time.perf_counter() - t0 >= 0.4
        assert read_holder(tmp_path)["command"] == "workbench run b"
    assert len(notes) == 1 and "waiting" in notes[0] and f"pid {os.getpid()}" in notes[0]


def test_stale_lock_from_a_dead_pid_is_taken_over(tmp_path):
    """A run killed with SIGKILL leaves its .lock behind; the next run takes it over and says so."""
    code = ("import sys, time; from workbench.pipeline.runlock import RunLock; "
            "RunLock(sys.argv[1], 'workbench run killed').acquire(); print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(OutputError, match=f"in use by pid {proc.pid} "):
        RunLock(tmp_path).acquire()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == proc.pid  # left behind
    notes = []
    with RunLock(tmp_path, "workbench run next", note=notes.append) as lock:
        assert lock.took_over["pid"] == proc.pid
        assert read_holder(tmp_path)["pid"] == os.getpid()
    assert len(notes) == 1 and f"pid {proc.pid} (workbench run" in notes[0] and "no longer running" in notes[0]
    assert not (tmp_path / ".lock").exists()
