"""Inputs real models have: a 0-d int64 sample rate, a recurrent state with its batch on axis 1, a fully
dynamic image input (guessed dims flagged), and a declared input too big for memory (refused, exit 2)."""
import json
import tracemalloc

import numpy as np
import pytest

from workbench.cli import main
from workbench.measure import Protocol

SHORT = Protocol(warmup_runs=2, warmup_s=0.02, min_runs=10, min_s=0.1, max_s=0.3, memory_runs=3)


@pytest.fixture(autouse=True)
def short_protocol(monkeypatch):
    monkeypatch.setattr("workbench.pipeline.bench.default_protocol", lambda max_s=None: SHORT)


def _save(nodes, inputs, outputs, inits, path):
    import onnx
    from onnx import helper

    model = helper.make_model(helper.make_graph(nodes, "m", inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def stateful_model(path, batch="batch"):
    """x [batch, 16], state [2, batch, 8], sr [] int64 -> y [batch, 4]: MatMul(x) + sum of the state over
    its first axis + sr * 1e-4, Relu, MatMul (an LSTM-like step without the recurrence)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 16]),
           helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, batch, 8]),
           helper.make_tensor_value_info("sr", TensorProto.INT64, [])]
    out = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])]
    inits = [numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "w2"),
             numpy_helper.from_array(np.array([0], dtype=np.int64), "ax0"),
             numpy_helper.from_array(np.array(1e-4, dtype=np.float32), "scale")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]),
             helper.make_node("ReduceSum", ["state", "ax0"], ["s"], keepdims=0),
             helper.make_node("Cast", ["sr"], ["srf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["srf", "scale"], ["srs"]),
             helper.make_node("Add", ["h", "s"], ["z"]),
             helper.make_node("Add", ["z", "srs"], ["z2"]),
             helper.make_node("Relu", ["z2"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"])]
    return _save(nodes, ins, out, inits, path)


def image_model(path, dims=(None, 3, None, None)):
    """x [?, 3, ?, ?] (or ``dims``) -> mean over the image of Relu(x): [?, 3]."""
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [dims[0], 3])
    axes = numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "axes")
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("ReduceMean", ["r", "axes"], ["y"], keepdims=0)]
    return _save(nodes, [x], [y], [axes], path)


@pytest.fixture(scope="module")
def stateful(tmp_path_factory):
    d = tmp_path_factory.mktemp("stateful")
    rng = np.random.default_rng(1)
    model = stateful_model(d / "stateful.onnx")
    np.savez(d / "inputs.npz", x=rng.standard_normal((1, 16)).astype(np.float32),
             state=rng.standard_normal((2, 1, 8)).astype(np.float32), sr=np.array(16000, dtype=np.int64))
    np.savez(d / "calib.npz", x=rng.standard_normal((48, 16)).astype(np.float32),
             state=rng.standard_normal((2, 48, 8)).astype(np.float32), sr=np.array(16000, dtype=np.int64))
    return model, str(d / "inputs.npz"), str(d / "calib.npz")


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# --------------------------------------------------------------------------- batch axes

def test_batch_axes_from_symbolic_dims():
    from workbench.measure.model_inputs import batch_axes
    from workbench.runtimes.base import InputSpec as S

    specs = [S("x", ("batch", 16), "float32"), S("state", (2, "batch", 8), "float32"), S("sr", (), "int64")]
    assert batch_axes(specs) == {"x": 0, "state": 1, "sr": None}
    # an exporter's names: the dim shared by every input with dynamic dims is the batch
    assert batch_axes([S("x", ("s0", 16), "float32"), S("h", (2, "s0", 8), "float32")]) == {"x": 0, "h": 1}
    # -1 / unnamed: the only dynamic dim; a dynamic first dim; nothing for fixed or size-only inputs
    assert batch_axes([S("h", (2, "?", 128), "float32")]) == {"h": 1}
    assert batch_axes([S("img", ("?", 3, "?", "?"), "float32")]) == {"img": 0}
    assert batch_axes([S("a", (1, 3, 32, 32), "float32"), S("t", ("sequence",), "int64")]) == {"a": None, "t": None}


# --------------------------------------------------------------------------- 0-d inputs in bench and the worker

def test_npz_with_0d_input_keeps_its_shape_in_the_worker(stateful, tmp_path):
    from workbench.measure.inputs import read_model_inputs, resolve_inputs, write_npz
    from workbench.measure.worker import make_feeds, read_inputs

    model, inputs, _ = stateful
    r = resolve_inputs(read_model_inputs(model), {}, inputs)
    assert r.feeds["sr"].shape == () and r.feeds["state"].shape == (2, 1, 8)
    path = write_npz(str(tmp_path / "in.npz"), r.feeds, r.sources)
    feeds, info = make_feeds(read_model_inputs(model).specs, read_inputs(path), path)
    assert feeds["sr"].shape == () and feeds["sr"].dtype == np.int64 and info["shapes"]["sr"] == []


def test_generated_0d_sample_rate(stateful):
    from workbench.measure.inputs import read_model_inputs, resolve_inputs

    r = resolve_inputs(read_model_inputs(stateful[0]), {})
    assert r.feeds["sr"].shape == () and int(r.feeds["sr"]) == 16000
    assert r.feeds["state"].shape == (2, 1, 8) and r.guessed == ()  # only the batch was defaulted


def test_bench_with_0d_int64_input(stateful, tmp_path, capsys):
    model, inputs, _ = stateful
    out = tmp_path / "bench.json"
    assert main(["bench", model, "--inputs", inputs, "--json", str(out)]) == 0
    row = json.loads(out.read_text())["results"][0]
    assert row["status"] == "ok", row.get("error")
    assert row["input"]["shapes"] == {"x": [1, 16], "state": [2, 1, 8], "sr": []}
    assert row["input_guessed"] == []


# --------------------------------------------------------------------------- calibration on each input's own axis

def test_calib_data_slices_each_input_on_its_axis(stateful):
    from workbench.measure.inputs import load_npz
    from workbench.quantize.calib_data import STACK, CalibReader, calibration_feeds

    model, _, calib = stateful
    data = calibration_feeds(model, load_npz(calib), "x", None)
    assert data.axes == {"x": 0, "state": 1, "sr": None} and data.n == 48
    reader = CalibReader(data, chunk=16)
    steps = list(iter(reader.get_next, None))
    assert len(steps) == 48 and len(reader) == 48
    assert all(f["x"].shape == (1, 16) and f["state"].shape == (2, 1, 8) and f["sr"].shape == () for f in steps)
    assert np.array_equal(steps[5]["state"][:, 0], np.load(calib)["state"][:, 5])
    assert all(int(f["sr"]) == 16000 for f in steps)  # fed as is on every step
    few = calibration_feeds(model, data, "x", 4)  # evenly spaced, on each input's own axis
    assert few.n == 4 and few["state"].shape == (2, 4, 8) and few["sr"].shape == ()
    # sr saved with one value per sample: one row a step; the axis given explicitly
    stacked = calibration_feeds(model, {**load_npz(calib), "sr": np.full(48, 8000)}, "x", None,
                                axes={"state": 1})
    assert stacked.axes["sr"] == STACK and stacked.sample(3)["sr"].shape == ()


def test_calib_mismatch_is_one_clear_line(stateful):
    from workbench.errors import QuantizationError, RecipeError
    from workbench.measure.inputs import load_npz
    from workbench.quantize.calib_data import calibration_feeds, parse_calib_axes

    model, _, calib = stateful
    data = load_npz(calib)
    with pytest.raises(QuantizationError, match=r"'state' has shape \[2, 48, 8\].*--calib-axis state="):
        calibration_feeds(model, data, "x", None, axes={"state": 0})
    with pytest.raises(QuantizationError, match="same number"):
        calibration_feeds(model, {**data, "x": data["x"][:10]}, "x", None)
    with pytest.raises(RecipeError, match="NAME=AXIS"):
        parse_calib_axes(["state"])
    assert parse_calib_axes(["state=1", "sr=none"]) == {"state": 1, "sr": None}


def test_static_quantize_with_calib_detects_and_takes_the_axis(stateful, tmp_path, capsys):
    import onnxruntime as ort

    model, inputs, calib = stateful
    for extra, name in (([], "auto-axis"), (["--calib-axis", "state=1", "--calib-axis", "sr=none"], "given")):
        out = tmp_path / f"{name}.onnx"
        assert main(["quantize", model, "--method", "static", "--calib", calib, "--no-measure", "--out", str(out),
                     *extra]) == 0
        printed = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
        assert "state [2, 48, 8] samples on axis 1" in printed and "sr [] fed as is on every step" in printed
        feeds = dict(np.load(inputs))
        y = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
        assert y.shape == (1, 4) and np.isfinite(y).all()
        assert any(n.op_type == "QuantizeLinear" for n in __import__("onnx").load(str(out)).graph.node)
    assert main(["quantize", model, "--method", "static", "--calib", calib, "--no-measure",
                 "--out", str(tmp_path / "bad.onnx"), "--calib-axis", "state=0"]) == 2
    assert "--calib-axis state=" in _one_line_error(capsys) and not (tmp_path / "bad.onnx").exists()


def test_generated_calibration_puts_samples_on_the_batch_axis(stateful):
    from workbench.measure.inputs import read_model_inputs
    from workbench.quantize.calib_data import generated_calib

    data = generated_calib(read_model_inputs(stateful[0]).specs, [], 8, "m")
    assert data.n == 8 and data["state"].shape == (2, 8, 8) and data["x"].shape == (8, 16)
    assert data["sr"].shape == () and data.sample(0)["state"].shape == (2, 1, 8)


# --------------------------------------------------------------------------- guessed dims

def test_dynamic_image_dims_guessed_224_and_flagged(tmp_path, capsys):
    from workbench.measure.inputs import read_model_inputs, resolve_inputs

    model = image_model(tmp_path / "det.onnx")
    r = resolve_inputs(read_model_inputs(model), {})
    assert r.feeds["x"].shape == (1, 3, 224, 224)
    assert [g.to_json()["fix"] for g in r.guessed] == ["--shape x=1x3x224x224"]
    assert resolve_inputs(read_model_inputs(model), {"x": (1, 3, 64, 64)}).guessed == ()
    out = tmp_path / "bench.json"
    assert main(["bench", model, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    table = printed[printed.index("latency in ms"):]
    assert "det.onnx ⚠" in table and "⚠ dims guessed: x 1x3x224x224" in table and "--shape x=1x3x224x224" in table
    guess = json.loads(out.read_text())["results"][0]["input_guessed"]
    assert guess[0]["input"] == "x" and guess[0]["shape"] == [1, 3, 224, 224] and guess[0]["guessed_axes"] == [2, 3]


# --------------------------------------------------------------------------- the size guard

def test_huge_declared_input_exit_2_one_line_nothing_allocated(tmp_path, capsys):
    model = image_model(tmp_path / "huge.onnx", (1, 3, 100000, 100000))
    tracemalloc.start()
    try:
        rc = main(["bench", model])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rc == 2 and peak < 64 * 2 ** 20
    err = _one_line_error(capsys)
    assert "'x' [1, 3, 100000, 100000] float32" in err and "GiB" in err and "--shape x=" in err


def test_size_guard_share_and_npz_headers(tmp_path, monkeypatch, capsys):
    import zipfile

    from numpy.lib import format as npf

    from workbench.errors import ArtifactError
    from workbench.measure.inputs import load_npz

    model = image_model(tmp_path / "det.onnx")
    monkeypatch.setattr("workbench.measure.sizing.available_bytes", lambda: 64 * 2 ** 20)  # 64 MiB free: 16 MiB allowed
    assert main(["bench", model, "--shape", "x=1x3x2048x2048"]) == 2  # 48 MiB
    assert "give a smaller shape with --shape x=" in _one_line_error(capsys)
    monkeypatch.setenv("WORKBENCH_INPUT_MEMORY_SHARE", "90%")
    from workbench.measure.sizing import too_big

    assert too_big((1, 3, 2048, 2048), "float32") is None
    monkeypatch.setenv("WORKBENCH_INPUT_MEMORY_SHARE", "lots")
    assert main(["bench", model]) == 2 and "WORKBENCH_INPUT_MEMORY_SHARE" in _one_line_error(capsys)
    monkeypatch.delenv("WORKBENCH_INPUT_MEMORY_SHARE")
    # an .npz whose header declares a huge array (no data behind it): refused from the header alone
    fake = tmp_path / "fake.npz"
    with zipfile.ZipFile(fake, "w") as zf, zf.open("x.npy", "w") as f:
        npf.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (1, 3, 100000, 100000)})
    with pytest.raises(ArtifactError, match=r"array in fake.npz 'x' \[1, 3, 100000, 100000\]"):
        load_npz(str(fake))


def test_fidelity_on_a_0d_measurement_input(stateful):
    from pathlib import Path

    from workbench.measure.inputs import read_model_inputs
    from workbench.quantize.evaldata import plan_data

    model, inputs, _ = stateful
    feeds = dict(np.load(inputs))
    plan = plan_data(Path(model), list(read_model_inputs(model).specs), None, calib_random=True, random_samples=8,
                     measurement_feeds=lambda: feeds)
    assert plan.calib.axes == {"x": 0, "state": 1, "sr": None} and plan.calib["state"].shape == (2, 8, 8)
    value, per_sample = plan.eval_fn(model)  # fp32 judged against itself, one sample on each input's own axis
    assert len(per_sample) == 1 and value == pytest.approx(1.0)


@pytest.mark.slow
def test_auto_with_0d_and_state_inputs(stateful, tmp_path, capsys):
    model, _, calib = stateful
    out = tmp_path / "auto.onnx"
    assert main(["quantize", model, "--method", "auto", "--calib", calib, "--rounds", "1", "--max-s", "0.2",
                 "--out", str(out), "--json", str(tmp_path / "auto.json")]) == 0
    doc = json.loads((tmp_path / "auto.json").read_text())
    assert "sr [] fed as is" in doc["calibration"] and out.is_file()
    assert any(c["spec"].startswith("static") and c.get("error") is None for c in doc["auto"]["candidates"])
