"""`workbench bench` on models a user brings: task inputs, generated inputs, comparisons, bad input."""
import json

import numpy as np
import pytest

from workbench.cli import main
from workbench.measure import Protocol

from test_inputs import transformer_like  # tests/ is on sys.path (rootdir conftest, prepend mode)

SHORT = Protocol(warmup_runs=2, warmup_s=0.02, min_runs=10, min_s=0.1, max_s=0.3, memory_runs=3)
VERDICTS = ("faster", "slower", "equivalent", "inconclusive")


@pytest.fixture(autouse=True)
def short_protocol(monkeypatch):
    monkeypatch.setattr("workbench.pipeline.bench.default_protocol", lambda max_s=None: SHORT)


@pytest.fixture(scope="module")
def cnn(tmp_path_factory, tiny_cnn, digits):
    from workbench.export import export_onnx

    path = tmp_path_factory.mktemp("cnn") / "cnn.onnx"
    export_onnx(tiny_cnn, digits.x_test[:1], path)
    return str(path)


@pytest.fixture(scope="module")
def tx(tmp_path_factory):
    d = tmp_path_factory.mktemp("tx")
    return transformer_like(d / "tx_a.onnx"), transformer_like(d / "tx_b.onnx")


def test_bench_with_task_inputs(cnn, tmp_path, capsys, digits):
    out = tmp_path / "bench.json"
    assert main(["bench", cnn, "--task", "digits", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "task digits: test split example 0" in printed and "median and p90 with 95% CIs" in printed
    row = json.loads(out.read_text())["results"][0]
    assert row["status"] == "ok" and row["latency"]["n"] >= SHORT.min_runs
    assert row["input"]["source"].startswith("task digits: test split example 0")
    assert row["input"]["shapes"] == {"input": [1, 1, 32, 32]} and row["memory"]["runs"] == SHORT.memory_runs


def test_bench_two_models_prints_ratio_and_verdict(tx, tmp_path, capsys):
    out = tmp_path / "pair.json"
    a, b = tx
    rc = main(["bench", a, b, "--shape", "sequence=16", "--rounds", "2", "--max-rounds", "2", "--json", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "vs tx_a.onnx" in printed and "ratio" in printed and "tx_b.onnx (1 thread(s)): ratio" in printed
    assert any(f"-> {v}" in printed for v in VERDICTS)
    assert "dim 'batch' -> 1" in printed  # the default that was assumed is said
    rows = json.loads(out.read_text())["results"]
    c = rows[1]["comparisons"][0]
    assert c["against"] == a and c["verdict"] in VERDICTS and len(c["ci95"]) == 2
    assert rows[0]["input"]["shapes"] == {"input_ids": [1, 16], "attention_mask": [1, 16]}
    assert rows[0]["input"]["source"] == ("generated: input_ids int64 token ids in [0, 500) (vocab from Gather "
                                          "'emb.weight'); attention_mask int64 ones")


def _bad(argv, capsys, *needles):
    rc = main(argv)
    cap = capsys.readouterr()
    assert rc == 2, (cap.out, cap.err)
    lines = [ln for ln in cap.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), cap.err
    for n in needles:
        assert n in lines[0], lines[0]
    assert "measuring" not in cap.out  # checked before anything is measured
    return lines[0]


def test_bad_inputs_are_one_line_exit_2(cnn, tx, tmp_path, capsys):
    out = tmp_path / "never.json"
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x01garbage")
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, input=np.zeros((1, 3, 32), np.float32))
    both = ["--json", str(out)]
    _bad(["bench", cnn, "--runtime", "nope", *both], capsys, "unknown runtime 'nope'", "available: executorch, litert, ort, ort-mobile")
    _bad(["bench", str(tmp_path / "missing.onnx"), *both], capsys, "missing.onnx not found")
    _bad(["bench", str(corrupt), *both], capsys, "cannot read corrupt.onnx")
    _bad(["bench", cnn, "--shape", "input=1xAx3", *both], capsys,
         "--shape expects NAME=DIMxDIM..., got 'input=1xAx3'")
    _bad(["bench", cnn, "--shape", "bogus=3", *both], capsys, "--shape bogus=... names neither", "input [batch, 1, 32, 32]")
    _bad(["bench", cnn, "--shape", "input=1x3x32x32", *both], capsys, "only symbolic dims can change")
    _bad(["bench", cnn, "--threads", "0", *both], capsys, "--threads")
    _bad(["bench", cnn, "--threads", "a", *both], capsys, "--threads")
    _bad(["bench", cnn, "--rounds", "0", *both], capsys, "--rounds")
    _bad(["bench", cnn, "--inputs", str(wrong), *both], capsys, "'input'", "[1, 3, 32]", "[batch, 1, 32, 32]")
    _bad(["bench", cnn, "--inputs", str(tmp_path / "none.npz"), *both], capsys, "none.npz not found")
    _bad(["bench", cnn, "--inputs", str(wrong), "--task", "digits", *both], capsys, "pass one of them")
    _bad(["bench", cnn, "--task", "nope", *both], capsys, "unknown task 'nope'")
    _bad(["bench", tx[0], "--task", "digits", *both], capsys, "tx_a.onnx has 2 inputs")
    _bad(["bench", cnn, "--json", "/proc/workbench-bench/out.json"], capsys, "cannot write --json")
    _bad(["bench", cnn, "--json", str(tmp_path)], capsys, "is a folder")
    assert not out.exists() and not list(tmp_path.glob(".*tmp"))


def test_bench_models_python_api_rejects_bad_shapes(cnn):
    from workbench.pipeline.bench import bench_models
    from workbench.errors import RecipeError

    with pytest.raises(RecipeError, match="--shape expects"):
        bench_models([cnn], "ort", [1], None, None, protocol=SHORT, shapes=["x=1x"])
