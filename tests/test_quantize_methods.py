"""Quantization methods with options, diagnostics, and `workbench quantize` on any ONNX file."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from workbench.cli import main
from workbench.errors import QuantizationError, RecipeError
from workbench.export import export_onnx
from workbench.quantize import METHODS, make_method, parse_method
from workbench.quantize.diagnose import (explain, graph_format, isa_summary, quantized_time_share,
                                         conversion_time_share)

NO_VNNI = {"avx2": True, "fma": True, "avx512f": False, "avx512_vnni": False, "avx_vnni": False, "amx_int8": False}
VNNI = {**NO_VNNI, "avx512f": True, "avx512_vnni": True}


# --------------------------------------------------------------------------- tiny models

@pytest.fixture(scope="module")
def cnn(tmp_path_factory, tiny_cnn, digits):
    path = tmp_path_factory.mktemp("qm") / "cnn.onnx"
    export_onnx(tiny_cnn, digits.x_test[:1], path)
    return path


def _mlp(path, d=64, h=64, o=16, inputs=1):
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal((d, h)) * 0.1).astype(np.float32), "W1"),
             numpy_helper.from_array((rng.standard_normal((h, o)) * 0.1).astype(np.float32), "W2")]
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"], name="mm1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "W2"], ["y"], name="mm2")]
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", d])]
    if inputs == 2:  # x = a + b
        nodes.insert(0, helper.make_node("Add", ["a", "b"], ["x"], name="add"))
        ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", d]) for n in ("a", "b")]
    g = helper.make_graph(nodes, "mlp", ins, [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", o])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    return _mlp(tmp_path_factory.mktemp("qm") / "mlp.onnx")


def _run(path, feeds):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def _close(src, dst, feeds, tol=0.25):
    ref, out = _run(src, feeds), _run(dst, feeds)
    assert out.shape == ref.shape and out.dtype == np.float32
    assert np.abs(out - ref).max() <= tol * np.abs(ref).max() + 1e-3, np.abs(out - ref).max()


# --------------------------------------------------------------------------- the method API

def test_registered_defaults_keep_todays_behaviour():
    s, d, f = METHODS.get("static"), METHODS.get("dynamic"), METHODS.get("fp16")
    assert s.describe == "quantize(ORT static QDQ int8: U8S8 per-channel, reduce_range, MinMax calibration)"
    assert d.describe == "quantize(ORT dynamic int8: uint8 weights, per-tensor)"
    assert f.describe == "quantize(fp16 weights and activations, fp32 I/O)"
    assert (s.precision, s.needs_calibration, d.needs_calibration, f.precision) == ("int8", True, False, "fp16")
    assert METHODS.get("int4").precision == "int4" and "int4" in METHODS.names()
    assert s.spec == "static" and s.changed == {}


def test_with_options_spec_key_round_trip():
    base = METHODS.get("static")
    m = base.with_options(calibration="percentile", per_channel="false", op_types="Conv,MatMul", calib_samples="64")
    assert base.options["calibration"] == "minmax"  # the registered one is untouched
    assert m.options["per_channel"] is False and m.options["op_types"] == ["Conv", "MatMul"]
    assert m.spec == "static?calib_samples=64&calibration=percentile&op_types=Conv,MatMul&per_channel=false"
    assert parse_method(m.spec) == m and parse_method(m.spec).key == m.key
    assert m.key != base.key and len(m.key) == 16
    assert make_method("static", calibration="percentile", per_channel=False, op_types=["Conv", "MatMul"],
                       calib_samples=64).key == m.key
    assert "Percentile calibration (99.999th) on 64 samples" in m.describe and "per-tensor" in m.describe
    assert make_method("int4", accuracy_level="4", block_size=64).describe == \
        "quantize(ORT int4 weight-only MatMulNBits: block 64, asymmetric, accuracy_level 4)"
    assert hash(m) == hash(parse_method(m.spec))


@pytest.mark.parametrize("name, opts, needle", [
    ("static", {"calibration": "kl"}, "use one of: minmax, entropy, percentile"),
    ("static", {"format": "qlinear"}, "use one of: qdq, qoperator"),
    ("static", {"per_channel": "maybe"}, "use true or false"),
    ("static", {"calib_samples": 0}, "a whole number >= 1 or none"),
    ("static", {"percentile": 50}, ">= 90 and <= 100"),
    ("static", {"activation_type": "s8", "weight_type": "u8"}, "not supported by ONNX Runtime"),
    ("static", {"op_types": "Conv,Foo"}, "op_types 'Foo' cannot be quantized statically; valid: Add"),
    ("static", {"calib": 3}, "has no option calib; valid: activation_type, calib_samples"),
    ("dynamic", {"weight_type": "int16"}, "use one of: u8, s8"),
    ("dynamic", {"op_types": "Relu"}, "cannot be quantized dynamically"),
    ("int4", {"block_size": 48}, "use one of: 16, 32, 64, 128, 256"),
    ("int4", {"accuracy_level": 7}, "use one of: 0, 1, 2, 3, 4 or none"),
    ("fp16", {"keep_io_types": "sometimes"}, "use true or false"),
    ("nope", {}, "unknown quantization method 'nope'; available: dynamic, fp16, int4, litert-dynamic, litert-full, optimum, pt2e, static"),
])
def test_option_validation_is_one_line(name, opts, needle):
    with pytest.raises(RecipeError) as e:
        make_method(name, **opts)
    assert needle in str(e.value) and "\n" not in str(e.value)


# --------------------------------------------------------------------------- every method / format

@pytest.mark.parametrize("opts, fmt, ops", [
    ({}, "qdq", {"QuantizeLinear", "DequantizeLinear"}),
    ({"calibration": "entropy"}, "qdq", {"QuantizeLinear"}),
    ({"calibration": "percentile", "percentile": 99.9}, "qdq", {"QuantizeLinear"}),
    ({"format": "qoperator"}, "qoperator", {"QLinearConv"}),
    ({"activation_type": "s8", "per_channel": False, "reduce_range": False}, "qdq", {"QuantizeLinear"}),
])
def test_static_variants(tmp_path, cnn, digits, opts, fmt, ops):
    dst = tmp_path / "q.onnx"
    calls = []
    m = make_method("static", calib_samples=24, **opts)
    m.apply(cnn, dst, digits.x_train[:100], progress=calls.append)
    g = graph_format(dst)
    assert g["format"] == fmt and ops <= set(g["ops"]), g
    assert g["weight_type"] == "int8"
    assert g["activation_type"] == ("int8" if opts.get("activation_type") == "s8" else "uint8")
    assert len(calls) == 24 and calls[-1] == 1.0  # calib_samples kept 24 of 100, one progress call each
    _close(cnn, dst, {"input": digits.x_test[:8]})


def test_reduce_range_shows_as_7_bit_weights(tmp_path, cnn, digits):
    METHODS.get("static").apply(cnn, tmp_path / "a.onnx", digits.x_train[:16])
    make_method("static", reduce_range=False).apply(cnn, tmp_path / "b.onnx", digits.x_train[:16])
    assert graph_format(tmp_path / "a.onnx")["weight_bits"] == 7
    assert graph_format(tmp_path / "b.onnx")["weight_bits"] == 8


def test_dynamic_fp16_int4(tmp_path, cnn, mlp, digits):
    d = tmp_path / "d.onnx"
    make_method("dynamic", per_channel=True, weight_type="s8").apply(cnn, d)
    g = graph_format(d)
    assert g["format"] == "dynamic" and g["ops"].get("ConvInteger") and g["weight_type"] == "int8"
    _close(cnn, d, {"input": digits.x_test[:8]})

    f = tmp_path / "f.onnx"
    METHODS.get("fp16").apply(cnn, f)
    assert graph_format(f)["format"] == "fp16" and graph_format(f)["weight_bytes"].get("float16")
    _close(cnn, f, {"input": digits.x_test[:8]}, tol=0.01)
    make_method("fp16", keep_io_types=False).apply(cnn, tmp_path / "f2.onnx")
    assert onnx.load(str(tmp_path / "f2.onnx")).graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT16

    x = np.random.default_rng(1).standard_normal((4, 64)).astype(np.float32)
    for opts in ({}, {"block_size": 16, "symmetric": True, "accuracy_level": 4}):
        q = tmp_path / "i4.onnx"
        make_method("int4", **opts).apply(mlp, q)
        g = graph_format(q)
        assert g["format"] == "int4" and g["ops"] == {"MatMulNBits": 2} and "int4 (packed)" in g["weight_bytes"]
        _close(mlp, q, {"x": x}, tol=0.15)
    with pytest.raises(QuantizationError, match="int4 found no MatMul with a constant 2-D weight in cnn.onnx .* "
                                                "for conv nets use --method static"):
        METHODS.get("int4").apply(cnn, tmp_path / "no.onnx")
    assert not (tmp_path / "no.onnx").exists()


def test_op_types_and_exclude_nodes(tmp_path, mlp):
    x = np.random.default_rng(2).standard_normal((32, 64)).astype(np.float32)
    q = tmp_path / "ex.onnx"
    make_method("dynamic", exclude_nodes="mm2").apply(mlp, q)
    assert graph_format(q)["ops"].get("MatMulInteger") == 1
    make_method("static", op_types="MatMul", exclude_nodes=["mm1"]).apply(mlp, q, x)
    assert {n.name for n in onnx.load(str(q)).graph.node if n.op_type == "MatMul"} >= {"mm1"}
    with pytest.raises(QuantizationError, match="exclude_nodes names 'nope', which is not a node of mlp.onnx; "
                                                "node names look like: mm1, mm2, relu"):
        make_method("dynamic", exclude_nodes="nope").apply(mlp, tmp_path / "x.onnx")


def test_multi_input_calibration_dict(tmp_path):
    src = _mlp(tmp_path / "two.onnx", inputs=2)
    rng = np.random.default_rng(3)
    calib = {"a": rng.standard_normal((20, 64)), "b": rng.standard_normal((20, 64))}  # float64: cast to the model's
    dst = tmp_path / "two.q.onnx"
    METHODS.get("static").apply(src, dst, calib)
    assert graph_format(dst)["format"] == "qdq"
    feeds = {k: v[:4].astype(np.float32) for k, v in calib.items()}
    _close(src, dst, feeds)
    with pytest.raises(QuantizationError, match=r"has 2 inputs \(a, b\); give calibration data as a dict"):
        METHODS.get("static").apply(src, dst, calib["a"])
    with pytest.raises(QuantizationError, match=r"calibration data has arrays \['a'\] but two.onnx has inputs \['a', 'b'\]"):
        METHODS.get("static").apply(src, dst, {"a": calib["a"]})
    with pytest.raises(QuantizationError, match="same number"):
        METHODS.get("static").apply(src, dst, {"a": calib["a"], "b": calib["b"][:5]})


def test_single_input_array_fits_any_input_name(tmp_path, mlp):
    x = np.random.default_rng(4).standard_normal((8, 64)).astype(np.float32)
    METHODS.get("static").apply(mlp, tmp_path / "q.onnx", x, input_name="input")  # the model calls it "x"
    assert graph_format(tmp_path / "q.onnx")["format"] == "qdq"


# --------------------------------------------------------------------------- diagnostics

def _prof(**ms):
    return [{"op_type": k, "time_ms": v, "count": 1} for k, v in ms.items()]


def test_quantized_time_share():
    assert quantized_time_share(_prof(QLinearConv=6.0, QuantizeLinear=1.0, Add=1.0, QGemm=2.0)) == pytest.approx(0.8)
    assert conversion_time_share(_prof(QLinearConv=6.0, QuantizeLinear=1.0, DequantizeLinear=1.0, Add=2.0)) == 0.2
    assert quantized_time_share(_prof(ConvInteger=3.0, DynamicQuantizeLinear=1.0)) == 0.75
    assert quantized_time_share(_prof(DynamicQuantizeMatMul=1.0, MatMulIntegerToFloat=1.0, MatMulNBits=2.0)) == 1.0
    assert quantized_time_share(_prof(Conv=5.0, Cast=1.0)) == 0.0
    assert quantized_time_share([]) is None and quantized_time_share(None) is None


def test_isa_summary():
    assert isa_summary(VNNI)["int8_dot"] and "AVX512-VNNI" in isa_summary(VNNI)["text"]
    s = isa_summary(NO_VNNI)
    assert not s["int8_dot"] and "AVX2 only, no VNNI" in s["text"]
    assert isa_summary({"asimd": True, "asimddp": True})["int8_dot"]
    assert isa_summary({})["text"] == "CPU features unknown"


def test_explain_sentences():
    dyn = {"format": "dynamic", "ops": {"ConvInteger": 12, "DynamicQuantizeLinear": 10}}
    t = explain(dyn, NO_VNNI, 1.18, "slower", 0.8, ci=(1.14, 1.27))
    assert t.startswith("dynamic int8 turned 12 Conv into ConvInteger, which has no fast kernel")
    assert "1.18x SLOWER than fp32 (ratio 1.18 [1.14, 1.27]) — do not ship it; use static QDQ" in t

    qdq = {"format": "qdq", "ops": {"QuantizeLinear": 19}, "activation_type": "uint8", "weight_type": "int8",
           "weight_bits": 7}
    t = explain(qdq, VNNI, 1 / 2.96, "faster", 0.86)
    assert "static QDQ (U8S8) runs 86% of the time in int8 kernels and this CPU has AVX512-VNNI" in t
    assert "2.96x faster than fp32" in t
    s8 = explain({**qdq, "activation_type": "int8"}, NO_VNNI, 0.97, "inconclusive", 0.7)
    assert "S8S8 has no fast x86 kernel without VNNI" in s8 and "inconclusive" in s8
    low = explain(qdq, NO_VNNI, 1.0, "equivalent", 0.3)
    assert "only 30% of the time is in int8 kernels" in low and "no speed-up" in low.lower()

    fp16 = explain("fp16", NO_VNNI, 1.01, "equivalent", 0.0)
    assert "runs fp32 kernels between inserted Casts" in fp16 and "only about half the file size" in fp16
    assert "MatMulNBits" in explain({"format": "int4", "ops": {"MatMulNBits": 2}}, NO_VNNI, 1.04, "slower", 0.8)
    assert "Not measured" in explain("qdq", NO_VNNI, None, None, None)
    assert "runs as fp32" in explain("fp32", NO_VNNI, None, None, None)


def test_graph_format_rejects_non_onnx(tmp_path):
    from workbench.errors import ArtifactError

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x01garbage")
    with pytest.raises(ArtifactError, match="not a valid ONNX model"):
        graph_format(bad)


# --------------------------------------------------------------------------- the CLI

def _error(capsys, rc, *needles):
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0], lines[0]


def test_cli_errors(tmp_path, cnn, capsys):
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"\x08\x01garbage")
    _error(capsys, main(["quantize", str(bad), "--method", "dynamic"]), "corrupt.onnx", "not a valid ONNX model")
    _error(capsys, main(["quantize", str(tmp_path / "missing.onnx"), "--method", "fp16"]), "not found")
    _error(capsys, main(["quantize", str(cnn), "--method", "static", "--no-measure"]), "pass --task SPEC",
           "--calib-random")
    _error(capsys, main(["quantize", str(cnn), "--method", "static", "--task", "digits", "--option", "calibration=kl"]),
           "use one of: minmax, entropy, percentile")
    _error(capsys, main(["quantize", str(cnn), "--method", "dynamic", "--option", "per_channel"]), "KEY=VALUE")
    _error(capsys, main(["quantize", str(cnn), "--method", "dynamic", "--out", str(cnn)]), "never overwritten")
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    _error(capsys, main(["quantize", str(cnn), "--method", "dynamic", "--out", str(blocker / "q.onnx")]), "cannot write")
    _error(capsys, main(["quantize", str(cnn), "--method", "fp16", "--calib-samples", "8"]), "--calib-samples applies")
    _error(capsys, main(["quantize", str(cnn), "--method", "static", "--task", "digits", "--calib-random"]),
           "drop --calib-random")
    assert sorted(p.name for p in cnn.parent.iterdir()) == ["cnn.onnx"]  # nothing written beside the model
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.onnx", "file.txt"]


def test_cli_no_measure(tmp_path, cnn, capsys):
    src = tmp_path / "m.onnx"
    src.write_bytes(cnn.read_bytes())
    rc = main(["quantize", str(src), "--method", "static", "--task", "digits", "--calib-samples", "16",
               "--option", "calibration=percentile", "--no-measure", "--json", str(tmp_path / "s.json")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert (tmp_path / "m.static.onnx").is_file() and "Percentile calibration" in out
    assert "static int8, QDQ (U8S8)" in out and "not measured" in out.lower()
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["diagnostics"]["format"] == "qdq" and doc["spec"] == "static?calib_samples=16&calibration=percentile"
    assert doc["size_ratio"] < 1 and "Not measured" in doc["diagnostics"]["explanation"]
    assert main(["quantize", str(src), "--method", "static", "--calib-random", "--no-measure",
                 "--out", str(tmp_path / "r.onnx")]) == 0
    assert "GENERATED inputs" in capsys.readouterr().out and (tmp_path / "r.onnx").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.static.onnx", "r.onnx", "s.json"]


def test_cli_measured_run(tmp_path, cnn, capsys):
    src = tmp_path / "m.onnx"
    src.write_bytes(cnn.read_bytes())
    rc = main(["quantize", str(src), "--method", "dynamic", "--task", "digits", "--rounds", "1", "--max-s", "0.3",
               "--json", str(tmp_path / "d.json")])
    out = capsys.readouterr().out
    assert rc == 0, out
    doc = json.loads((tmp_path / "d.json").read_text())
    c = doc["latency"]["comparison"]
    assert c["verdict"] in ("faster", "slower", "equivalent", "inconclusive") and c["ratio_median"] > 0
    assert doc["accuracy"]["n"] == len(doc["accuracy"]["quantized"]) or doc["accuracy"]["n"] > 0
    assert doc["profile"] and doc["diagnostics"]["quantized_time_share"] > 0
    assert "ConvInteger" in doc["diagnostics"]["explanation"]
    assert "ratio" in out and "accuracy:" in out and "why:" in out
    if c["verdict"] == "slower":
        assert "WARNING: m.dynamic.onnx is SLOWER than fp32" in out


@pytest.mark.skipif(not __import__("workbench.quantize.optimum_ptq", fromlist=["x"]).available(),
                    reason="optimum (extra peer) not installed")
def test_optimum_presets_as_a_method(tmp_path, mlp):
    from workbench.quantize.optimum_ptq import resolve_preset

    x = np.random.default_rng(1).standard_normal((4, 64)).astype(np.float32)
    for opts in ({}, {"preset": "avx2", "per_channel": False}):
        q = tmp_path / f"o-{len(opts)}.onnx"
        m = make_method("optimum", **opts)
        m.apply(mlp, q)
        g = graph_format(q)
        assert g["format"] == "dynamic" and g["ops"].get("MatMulInteger") == 2  # optimum's presets are dynamic int8
        _close(mlp, q, {"x": x}, tol=0.15)
    assert resolve_preset("auto") in ("avx512_vnni", "avx512", "avx2", "arm64")
    assert "auto = " in make_method("optimum").describe and "per-tensor" in make_method("optimum", per_channel=False).describe
    assert parse_method("optimum?preset=avx2").spec == "optimum?preset=avx2"


def test_optimum_missing_says_how_to_install(tmp_path, mlp, monkeypatch):
    from workbench.quantize import optimum_ptq

    monkeypatch.setattr(optimum_ptq, "available", lambda: False)
    with pytest.raises(QuantizationError, match=r'needs optimum.*pip install -c constraints.txt -e "\.\[peer\]"'):
        make_method("optimum").apply(mlp, tmp_path / "o.onnx")
    assert not (tmp_path / "o.onnx").exists()
