"""ORT mobile format: .ort + .with_runtime_opt.ort + required_operators.config, the ort-mobile adapter.

Tolerance: fp32 |diff| <= 1e-4 + 1e-3*|ref| against PyTorch (and against the .onnx through ORT).
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytestmark = pytest.mark.ort_mobile

from workbench.errors import ArtifactError, ParityError, RuntimeUnavailable  # noqa: E402
from conftest import tiny_protocol  # noqa: E402
from workbench.measure import measure_interleaved  # noqa: E402
from workbench.runtimes import InputSpec, get_runtime  # noqa: E402
from workbench.runtimes.ort_mobile import OrtMobileRuntime  # noqa: E402

TINY = tiny_protocol(timeout_s=60)


@pytest.fixture(scope="module")
def converted(tmp_path_factory, tiny_cnn, digits):
    from workbench.export import export_onnx
    from workbench.export.ort_mobile import export_ort_mobile

    d = tmp_path_factory.mktemp("ortm")
    export_onnx(tiny_cnn, digits.x_test[:1], d / "cnn.onnx")
    return export_ort_mobile(d / "cnn.onnx", d / "mobile", check_feeds={"input": digits.x_test[:64]})


def test_writes_both_ort_files_and_the_operator_configs(converted):
    r = converted
    names = sorted(os.listdir(os.path.dirname(r.path)))
    assert names == ["cnn.ort", "cnn.required_operators.config", "cnn.required_operators.with_runtime_opt.config",
                     "cnn.with_runtime_opt.ort"]  # nothing temporary left behind
    assert r.size_bytes > 0 and r.runtime_opt_size_bytes > 0
    assert "com.microsoft;1;FusedConv" in r.operators  # Conv+Relu fused at conversion
    assert any(op.endswith(";Conv") for op in r.runtime_opt_operators)  # fused only at load (saved optimisation)
    text = open(r.required_operators_path).read()
    assert r.path in text and ".ort-convert." not in text  # the header names the final file
    assert r.parity_max_abs < 1e-4 and r.runtime_opt_parity_max_abs < 1e-4
    assert json.dumps(r.to_json())


def test_parity_against_pytorch_and_accuracy(converted, tiny_cnn, digits):
    import torch

    from workbench.evaluate import evaluate_accuracy

    x, y = digits.x_test[:200], digits.y_test[:200]
    with torch.inference_mode():
        ref = tiny_cnn(torch.from_numpy(x)).numpy()
    for path in (converted.path, converted.runtime_opt_path):
        q, logits = evaluate_accuracy(path, "ort-mobile", x, y, "input", threads=1)
        np.testing.assert_allclose(logits, ref, atol=1e-4, rtol=1e-3)
        assert q.value == pytest.approx(float((ref.argmax(1) == y).mean()))


def test_adapter_options_say_how_the_file_runs(converted):
    s = get_runtime("ort-mobile").load(converted.runtime_opt_path, 2)
    assert s.input_specs() == [InputSpec("input", ("batch", 1, 32, 32), "float32")]
    o = s.options()
    assert o["threads"] == 2 and o["model_format"] == "ort" and o["saved_runtime_optimizations"] == "replayed"
    assert get_runtime("ort-mobile").load(converted.path, 1).options()["saved_runtime_optimizations"] == "none in file"


def test_runtime_optimisations_are_replayed(converted, digits):
    feeds = {"input": digits.x_test[:1]}
    ops = {o["op_type"] for o in OrtMobileRuntime().profile(converted.runtime_opt_path, 1, feeds, runs=2)}
    assert "FusedConv" in ops and "Conv" not in ops


def test_measured_through_the_harness(converted):
    ms = measure_interleaved([converted.path, converted.runtime_opt_path], "ort-mobile", 1, None, TINY, rounds=1)
    for m in ms:
        assert m.runtime == "ort-mobile" and m.runtime_options["model_format"] == "ort"
        assert m.stats.n >= TINY.min_runs and 0 < m.stats.median < 100


def test_bad_input(tmp_path, converted):
    rt = OrtMobileRuntime()
    with pytest.raises(ArtifactError, match="no such file"):
        rt.load(str(tmp_path / "missing.ort"), 1)
    bad = tmp_path / "corrupt.ort"
    bad.write_bytes(b"\x00\x01 not an ORT flatbuffer" * 4)
    with pytest.raises(ArtifactError) as e:
        rt.load(str(bad), 1)
    assert str(e.value).startswith("cannot load corrupt.ort with ort-mobile: ") and "\n" not in str(e.value)
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"x")
    with pytest.raises(ArtifactError, match="use runtime 'ort' for .onnx"):
        rt.load(str(onnx_file), 1)


def test_convert_bad_onnx_writes_nothing(tmp_path):
    from workbench.export.ort_mobile import export_ort_mobile

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07not a protobuf")
    out = tmp_path / "out"
    with pytest.raises(ArtifactError, match="not a valid ONNX model"):
        export_ort_mobile(bad, out)
    assert list(out.iterdir()) == []
    with pytest.raises(ArtifactError, match="export the model to ONNX first"):
        export_ort_mobile(tmp_path / "missing.onnx", out)


def test_parity_failure_writes_nothing(converted, tmp_path, monkeypatch, digits):
    from workbench.export import ort_mobile
    from workbench.export.ort_mobile import export_ort_mobile

    onnx_path = os.path.join(os.path.dirname(os.path.dirname(converted.path)), "cnn.onnx")
    monkeypatch.setattr(ort_mobile, "_onnx_outputs", lambda path, feeds: [np.full((1, 10), 99.0, np.float32)])
    out = tmp_path / "out"
    with pytest.raises(ParityError):
        export_ort_mobile(onnx_path, out, check_feeds={"input": digits.x_test[:1]})
    assert list(out.iterdir()) == []


def test_missing_runtime_names_the_install_command(monkeypatch):
    monkeypatch.setattr(OrtMobileRuntime, "available", lambda self: False)
    with pytest.raises(RuntimeUnavailable, match="pip install onnxruntime"):
        get_runtime("ort-mobile")
