"""Every recipe and CLI value is checked before anything is written (issue 13, item 4), and reports refuse
records that claim success without the numbers they print.

Each bad value below used to crash with a traceback, or exit 2 only after 10-47 s of work, leaving a
half-made run directory; ``threads = [100000]`` ran for minutes and ``bench --threads 100000`` segfaulted.
"""
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from workbench.cli import main

DATA = Path(__file__).parent / "data"

BAD = [  # (recipe TOML, the key the one-line error must name)
    ('[[students]]\nname = "s"\narch = "cnn"\nwidth = -4\n', "student 's' width = -4"),
    ('[[students]]\nname = "s"\narch = "cnn"\nwidth = "wide"\n', "student 's' width = 'wide'"),
    ('[distill]\nlr = -0.1\n', "[distill] lr = -0.1"),
    ('[distill]\nweight_decay = -1\n', "[distill] weight_decay = -1"),
    ('[export]\nparity_samples = 0\n', "[export] parity_samples = 0"),
    ('[measure]\ntimeout_s = -1\n', "[measure] timeout_s = -1"),
    ('[measure]\nwarmup_runs = -5\n', "[measure] warmup_runs = -5"),
    ('[export]\nparity_atol = -1\n', "[export] parity_atol = -1"),
    ('[measure]\nthreads = [100000]\n', "[measure] threads must be positive integers up to"),
    ('[mobile]\nthreads = [0]\n', "[mobile] threads must be positive integers up to"),
    ('[distill]\nlr = nan\n', "[distill] lr = nan"),
    ('[distill]\nregimes = ["full", 5]\n', "[distill] regimes must list strings"),
    ('[measure]\nmemory_runs = 0\n', "[measure] memory_runs = 0"),
]
STUDENT = '[[students]]\nname = "s"\narch = "cnn"\nwidth = 4\ndepth = 1\n'


def _write(folder: Path, body: str) -> Path:
    p = folder / "bad.toml"
    p.write_text('name = "bad"\n' + ("" if "[[students]]" in body else STUDENT) + body)
    return p


@pytest.fixture(autouse=True)
def _torch_imported():
    """Validation is timed, not the first import of torch (the student checks need the architectures)."""
    import workbench.zoo  # noqa: F401


@pytest.mark.parametrize("body, key", BAD, ids=[k for _, k in BAD])
def test_bad_value_exits_2_naming_the_key_before_any_work(tmp_path, monkeypatch, capsys, body, key):
    monkeypatch.chdir(tmp_path)
    recipe = _write(tmp_path, body)
    for extra in (["--dry-run"], [], ["--out", "runs/elsewhere"]):
        t0 = time.perf_counter()
        assert main(["run", str(recipe), "--quiet", *extra]) == 2
        took = time.perf_counter() - t0
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err, err
        assert key in err, err
        assert "not allowed; use" in err or "must" in err, err
        assert took < 2, took
        assert not (tmp_path / "runs").exists()  # no run directory, not even an empty one


def test_few_label_count_beyond_the_split_fails_after_the_task_loads_before_the_run_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    recipe = _write(tmp_path, '[distill]\nregimes = ["full", "few-500"]\n')
    for extra in (["--dry-run"], []):
        assert main(["run", str(recipe), "--quiet", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "[distill] regime 'few-500' asks for 500 labelled examples per class" in err, err
        assert "use few-N with N <=" in err
        assert not (tmp_path / "runs").exists()


def test_threads_above_the_cores_are_allowed_with_a_note(tmp_path, monkeypatch, capsys):
    cores = os.cpu_count() or 1
    monkeypatch.chdir(tmp_path)
    recipe = _write(tmp_path, f'[distill]\nregimes = ["full"]\n[measure]\nthreads = [1, {cores + 1}]\n')
    assert main(["run", str(recipe), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert f"[measure] threads {cores + 1} is more than this machine's {cores} cores" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("threads", ["100000", "0", "1,-2"])
def test_bench_refuses_absurd_thread_counts(tmp_path, capsys, tiny_cnn, threads):
    """`bench --threads 100000` segfaulted the runtime and blamed the generated inputs."""
    import torch

    model = tmp_path / "m.onnx"
    torch.onnx.export(tiny_cnn, (torch.zeros(1, 1, 32, 32),), str(model), dynamo=False, input_names=["x"])
    assert main(["bench", str(model), "--threads", threads, "--json", str(tmp_path / "b.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--threads must be positive integers up to" in err, err
    assert not (tmp_path / "b.json").exists()


# --------------------------------------------------------------------------- reports refuse hollow successes

@pytest.mark.parametrize("damage, field", [(lambda r: r.pop("latency"), "latency.median"),
                                           (lambda r: r.__setitem__("latency", None), "latency.median"),
                                           (lambda r: r["latency"].pop("median"), "latency.median"),
                                           (lambda r: r["latency"].__setitem__("p90", "fast"), "latency.p90")])
def test_report_refuses_a_success_record_without_its_numbers(tmp_path, capsys, damage, field):
    doc = json.loads((DATA / "results_fixture.json").read_text())
    i, rec = next((i, r) for i, r in enumerate(doc["results"]) if r["status"] == "ok")
    damage(rec)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(doc))
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    assert f"results[{i}] ({rec['id']}) has status 'ok' but {field} is" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]  # no report written


def test_report_still_renders_the_intact_fixture(tmp_path, capsys):
    shutil.copy(DATA / "results_fixture.json", tmp_path / "results.json")
    assert main(["report", str(tmp_path / "results.json")]) == 0
    assert (tmp_path / "report.md").is_file()


@pytest.mark.parametrize("spec, key", [("zoo:cnn?width=-4", "cnn width = -4"), ("zoo:cnn?width=wide", "cnn width = 'wide'")])
def test_distill_student_spec_options_are_checked_before_training(tmp_path, capsys, spec, key):
    """A student spec's options reach the architecture only after the same check as recipe students."""
    out = tmp_path / "d"
    assert main(["distill", "--teacher", "zoo:digits-resnet", "--student", spec, "--task", "digits",
                 "--epochs", "1", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and key in err and "use an integer >= 1" in err, err
    assert not out.exists()
