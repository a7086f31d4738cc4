import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from workbench.errors import ExportError, ParityError, QuantizationError
from workbench.export import export_onnx, onnx_parity
from workbench.quantize import METHODS


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_cnn, digits):
    path = tmp_path_factory.mktemp("exp") / "tiny.onnx"
    diff = export_onnx(tiny_cnn, digits.x_test[:1], path, check_inputs=digits.x_test[:16])
    return path, diff


def _run(path, x):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so).run(None, {"input": x})[0]


def test_export_has_parity_and_dynamic_batch(exported, tiny_cnn, digits):
    path, diff = exported
    assert diff < 1e-4
    out = _run(path, digits.x_test[:7])  # batch 7 although exported with batch 1
    with torch.inference_mode():
        ref = tiny_cnn(torch.from_numpy(digits.x_test[:7])).numpy()
    assert out.shape == (7, 10) and np.allclose(out, ref, atol=1e-4)
    assert len(list(path.parent.glob("*.data"))) == 0  # single file, no external data


def test_parity_error_names_the_difference(exported, digits):
    path, _ = exported
    other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32 * 32, 10))
    with pytest.raises(ParityError, match=r"max \|diff\| = [0-9.e+-]+ \(tolerance 0.0001\)") as e:
        onnx_parity(other, path, digits.x_test[:4], atol=1e-4, what="tiny.onnx")
    assert e.value.max_abs_diff > 1e-4
    # atol=None only reports
    assert onnx_parity(other, path, digits.x_test[:4], atol=None) > 1e-4


def test_export_failure_is_an_export_error(tmp_path, digits):
    class Bad(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.eigvals(x[0, 0]).real  # no ONNX operator for this

    with pytest.raises(ExportError, match="torch.onnx.export failed for bad.onnx") as e:
        export_onnx(Bad(), digits.x_test[:1], tmp_path / "bad.onnx")
    assert "\x1b" not in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "bad.onnx").exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("method, expect_op", [("static", "QuantizeLinear"), ("dynamic", "ConvInteger"), ("fp16", "Cast")])
def test_quantization_methods(tmp_path, exported, digits, method, expect_op):
    src, _ = exported
    dst = tmp_path / f"q.{method}.onnx"
    calls = []
    METHODS.get(method).apply(src, dst, calib=digits.x_train[:32], progress=calls.append)
    ops = {n.op_type for n in onnx.load(str(dst)).graph.node}
    assert expect_op in ops
    out = _run(dst, digits.x_test[:16])
    ref = _run(src, digits.x_test[:16])
    assert out.shape == ref.shape and out.dtype == np.float32
    assert np.abs(out - ref).max() < 0.5 * np.abs(ref).max() + 1e-3  # close to fp32, not garbage
    if method == "static":
        assert calls and calls[-1] == 1.0  # calibration progress reached the end
        inits = {i.name: i for i in onnx.load(str(dst)).graph.initializer}
        assert any(i.data_type == onnx.TensorProto.INT8 for i in inits.values())


def test_static_without_calibration_and_bad_source(tmp_path, exported):
    src, _ = exported
    with pytest.raises(QuantizationError, match="needs calibration data"):
        METHODS.get("static").apply(src, tmp_path / "x.onnx", calib=None)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not a model")
    with pytest.raises(QuantizationError, match="dynamic quantization of corrupt.onnx failed"):
        METHODS.get("dynamic").apply(corrupt, tmp_path / "y.onnx")
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "y.onnx").exists()
