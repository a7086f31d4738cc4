"""Quantizing the graphs real exporters write: Constant weights, opset < 13, compute inside If sub-graphs.

Every model is built here with onnx.helper (tiny, seconds). A real paddle2onnx export (rapidocr's
PP-OCR models) is used only when present at $WORKBENCH_RAPIDOCR_MODELS (skipped otherwise).
"""
from __future__ import annotations

import glob
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from workbench.errors import QuantizationError
from workbench.quantize import make_method, parse_method
from workbench.quantize.diagnose import diagnose, graph_format
from workbench.quantize.graph_prep import prepare_graph, short_ort_error
from workbench.quantize.propose import graph_mix, propose_candidates

ISA = {"avx2": True}


def _const(name, arr):
    return h.make_node("Constant", [], [name], value=nh.from_array(np.asarray(arr), name))


def _model(nodes, inputs, outputs, opset, inits=(), functions=()):
    m = h.make_model(h.make_graph(nodes, "g", inputs, outputs, list(inits)),
                     opset_imports=[h.make_opsetid("", opset)], functions=list(functions))
    m.ir_version = 7
    onnx.checker.check_model(m)
    return m


def conv_net(opset=12, constants=True, dynamic=False):
    """conv(3->8) relu conv(8->16, stride 2) relu gap flatten matmul(16->10), weights in Constant nodes."""
    rng = np.random.default_rng(0)
    ws = {"w1": rng.normal(0, .3, (8, 3, 3, 3)), "b1": rng.normal(0, .1, 8), "w2": rng.normal(0, .2, (16, 8, 3, 3)),
          "b2": rng.normal(0, .1, 16), "wf": rng.normal(0, .2, (16, 10))}
    ws = {k: v.astype(np.float32) for k, v in ws.items()}
    nodes = [h.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             h.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             h.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2], name="conv2"),
             h.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             h.make_node("GlobalAveragePool", ["r2"], ["p"], name="gap"),
             h.make_node("Flatten", ["p"], ["f"], name="flat"),
             h.make_node("MatMul", ["f", "wf"], ["y"], name="fc")]
    if constants:
        nodes, inits = [_const(k, v) for k, v in ws.items()] + nodes, []
    else:
        inits = [nh.from_array(v, k) for k, v in ws.items()]
    shape = ["N", 3, "H", "W"] if dynamic else [1, 3, 16, 16]
    return _model(nodes, [h.make_tensor_value_info("x", T.FLOAT, shape)],
                  [h.make_tensor_value_info("y", T.FLOAT, [shape[0], 10])], opset, inits)


def if_net(cond_from_input=True):
    """The whole compute (Conv, MatMul) sits inside both branches of an If."""
    rng = np.random.default_rng(1)

    def branch(tag):
        nodes = [_const(f"w_{tag}", rng.normal(0, .3, (8, 3, 3, 3)).astype(np.float32)),
                 _const(f"wf_{tag}", rng.normal(0, .2, (8, 10)).astype(np.float32)),
                 h.make_node("Conv", ["x", f"w_{tag}"], [f"c_{tag}"], pads=[1, 1, 1, 1], name=f"conv_{tag}"),
                 h.make_node("Relu", [f"c_{tag}"], [f"r_{tag}"], name=f"relu_{tag}"),
                 h.make_node("GlobalAveragePool", [f"r_{tag}"], [f"p_{tag}"], name=f"gap_{tag}"),
                 h.make_node("Flatten", [f"p_{tag}"], [f"f_{tag}"], name=f"flat_{tag}"),
                 h.make_node("MatMul", [f"f_{tag}", f"wf_{tag}"], [f"y_{tag}"], name=f"fc_{tag}")]
        return h.make_graph(nodes, tag, [], [h.make_tensor_value_info(f"y_{tag}", T.FLOAT, [1, 10])])

    if cond_from_input:
        nodes = [h.make_node("ReduceMean", ["x"], ["mean"], keepdims=0, name="mean"),
                 _const("zero", np.array(0.0, np.float32)), h.make_node("Greater", ["mean", "zero"], ["cond"], name="gt")]
    else:
        nodes = [_const("cond", np.array(True))]
    nodes.append(h.make_node("If", ["cond"], ["y"], then_branch=branch("then"), else_branch=branch("else"), name="if"))
    return _model(nodes, [h.make_tensor_value_info("x", T.FLOAT, [1, 3, 16, 16])],
                  [h.make_tensor_value_info("y", T.FLOAT, [1, 10])], 13)


def _x(n=24, hw=16, seed=2):
    return np.random.default_rng(seed).normal(size=(n, 3, hw, hw)).astype(np.float32)


def _run(path, x):
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])


def _per_channel_dq(path) -> bool:
    m = onnx.load(str(path))
    return any(n.op_type == "DequantizeLinear" and any(a.name == "axis" for a in n.attribute) for n in m.graph.node)


CONV_MACS = 8 * 16 * 16 * 3 * 9 + 16 * 8 * 8 * 8 * 9  # conv1 + conv2 at 16x16, batch 1


