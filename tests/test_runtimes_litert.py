"""LiteRT: .tflite export (fp32, int8 dynamic-range, int8 full-integer), the adapter, harness, accuracy, bad input.

Tolerances: fp32 |diff| <= 1e-4 + 1e-3*|ref| against PyTorch; int8 by top-1 agreement (>= 95%
on 128 test digits) with the max |diff| recorded.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert", reason="install the litert extra: pip install -e '.[litert]'")
pytest.importorskip("litert_torch", reason="install the litert extra: pip install -e '.[litert]'")
pytestmark = pytest.mark.litert

from workbench.errors import ArtifactError, ExportError, RuntimeUnavailable  # noqa: E402
from conftest import tiny_protocol  # noqa: E402
from workbench.measure import measure_interleaved  # noqa: E402
from workbench.runtimes import InputSpec, get_runtime  # noqa: E402
from workbench.runtimes.litert import LiteRTRuntime  # noqa: E402

TINY = tiny_protocol()
PRECISIONS = ("fp32", "int8-dynamic", "int8-full")


@pytest.fixture(scope="module")
def trained(trained_cnn):
    return trained_cnn


@pytest.fixture(scope="module")
def tflite(tmp_path_factory, trained, digits):
    from workbench.export.litert import export_litert

    d = tmp_path_factory.mktemp("litert")
    return {p: export_litert(trained, digits.x_test[:1], d / f"m.{p}.tflite", precision=p,
                             calibration=digits.x_val[:128], check_inputs=digits.x_test[:128],
                             min_top1=None if p == "fp32" else 0.95)
            for p in PRECISIONS}


@pytest.mark.slow
def test_export_three_precisions_with_parity(tflite):
    fp32 = tflite["fp32"]
    assert fp32.parity.max_abs < 1e-4 and fp32.parity.top1_agreement == 1.0 and fp32.parity.n == 128
    for p in ("int8-dynamic", "int8-full"):
        r = tflite[p]
        assert r.parity.top1_agreement >= 0.95 and r.size_bytes < fp32.size_bytes and r.quantizer
        assert json.dumps(r.to_json())


@pytest.mark.slow
def test_adapter_specs_batches_and_quantized_io(tflite, digits, trained):
    import torch

    for p in PRECISIONS:
        sess = get_runtime("litert").load(tflite[p].path, 1)
        assert sess.input_specs() == [InputSpec("input", (1, 1, 32, 32), "float32")]
        assert sess.options()["num_threads"] == 1
    assert "int8 in the model" in sess.options()["io"]  # full integer: the session (de)quantizes
    x = digits.x_test[:4]
    with torch.inference_mode():
        ref = trained(torch.from_numpy(x)).numpy()
    out = get_runtime("litert").load(tflite["fp32"].path, 2).run({"input": x})[0]
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-3)


@pytest.mark.slow
def test_accuracy_through_the_runtime(tflite, digits, trained):
    import torch

    from workbench.evaluate import evaluate_accuracy

    x, y = digits.x_test[:200], digits.y_test[:200]
    with torch.inference_mode():
        ref = float((trained(torch.from_numpy(x)).argmax(1).numpy() == y).mean())
    acc = {p: evaluate_accuracy(tflite[p].path, "litert", x, y, "input")[0].value for p in PRECISIONS}
    assert acc["fp32"] == pytest.approx(ref) and ref > 0.5
    assert abs(acc["int8-dynamic"] - ref) <= 0.05 and abs(acc["int8-full"] - ref) <= 0.05


@pytest.mark.slow
def test_measured_through_the_harness(tflite):
    paths = [tflite["fp32"].path, tflite["int8-full"].path]
    for threads in (1, 2):
        for m in measure_interleaved(paths, "litert", threads, None, TINY, rounds=1):
            assert m.runtime == "litert" and m.runtime_options["num_threads"] == threads
            assert m.stats.n >= TINY.min_runs and 0 < m.stats.median < 100


@pytest.mark.slow
def test_bench_cli_with_runtime_litert(tflite, tmp_path, capsys, monkeypatch):
    from workbench.cli import main

    monkeypatch.setattr("workbench.pipeline.bench.default_protocol", lambda max_s=None: TINY)
    out = tmp_path / "bench.json"
    rc = main(["bench", tflite["fp32"].path, "--runtime", "litert", "--task", "digits", "--json", str(out)])
    assert rc == 0, capsys.readouterr().out
    row = json.loads(out.read_text())["results"][0]
    assert row["status"] == "ok" and row["runtime"]["name"] == "litert" and row["latency"]["median"] > 0


def test_bad_files_raise_one_line_artifact_errors(tmp_path):
    rt = LiteRTRuntime()
    with pytest.raises(ArtifactError, match="no such file"):
        rt.load(str(tmp_path / "missing.tflite"), 1)
    bad = tmp_path / "corrupt.tflite"
    bad.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"garbage" * 20)  # right identifier, broken body
    with pytest.raises(ArtifactError) as e:
        rt.load(str(bad), 1)
    assert str(e.value).startswith("cannot load corrupt.tflite with LiteRT: ") and "\n" not in str(e.value)
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer")
    with pytest.raises(ArtifactError, match="TFL3"):
        rt.load(str(junk), 1)
    with pytest.raises(ArtifactError, match=r"\.tflite files"):
        rt.load(str(bad.with_suffix(".onnx").write_bytes(b"x") and bad.with_suffix(".onnx")), 1)


def test_export_errors_are_clear_and_write_nothing(trained, digits, tmp_path):
    from workbench.export.litert import export_litert

    with pytest.raises(ExportError, match="needs calibration inputs"):
        export_litert(trained, digits.x_test[:1], tmp_path / "q.tflite", precision="int8-full")
    with pytest.raises(ExportError, match="unknown LiteRT precision"):
        export_litert(trained, digits.x_test[:1], tmp_path / "q.tflite", precision="fp16")
    with pytest.raises(ExportError, match=r"end in \.tflite"):
        export_litert(trained, digits.x_test[:1], tmp_path / "q.lite")
    assert list(tmp_path.iterdir()) == []


def test_missing_runtime_names_the_install_command(monkeypatch, trained, digits, tmp_path):
    from workbench.export.litert import export_litert

    monkeypatch.setattr(LiteRTRuntime, "available", lambda self: False)
    with pytest.raises(RuntimeUnavailable, match=r'pip install .*\.\[litert\]'):
        get_runtime("litert")
    with pytest.raises(RuntimeUnavailable, match=r"\.\[litert\]"):
        export_litert(trained, digits.x_test[:1], tmp_path / "m.tflite")
    assert list(tmp_path.iterdir()) == []
