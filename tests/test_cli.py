"""The command line: help is fast, errors are one line with exit code 2, nothing half-written."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.cli import main

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "results_fixture.json"


def _wb(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_help_does_not_import_heavy_modules():
    code = ("import sys; from workbench.cli import main; rc = main(['--help']); "
            "print([m for m in ('torch', 'onnxruntime', 'onnx', 'scipy', 'plotly') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().endswith("[]"), out.stdout
    assert "run" in out.stdout and "bench" in out.stdout


def _one_line_error(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr  # one line, last, no traceback
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n in errors[0]


def test_unknown_recipe_key(tmp_path):
    bad = tmp_path / "r.toml"
    bad.write_text('bogus = 1\n[[students]]\nname = "s"\n')
    _one_line_error(_wb("run", str(bad), "--out", str(tmp_path / "out")), "unknown recipe key 'bogus'", "valid keys")
    assert not (tmp_path / "out").exists()


def test_missing_recipe_file(tmp_path):
    _one_line_error(_wb("run", str(tmp_path / "nope.toml")), "not found")


def test_unknown_option_is_exit_2():
    proc = _wb("run", "--bogus")
    assert proc.returncode == 2 and "No such option" in proc.stderr


def test_corrupt_onnx(tmp_path):
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"\x08\x01garbage")
    _one_line_error(_wb("bench", str(bad)), "corrupt.onnx")
    _one_line_error(_wb("bench", str(tmp_path / "missing.onnx")), "not found")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; covered by the /proc case")
def test_unwritable_out_dir_permissions(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    _one_line_error(_wb("run", "--quick", "--out", str(ro / "x")), "cannot write")


def test_unwritable_out_dir(tmp_path):
    _one_line_error(_wb("run", "--quick", "--out", "/proc/workbench-out"), "cannot write", "--out")


def test_missing_teacher_weights(tmp_path):
    r = tmp_path / "r.toml"
    r.write_text('[teacher]\nweights = "nowhere.safetensors"\n[[students]]\nname = "s"\nwidth = 4\ndepth = 1\n')
    out = tmp_path / "out"
    _one_line_error(_wb("run", str(r), "--out", str(out)), "nowhere.safetensors", "not found")
    assert not out.exists()


def test_corrupt_teacher_weights(tmp_path):
    w = tmp_path / "t.safetensors"
    w.write_bytes(b"\x00" * 64)
    r = tmp_path / "r.toml"
    r.write_text(f'[teacher]\nweights = "{w}"\n[[students]]\nname = "s"\nwidth = 4\ndepth = 1\n')
    _one_line_error(_wb("run", str(r), "--out", str(tmp_path / "out")), "cannot read weights")


def test_dry_run_prints_plan(capsys):
    assert main(["run", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "[distill]" in out and "# plan: 36 training runs, 25 artifacts (ort 13, ort-mobile 4, executorch 4, litert 4), 38 measurements" in out


def test_report_rerenders_and_keeps_earlier_results(tmp_path, capsys):
    res = tmp_path / "results.json"
    res.write_text(FIXTURE.read_text())
    assert main(["report", str(res)]) == 0
    assert (tmp_path / "report.md").is_file() and (tmp_path / "report.html").is_file()
    md = (tmp_path / "report.md").read_text()
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert main(["report", str(broken)]) == 2
    assert (tmp_path / "report.md").read_text() == md


def test_doctor_lists_runtimes_and_isa(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "avx2=" in out and "onnxruntime" in out and "ort" in out


def test_bench_on_a_user_model(tmp_path, tiny_cnn, digits):
    from workbench.export import export_onnx
    from workbench.measure import Protocol
    from workbench.pipeline.bench import bench_models

    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    export_onnx(tiny_cnn, digits.x_test[:1], a)
    export_onnx(tiny_cnn, digits.x_test[:1], b)
    rows = bench_models([str(a), str(b)], "ort", [1], None, str(tmp_path / "bench.json"),
                        protocol=Protocol(warmup_runs=2, warmup_s=0.02, min_runs=10, min_s=0.1, max_s=0.3, memory_runs=3))
    assert len(rows) == 2 and rows[1]["comparisons"][0]["against"] == str(a)
    assert json.loads((tmp_path / "bench.json").read_text())["results"][0]["latency"]["n"] >= 10


def test_train_writes_weights_and_card(tmp_path, capsys):
    from workbench.artifact import sha256_file

    out = tmp_path / "m.safetensors"
    assert main(["train", "--arch", "cnn", "--steps", "3", "--out", str(out)]) == 0
    card = json.loads(out.with_suffix(".card.json").read_text())
    assert card["sha256"] == sha256_file(out) and card["seed"] == 0
    assert 0 <= card["metrics"]["test_accuracy"] <= 1 and "workbench train" in card["recipe"]["command"]
    assert main(["train", "--arch", "cnn", "--steps", "3", "--out", str(tmp_path / "m.pt")]) == 2
    assert main(["train", "--arch", "vit", "--steps", "3", "--out", str(out)]) == 2
    assert "unknown architecture 'vit'" in capsys.readouterr().err


def test_committed_teacher_matches_its_card():
    from workbench.artifact import sha256_file

    card = json.loads((ROOT / "models" / "digits-resnet.card.json").read_text())
    assert sha256_file(ROOT / "models" / card["file"]) == card["sha256"]
    assert card["architecture"]["params"] >= 1_000_000 and card["metrics"]["test_accuracy"] >= 0.99