# --------------------------------------------------------------------------- (1) Constant weights, opset 12

def test_opset12_constant_weights_static_per_channel_runs_close_to_fp32(tmp_path):
    src, dst = tmp_path / "c12.onnx", tmp_path / "c12.static.onnx"
    onnx.save(conv_net(), src)
    notes = make_method("static").apply(src, dst, _x(), "x")
    assert "5 Constant weights moved to initializers" in notes and "opset 12 -> 13" in notes
    assert _per_channel_dq(dst)  # per-channel kept: the opset was raised, not the option dropped
    x = _x(8, seed=3)
    ref, out = _run(src, x), _run(dst, x)
    assert np.abs(ref - out).max() < 0.05 * np.abs(ref).max()
    d = diagnose(dst, isa=ISA)
    assert d["format"] == "qdq" and d["graph"]["opset"] == 13
    assert d["graph"]["macs_by_op"]["Conv"] == CONV_MACS and d["graph"]["conv_share"] > 0.99
    assert d["prep"] == list(notes) and "Graph prep: 5 Constant weights moved" in d["explanation"]


def test_analysis_sees_constant_weights(tmp_path):
    src = tmp_path / "c12.onnx"
    onnx.save(conv_net(), src)
    mix = graph_mix(src)
    assert mix["conv_nodes"] == 2 and mix["basis"] == "MACs" and mix["constant_weights"] == 5
    assert mix["macs_by_op"]["Conv"] == CONV_MACS and mix["conv_share"] > 0.99
    inits = tmp_path / "init.onnx"
    onnx.save(conv_net(opset=13, constants=False), inits)
    assert graph_mix(inits)["macs_by_op"] == mix["macs_by_op"]  # the same numbers either way
    props = propose_candidates(src, ISA, has_calibration=True)
    assert props[0].method.name == "static" and "conv-heavy" in props[0].reason
    assert graph_format(src)["macs_by_op"]["Conv"] == CONV_MACS


def test_fully_dynamic_dims_stay_dynamic(tmp_path):
    src, dst = tmp_path / "dyn.onnx", tmp_path / "dyn.static.onnx"
    onnx.save(conv_net(dynamic=True), src)
    mix = graph_mix(src)
    assert mix["conv_share"] > 0.99 and "x[2]=64" in mix["assumed"]
    make_method("static").apply(src, dst, _x(), "x")
    for hw in (16, 24):  # the quantized file still takes any size
        x = _x(2, hw, seed=4)
        assert _run(dst, x).shape == (2, 10)
        assert np.abs(_run(src, x) - _run(dst, x)).max() < 0.1


def test_dynamic_and_int4_see_constant_weights(tmp_path):
    src = tmp_path / "c12.onnx"
    onnx.save(conv_net(), src)
    dyn = tmp_path / "dyn.onnx"
    parse_method("dynamic?op_types=MatMul").apply(src, dyn)
    assert graph_format(dyn)["format"] == "dynamic"  # the Constant MatMul weight was quantized
    q4 = tmp_path / "q4.onnx"
    notes = parse_method("int4?block_size=16").apply(src, q4)
    assert graph_format(q4)["ops"].get("MatMulNBits") == 1 and notes


# --------------------------------------------------------------------------- (2) compute inside If

def test_analysis_descends_into_if_subgraphs(tmp_path):
    src = tmp_path / "if.onnx"
    onnx.save(if_net(), src)
    mix = graph_mix(src)
    assert mix["conv_nodes"] == 2 and mix["matmul_nodes"] == 2 and mix["subgraph_nodes"] == {"Conv": 2, "MatMul": 2}
    assert mix["conv_share"] > 0.9
    props = propose_candidates(src, ISA, has_calibration=True)
    assert props and props[0].method.name == "static" and "If/Loop/Scan" in props[0].reason
    assert not [w for w, _ in props.skipped if w == "all"]  # no more "no Conv, MatMul or Gemm node"


def test_static_on_if_model_says_why_in_one_line_and_dynamic_works(tmp_path):
    src = tmp_path / "if.onnx"
    onnx.save(if_net(), src)
    with pytest.raises(QuantizationError) as e:
        make_method("static").apply(src, tmp_path / "s.onnx", _x(), "x")
    msg = str(e.value)
    assert "\n" not in msg and "sub-graphs" in msg and "--method dynamic" in msg
    assert not (tmp_path / "s.onnx").exists()
    dyn = tmp_path / "d.onnx"
    notes = parse_method("dynamic?op_types=MatMul").apply(src, dyn)
    assert any("sub-graphs" in n for n in notes)
    assert graph_format(dyn)["ops"].get("MatMulInteger") == 2
    x = _x(4)
    assert np.abs(_run(src, x) - _run(dyn, x)).max() < 0.05


