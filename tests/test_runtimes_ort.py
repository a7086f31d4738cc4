"""The runtime registry and the ONNX Runtime adapter, on tiny models built here."""
from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from workbench.errors import ArtifactError, RecipeError, RuntimeUnavailable
from workbench.runtimes import RUNTIMES, InputSpec, Runtime, get_runtime
from workbench.runtimes.ort import OrtRuntime

W = np.arange(16 * 8, dtype=np.float32).reshape(16, 8) / 100


def tiny_model(path):
    """y = x @ W + 1 with a symbolic batch dim, plus an int64 input that is passed through."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])
    ids_out = helper.make_tensor_value_info("ids_out", TensorProto.INT64, [3])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "one"], ["y"]),
             helper.make_node("Identity", ["ids"], ["ids_out"])]
    inits = [helper.make_tensor("w", TensorProto.FLOAT, W.shape, W.ravel()),
             helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])]
    model = helper.make_model(helper.make_graph(nodes, "tiny", [x, ids], [y, ids_out], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def test_importing_workbench_runtimes_and_measure_is_light():
    code = ("import sys, workbench.runtimes, workbench.measure; "
            "print(sorted(m for m in ('onnxruntime', 'torch', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_registry_has_ort_and_explains_unknown_names():
    assert "ort" in RUNTIMES
    rt = get_runtime("ort")
    assert isinstance(rt, Runtime) and rt.name == "ort" and "onnx" in rt.formats and "ort" in rt.formats
    assert rt.available()
    assert rt.version() == importlib.metadata.version("onnxruntime")
    with pytest.raises(RecipeError, match="available: .*ort"):
        get_runtime("ort-gpu")


def test_unavailable_runtime_raises_with_install_hint(monkeypatch):
    monkeypatch.setattr(OrtRuntime, "available", lambda self: False)
    with pytest.raises(RuntimeUnavailable, match="pip install onnxruntime"):
        get_runtime("ort")


def test_load_run_and_options(tmp_path):
    path = tiny_model(tmp_path / "tiny.onnx")
    sess = OrtRuntime().load(path, threads=2)
    specs = sess.input_specs()
    assert specs == [InputSpec("x", ("batch", 16), "float32"), InputSpec("ids", (3,), "int64")]
    x = np.random.default_rng(0).standard_normal((4, 16)).astype(np.float32)
    ids = np.array([1, 2, 3], dtype=np.int64)
    y, ids_out = sess.run({"x": x, "ids": ids})
    np.testing.assert_allclose(y, x @ W + 1, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ids_out, ids)
    opts = sess.options()
    assert opts["threads"] == 2 and opts["intra_op_num_threads"] == 2 and opts["inter_op_num_threads"] == 1
    assert opts["execution_mode"] == "ORT_SEQUENTIAL" and opts["graph_optimization_level"] == "ORT_ENABLE_ALL"
    assert "spin" in opts["intra_op_allow_spinning"] and opts["model_format"] == "onnx"
    assert opts["providers"] == ["CPUExecutionProvider"]
    assert OrtRuntime.session_options_dict(1)["threads"] == 1


def test_loads_ort_format(tmp_path):
    import onnxruntime as ort

    src = tiny_model(tmp_path / "tiny.onnx")
    dst = tmp_path / "tiny.ort"
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(dst)
    so.add_session_config_entry("session.save_model_format", "ORT")
    ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
    assert dst.is_file()
    sess = OrtRuntime().load(str(dst), threads=1)
    x = np.ones((2, 16), dtype=np.float32)
    y, _ = sess.run({"x": x, "ids": np.zeros(3, dtype=np.int64)})
    np.testing.assert_allclose(y, x @ W + 1, rtol=1e-5)
    assert sess.options()["model_format"] == "ort"


def test_bad_files_raise_artifact_error_in_one_line(tmp_path):
    rt = OrtRuntime()
    with pytest.raises(ArtifactError, match="no such file"):
        rt.load(str(tmp_path / "missing.onnx"), 1)
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x08\x07this is not a protobuf\n\n at all")
    with pytest.raises(ArtifactError) as e:
        rt.load(str(bad), 1)
    msg = str(e.value)
    assert msg.startswith("cannot load model.onnx with onnxruntime: ") and "\n" not in msg and "re-export" in msg
    other = tmp_path / "model.pte"
    other.write_bytes(b"x")
    with pytest.raises(ArtifactError, match=r"\.onnx or \.ort"):
        rt.load(str(other), 1)


def test_profile_counts_kernels_per_op_type_and_cleans_up(tmp_path, monkeypatch):
    import tempfile

    path = tiny_model(tmp_path / "tiny.onnx")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    feeds = {"x": np.ones((2, 16), dtype=np.float32), "ids": np.zeros(3, dtype=np.int64)}
    ops = OrtRuntime().profile(path, 1, feeds, runs=5)
    kinds = {o["op_type"]: o for o in ops}
    assert set(kinds) in ({"MatMul", "Add", "Identity"}, {"Gemm", "Identity"})  # a later ORT may fuse to Gemm
    assert all(o["count"] == 1 and o["time_ms"] > 0 for o in ops)
    assert list(scratch.iterdir()) == []  # the profiler's JSON trace is removed


def test_parse_profile_skips_the_first_run(tmp_path):
    import json

    from workbench.runtimes.ort import parse_profile

    def node(ts, dur, op):
        return {"cat": "Node", "name": f"n{ts}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}

    events = [{"cat": "Session", "name": "model_run", "ts": 0, "dur": 100}, node(1, 90, "Conv"),
              {"cat": "Session", "name": "model_run", "ts": 200, "dur": 100}, node(201, 30, "Conv"),
              node(240, 10, "Relu"), {"cat": "Node", "name": "n240_fence_before", "ts": 239, "dur": 5,
                                      "args": {"op_name": "Relu"}},
              {"cat": "Session", "name": "model_run", "ts": 400, "dur": 100}, node(401, 50, "Conv"),
              node(450, 10, "Relu"), node(900, 1000, "Conv")]  # outside any run: ignored
    trace = tmp_path / "trace.json"
    trace.write_text(json.dumps(events))
    ops = {o["op_type"]: o for o in parse_profile(str(trace), skip_runs=1)}
    assert ops["Conv"] == {"op_type": "Conv", "time_ms": 0.04, "count": 1}
    assert ops["Relu"] == {"op_type": "Relu", "time_ms": 0.01, "count": 1}


def test_runtimes_without_a_profiler_return_nothing():
    class Plain(Runtime):
        name = "plain"

        def load(self, path, threads):
            raise NotImplementedError

    assert Plain().profile("m.onnx", 1, {}, 10) == []