def test_static_on_constant_condition_if_is_inlined_and_quantized(tmp_path):
    src, dst = tmp_path / "ifc.onnx", tmp_path / "ifc.static.onnx"
    onnx.save(if_net(cond_from_input=False), src)
    make_method("static").apply(src, dst, _x(), "x")
    g = graph_format(dst)
    assert g["format"] == "qdq" and not g["subgraph_compute"]


# --------------------------------------------------------------------------- (3) failures, one line

def _with_local_function(model):
    f = h.make_function("local", "MyRelu", ["a"], ["b"], [h.make_node("Relu", ["a"], ["b"])], [h.make_opsetid("", 12)])
    model.functions.append(f)
    model.opset_import.append(h.make_opsetid("local", 1))
    model.graph.node.append(h.make_node("MyRelu", ["y"], ["z"], domain="local", name="myrelu"))
    model.graph.output[0].name = "z"
    onnx.checker.check_model(model)
    return model


def test_opset_conversion_that_fails_falls_back_to_per_tensor_and_says_why(tmp_path):
    src, dst = tmp_path / "fn12.onnx", tmp_path / "fn12.static.onnx"
    onnx.save(_with_local_function(conv_net()), src)  # onnx.version_converter drops local functions
    prep = prepare_graph(src, tmp_path / "prep.onnx", min_opset=13)
    assert prep.opset_error and "\n" not in prep.opset_error and prep.opset_to == 12
    notes = make_method("static").apply(src, dst, _x(), "x")
    why = [n for n in notes if "per-tensor" in n]
    assert len(why) == 1 and "opset 12 could not be raised" in why[0] and "local functions" in why[0]
    assert not _per_channel_dq(dst) and _run(dst, _x(2)).shape == (2, 10)
    assert any("per-tensor" in p for p in diagnose(dst, isa=ISA)["prep"])


def test_model_onnxruntime_cannot_run_fails_in_one_line(tmp_path):
    m = conv_net(opset=13)
    m.graph.node.append(h.make_node("NotAnOp", ["y"], ["z"], name="bad"))
    m.graph.output[0].name = "z"
    src = tmp_path / "bad.onnx"
    onnx.save(m, src)
    with pytest.raises(QuantizationError) as e:
        make_method("static").apply(src, tmp_path / "bad.q.onnx", _x(), "x")
    assert "\n" not in str(e.value) and "NotAnOp" in str(e.value) and len(str(e.value)) < 400


def test_short_ort_error_explains_the_per_channel_axis():
    raw = ('[ONNXRuntimeError] : 10 : INVALID_GRAPH : Load model from /tmp/m.onnx failed:This is an invalid model. '
           'In Node, ("b_DequantizeLinear", DequantizeLinear, "", -1) : ... , Error Unrecognized attribute: axis for '
           'operator DequantizeLinear\n==> Context: Bad node spec')
    assert short_ort_error(Exception(raw)) == "INVALID_GRAPH — DequantizeLinear axis (per-channel) needs opset 13"


# --------------------------------------------------------------------------- through the CLI

@pytest.mark.slow
def test_cli_auto_measures_the_static_candidate_on_an_opset12_constant_model(tmp_path, capsys):
    import json

    from workbench.cli import main

    src = tmp_path / "c12.onnx"
    onnx.save(conv_net(), src)
    np.savez(tmp_path / "calib.npz", x=_x(32))
    rc = main(["quantize", str(src), "--method", "auto", "--calib", str(tmp_path / "calib.npz"), "--rounds", "2",
               "--max-s", "0.3", "--json", str(tmp_path / "a.json")])
    assert rc in (0, None)
    doc = json.loads((tmp_path / "a.json").read_text())
    static = next(c for c in doc["auto"]["candidates"] if c["spec"].startswith("static") and "format" not in c["spec"])
    assert static["error"] is None and static["ratio"] is not None and static["verdict"]
    assert "no candidate" not in doc["auto"]["message"]


# --------------------------------------------------------------------------- a real paddle2onnx export

REAL = os.environ.get("WORKBENCH_RAPIDOCR_MODELS", "/tmp/rocr/rapidocr_onnxruntime/models")


@pytest.mark.slow
@pytest.mark.skipif(not glob.glob(os.path.join(REAL, "*rec_infer.onnx")), reason="no rapidocr models at "
                    "$WORKBENCH_RAPIDOCR_MODELS (pip download --no-deps rapidocr-onnxruntime; unzip)")
def test_real_paddle2onnx_recogniser_is_conv_heavy_and_quantizes(tmp_path):
    src = glob.glob(os.path.join(REAL, "*rec_infer.onnx"))[0]
    mix = graph_mix(src)
    assert mix["conv_nodes"] >= 30 and mix["conv_share"] > 0.5
    x = np.random.default_rng(0).uniform(-1, 1, (4, 3, 48, 320)).astype(np.float32)
    notes = make_method("static", calib_samples=4).apply(src, tmp_path / "rec.onnx", x, "x")
    assert any("opset 12 -> 13" in n for n in notes)
    assert _run(tmp_path / "rec.onnx", x[:1]).shape == _run(src, x[:1]).shape
