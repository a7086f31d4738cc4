"""`auto` (candidates, choice rules, fp32 fallback), per-node sensitivity and greedy exclusion, their CLI."""
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from workbench.cli import main
from workbench.errors import RecipeError
from workbench.export import export_onnx
from workbench.quantize import make_method
from workbench.quantize.auto import (CandidateResult, accuracy_eval, auto_quantize, choose, fidelity_eval,
                                     propose_candidates)
from workbench.quantize.sensitivity import greedy_exclusion, node_sensitivity

NO_VNNI = {"avx2": True, "fma": True, "avx512f": False, "avx512_vnni": False, "avx_vnni": False, "amx_int8": False}
VNNI = {**NO_VNNI, "avx512f": True, "avx512_vnni": True}


# --------------------------------------------------------------------------- tiny models

@pytest.fixture(scope="module")
def cnn(tmp_path_factory, tiny_cnn, digits):
    path = tmp_path_factory.mktemp("auto") / "cnn.onnx"
    export_onnx(tiny_cnn, digits.x_test[:1], path)
    return path


def _save(path, nodes, inits, d, o, inputs=("x",)):
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", d]) for n in inputs]
    g = helper.make_graph(nodes, "g", ins, [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", o])],
                          [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


def _mlp(path, d=64, h=64, o=16, outlier=None):
    """x -> MatMul mm1 -> Relu -> MatMul mm2 -> Relu -> MatMul mm3 -> y. ``outlier``: make mm2 fragile (a
    huge weight on a hidden unit that is always 0: it costs nothing in float, but its scale wipes out every
    other weight of mm2 once quantized)."""
    rng = np.random.default_rng(0)
    w = {"W1": rng.standard_normal((d, h)) * 0.3, "W2": rng.standard_normal((h, h)) * 0.3,
         "W3": rng.standard_normal((h, o)) * 0.3}
    if outlier:
        w["W1"][:, 0] = 0.0  # hidden unit 0 is always 0 ...
        w["W2"][0, :] = outlier  # ... and carries a huge weight in every output channel of mm2
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h1"], name="mm1"), helper.make_node("Relu", ["h1"], ["r1"], name="relu1"),
             helper.make_node("MatMul", ["r1", "W2"], ["h2"], name="mm2"), helper.make_node("Relu", ["h2"], ["r2"], name="relu2"),
             helper.make_node("MatMul", ["r2", "W3"], ["y"], name="mm3")]
    return _save(path, nodes, w, d, o)


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    return _mlp(tmp_path_factory.mktemp("auto") / "mlp.onnx")


@pytest.fixture(scope="module")
def fragile(tmp_path_factory):
    return _mlp(tmp_path_factory.mktemp("auto") / "fragile.onnx", d=16, h=16, o=8, outlier=50.0)


def _x(n, d, seed=1):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


# --------------------------------------------------------------------------- proposing

def test_conv_net_gets_static_never_dynamic_on_conv(cnn):
    props = propose_candidates(cnn, NO_VNNI, has_calibration=True)
    specs = [p.method.spec for p in props]
    assert specs == ["static", "static?format=qoperator"]
    assert props.mix["conv_share"] > 0.9 and props.mix["conv_nodes"] >= 1
    assert all(p.reason for p in props)
    assert [w for w, _ in props.skipped] == ["dynamic"] and "ConvInteger" in props.skipped[0][1]
    # VNNI: 8-bit weights are worth a try as well
    assert "static?reduce_range=false" in [p.method.spec for p in propose_candidates(cnn, VNNI, True)]
    # no calibration data: nothing static, and still no dynamic on Conv
    none = propose_candidates(cnn, VNNI, has_calibration=False)
    assert list(none) == [] and {w for w, _ in none.skipped} == {"static", "dynamic"}


def test_matmul_net_gets_dynamic_static_int4(mlp):
    props = propose_candidates(mlp, NO_VNNI, has_calibration=True)
    specs = [p.method.spec for p in props]
    assert specs == ["dynamic?per_channel=true&weight_type=s8", "dynamic?per_channel=true", "static", "int4"]
    assert props.mix["conv_share"] == 0 and props.mix["weighted_matmuls"] == 3
    assert [p.method.spec for p in propose_candidates(mlp, NO_VNNI, False)][:2] == specs[:2]


def test_dynamic_is_restricted_to_matmuls_beside_conv(tmp_path):
    """A graph with Conv and MatMul: dynamic may only touch the MatMuls."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["img"], name="reshape"),
             helper.make_node("Conv", ["img", "Wc"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Flatten", ["c"], ["f"], name="flat"),
             helper.make_node("MatMul", ["f", "Wm"], ["y"], name="mm")]
    inits = {"Wc": rng.standard_normal((2, 1, 3, 3)), "Wm": rng.standard_normal((2 * 64, 4)),
             "shape": np.array([-1, 1, 8, 8])}
    inits_np = {k: v for k, v in inits.items() if k != "shape"}
    path = tmp_path / "mixed.onnx"
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
                          [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits_np.items()]
                          + [numpy_helper.from_array(inits["shape"].astype(np.int64), "shape")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    dyn = [p.method for p in propose_candidates(path, NO_VNNI, True) if p.method.name == "dynamic"]
    assert dyn and all(m.options["op_types"] == ["MatMul", "Attention"] for m in dyn)


def _attention(path, seq=6, d=16):
    """A one-head attention encoder with two inputs, as transformer exports are: x [batch, seq, d] float and
    mask [batch, seq] int64 -> the additive mask ((1 - mask) * -3.4e38) -> Softmax -> mean pool -> y [batch, d]."""
    rng = np.random.default_rng(0)
    w = {k: (rng.standard_normal((d, d)) * 0.3).astype(np.float32) for k in ("Wq", "Wk", "Wv", "Wo")}
    consts = [numpy_helper.from_array(v, k) for k, v in w.items()] + [
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array(np.finfo(np.float32).min, np.float32), "neg"),
        numpy_helper.from_array(np.array(d ** -0.5, np.float32), "scale"),
        numpy_helper.from_array(np.array([1], np.int64), "ax1")]
    mm = lambda a, b, o: helper.make_node("MatMul", [a, b], [o], name=o)  # noqa: E731
    nodes = [mm("x", "Wq", "q"), mm("x", "Wk", "k"), mm("x", "Wv", "v"),
             helper.make_node("Transpose", ["k"], ["kt"], name="kt", perm=[0, 2, 1]), mm("q", "kt", "s0"),
             helper.make_node("Mul", ["s0", "scale"], ["s1"], name="s1"),
             helper.make_node("Cast", ["mask"], ["mf"], name="mf", to=TensorProto.FLOAT),
             helper.make_node("Sub", ["one", "mf"], ["inv"], name="inv"),
             helper.make_node("Mul", ["inv", "neg"], ["mb"], name="mb"),
             helper.make_node("Unsqueeze", ["mb", "ax1"], ["mb3"], name="mb3"),
             helper.make_node("Add", ["s1", "mb3"], ["s2"], name="s2"),
             helper.make_node("Softmax", ["s2"], ["p"], name="p", axis=-1), mm("p", "v", "a"), mm("a", "Wo", "h"),
             helper.make_node("ReduceMean", ["h", "ax1"], ["y"], name="y", keepdims=0)]
    g = helper.make_graph(nodes, "attn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", seq, d]),
                                          helper.make_tensor_value_info("mask", TensorProto.INT64, ["batch", seq])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", d])], consts)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


def test_multi_input_attention_graph_static_on_matmuls_only_and_auto_runs(tmp_path, monkeypatch):
    """Transformer-like graphs: two inputs (dict calibration and eval inputs), static proposed on the MatMuls
    only (quantizing the mask Add / Softmax ranges wrecks the outputs), and auto runs end to end."""
    import workbench.quantize.auto as auto

    path = _attention(tmp_path / "attn.onnx")
    rng = np.random.default_rng(1)
    n, seq, d = 48, 6, 16
    mask = np.ones((n, seq), np.int64)
    mask[np.arange(n), rng.integers(2, seq, n)] = 0  # some padding in every row
    data = {"x": rng.standard_normal((n, seq, d)).astype(np.float32), "mask": mask}
    props = propose_candidates(path, VNNI, has_calibration=True)
    specs = [p.method.spec for p in props]
    assert props.mix["softmax_nodes"] == 1 and "static?op_types=MatMul,Gemm" in specs and "static" not in specs
    plain, matmuls = tmp_path / "plain.onnx", tmp_path / "matmuls.onnx"
    make_method("static").apply(path, plain, data, "x")
    make_method("static", op_types="MatMul,Gemm").apply(path, matmuls, data, "x")
    fid = fidelity_eval(path, data)
    assert fid(matmuls)[0] > 0.99 and fid(matmuls)[0] >= fid(plain)[0]
    measure, calls = _fake_measure([("dynamic", 0.6), ("static", 0.7), ("int4", 1.1)])
    monkeypatch.setattr(auto, "_measure", measure)
    monkeypatch.setattr(auto, "_compare", lambda a, b: "slower")
    res = auto_quantize(path, tmp_path / "attn.auto.onnx", calib=data, eval_fn=fid, inputs=None, isa=VNNI,
                        max_drop=0.01, candidates=props, work_dir=tmp_path / "work", profile=False)
    assert len(calls) == 1 and not [c.error for c in res.candidates if c.error]
    assert all(c.metric is not None for c in res.candidates) and res.chosen.spec.startswith("dynamic")


# --------------------------------------------------------------------------- the choice rules

def _row(spec, ratio, verdict, drop, within):
    return CandidateResult(spec, spec, "k", "int8", "r", ratio=ratio, verdict=verdict, drop=drop,
                           within_budget=within, metric=0.99 - drop, ci95=(ratio * 0.98, ratio * 1.02))


def test_choose_fastest_faster_within_budget():
    rows = [_row("a", 0.5, "faster", 0.001, True), _row("b", 0.4, "faster", 0.02, False),
            _row("c", 0.6, "faster", 0.0, True), _row("d", 1.3, "slower", 0.0, True)]
    chosen, msg, loud = choose(rows, 0.005)
    assert chosen.spec == "a" and not loud and "faster than fp32" in msg
    # a tie in speed (paired comparison not 'slower') is won by the more accurate candidate
    chosen, msg, _ = choose(rows, 0.005, lambda a, b: True)
    assert chosen.spec == "c" and "more accurate" in msg


def test_choose_never_returns_a_slower_int8_variant_silently():
    rows = [_row("static", 1.05, "inconclusive", 0.0, True), _row("dynamic", 1.2, "slower", 0.0, True),
            _row("fp16", 1.0, "equivalent", 0.0, True)]
    chosen, msg, loud = choose(rows, 0.005)
    assert chosen is None and loud
    assert msg.startswith("KEEPING FP32: no int8 variant was faster than fp32 on this machine")
    assert "dynamic 1.20" in msg and "SLOWER" in msg and "static 1.05" in msg
    chosen, msg, loud = choose([_row("static", 0.5, "faster", 0.03, False)], 0.005)
    assert chosen is None and loud and "missed the accuracy budget" in msg and "loses 3.00 points" in msg


# --------------------------------------------------------------------------- auto_quantize (measurement mocked)

def _fake_measure(ratios):
    """A stand-in for the interleaved harness run: ratio per candidate file name fragment."""
    calls = []

    def measure(paths, inputs, threads, protocol, rounds, progress):
        calls.append([str(p) for p in paths])
        ms, comps = [SimpleNamespace(stats=SimpleNamespace(median=1.0))], [None]
        for p in paths[1:]:
            r = next(v for k, v in ratios if k in Path(p).name)
            verdict = "faster" if r < 0.95 else "slower" if r > 1.05 else "inconclusive"
            ms.append(SimpleNamespace(stats=SimpleNamespace(median=r)))
            comps.append(SimpleNamespace(ratio_median=r, ci95=(r * 0.97, r * 1.03), verdict=verdict))
        return ms, comps

    return measure, calls


def test_auto_picks_a_faster_candidate_within_budget(tmp_path, mlp, monkeypatch):
    import workbench.quantize.auto as auto

    measure, calls = _fake_measure([("per_channel_true-weight_type_s8", 0.6), ("dynamic-per_channel_true", 0.7),
                                    ("static", 1.3), ("int4", 1.02)])
    monkeypatch.setattr(auto, "_measure", measure)
    monkeypatch.setattr(auto, "_compare", lambda a, b: "slower")
    x = _x(64, 64)
    out = tmp_path / "mlp.auto.onnx"
    steps = []
    res = auto_quantize(mlp, out, calib=x, eval_fn=fidelity_eval(mlp, x, "x"), inputs=None, isa=NO_VNNI,
                        max_drop=0.01, progress=lambda f, m: steps.append(f), work_dir=tmp_path / "work", profile=False)
    assert len(calls) == 1 and len(calls[0]) == 5  # fp32 + 4 candidates in ONE interleaved run
    assert res.chosen.spec == "dynamic?per_channel=true&weight_type=s8" and not res.loud
    assert res.chosen.within_budget and res.chosen.verdict == "faster"
    assert out.read_bytes() == open(res.chosen.path, "rb").read()
    assert [c.spec for c in res.candidates][0] == "fp32" and len(res.candidates) == 5
    assert res.metric == "cosine to fp32 outputs" and res.candidates[0].metric == pytest.approx(1.0)
    assert res.diagnostics["format"] == "dynamic" and steps[-1] == 1.0 and steps == sorted(steps)
    doc = json.loads(json.dumps(res.to_json()))
    assert doc["chosen"]["spec"] == res.chosen.spec and doc["max_drop_points"] == pytest.approx(1.0)


def test_auto_keeps_fp32_loudly_when_nothing_is_faster(tmp_path, mlp, monkeypatch):
    import workbench.quantize.auto as auto

    measure, _ = _fake_measure([("dynamic", 1.2), ("static", 1.01), ("int4", 1.5)])
    monkeypatch.setattr(auto, "_measure", measure)
    x = _x(32, 64)
    out = tmp_path / "kept.onnx"
    reuse_src = tmp_path / "given.static.onnx"
    make_method("static", calib_samples=32).apply(mlp, reuse_src, x, "x")
    props = propose_candidates(mlp, NO_VNNI, True)
    props[2] = type(props[2])(make_method("static", calib_samples=32), props[2].reason)
    res = auto_quantize(mlp, out, calib=x, eval_fn=fidelity_eval(mlp, x, "x"), inputs=None, isa=NO_VNNI,
                        candidates=props, reuse={props[2].method.key: str(reuse_src)}, profile=False)
    assert res.chosen_is_fp32 and res.loud and res.chosen.spec == "fp32"
    assert "no int8 variant was faster than fp32" in res.message and "SLOWER" in res.message
    assert out.read_bytes() == mlp.read_bytes()  # fp32 itself, copied
    static = next(c for c in res.candidates if c.spec.startswith("static"))
    assert static.reused and static.path == str(reuse_src) and static.quantize_s is None


def test_auto_leaves_sensitive_nodes_in_float_when_the_fastest_misses_the_budget(tmp_path, fragile, monkeypatch):
    import workbench.quantize.auto as auto

    measure, calls = _fake_measure([("exclude_nodes", 0.7), ("static", 0.5)])
    monkeypatch.setattr(auto, "_measure", measure)
    x = np.abs(_x(64, 16))
    res = auto_quantize(fragile, tmp_path / "f.onnx", calib=x, eval_fn=fidelity_eval(fragile, x, "x"), inputs=None,
                        isa=NO_VNNI, max_drop=0.01, candidates=[make_method("static", calib_samples=64)], profile=False)
    first = res.candidates[1]
    assert first.verdict == "faster" and not first.within_budget  # fast, but mm2 is wrecked
    assert len(calls) == 2 and len(calls[1]) == 2  # the second run: fp32 + the mixed-precision variant
    assert res.chosen.stage == "sensitivity" and res.chosen.spec.endswith("exclude_nodes=mm2")
    assert res.chosen.within_budget and not res.loud
    assert res.exclusion["sensitivity"][0]["node"] == "mm2"


# --------------------------------------------------------------------------- sensitivity

def test_node_sensitivity_ranks_the_fragile_node_first(fragile):
    x = np.abs(_x(64, 16))
    rows = node_sensitivity(fragile, make_method("static"), x, x[:32], input_name="x")
    ranked = [r for r in rows if r.get("rank")]
    assert [r["node"] for r in ranked][0] == "mm2" and len(ranked) == 3
    assert ranked[0]["rel_l2"] > 10 * ranked[1]["rel_l2"]
    assert [r["rel_l2"] for r in ranked] == sorted((r["rel_l2"] for r in ranked), reverse=True)
    assert rows[-1]["node"] == "(all nodes)" and rows[-1]["rel_l2"] > 0.5
    dyn = node_sensitivity(fragile, make_method("dynamic", per_channel=True), None, x[:32], input_name="x")
    assert dyn[0]["node"] == "mm2"
    with pytest.raises(RecipeError, match="static and dynamic"):
        node_sensitivity(fragile, make_method("fp16"), None, x)


def test_greedy_exclusion_meets_the_budget(fragile, tmp_path):
    x = np.abs(_x(64, 16))
    method = make_method("static")
    rows = node_sensitivity(fragile, method, x, x, input_name="x")
    steps = greedy_exclusion(fragile, method, x, fidelity_eval(fragile, x, "x"), 0.01, rows, input_name="x",
                             work_dir=tmp_path)
    assert steps[0]["excluded"] == [] and not steps[0]["within_budget"]
    assert steps[-1]["excluded"] == ["mm2"] and steps[-1]["within_budget"] and steps[-1]["drop"] <= 0.01
    # the same variant through the method's own option gives the same fidelity
    again = tmp_path / "again.onnx"
    method.with_options(exclude_nodes="mm2").apply(fragile, again, x, "x")
    assert fidelity_eval(fragile, x, "x")(again)[0] == pytest.approx(steps[-1]["metric"], abs=1e-6)


def test_sensitivity_on_a_conv_net(cnn, digits):
    rows = node_sensitivity(cnn, make_method("static", calib_samples=64), digits.x_train, digits.x_test[:64])
    ranked = [r for r in rows if r.get("rank")]
    assert {r["op_type"] for r in ranked} == {"Conv", "Gemm"} and all("top1_flips" in r for r in ranked)


# --------------------------------------------------------------------------- CLI

def test_cli_argument_errors(tmp_path, cnn, capsys):
    src = tmp_path / "m.onnx"
    src.write_bytes(cnn.read_bytes())
    for args, needle in [(["--method", "static", "--task", "digits", "--max-drop", "1"], "--max-drop is the accuracy budget"),
                         (["--method", "auto", "--task", "digits", "--no-measure"], "chooses by measuring"),
                         (["--method", "auto", "--task", "digits", "--option", "per_channel=false"], "--option does not apply"),
                         (["--method", "auto", "--task", "digits", "--max-drop", "-1"], "--max-drop is in points"),
                         (["--method", "auto", "--task", "digits", "--sensitivity"], "--sensitivity goes with a fixed"),
                         (["--method", "fp16", "--sensitivity", "--no-measure"], "--sensitivity works with")]:
        assert main(["quantize", str(src), *args]) == 2, args
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_cli_sensitivity_table(tmp_path, fragile, capsys):
    x = np.abs(_x(64, 16))
    np.savez(tmp_path / "calib.npz", x=x)
    rc = main(["quantize", str(fragile), "--method", "static", "--calib", str(tmp_path / "calib.npz"), "--no-measure",
               "--sensitivity", "--out", str(tmp_path / "q.onnx"), "--json", str(tmp_path / "s.json")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "per-node sensitivity" in out and "mm2" in out and "exclude_nodes" in out
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["sensitivity"][0]["node"] == "mm2" and doc["sensitivity"][-1]["node"] == "(all nodes)"


@pytest.mark.slow
def test_auto_real_measurement_follows_the_rules(tmp_path, cnn, digits):
    """Through the real harness on a tiny conv net: which variant wins is the machine's business, the rules are not."""
    from workbench.quantize.auto import short_protocol
    from workbench.measure import Protocol

    inputs = tmp_path / "in.npz"
    np.savez(inputs, input=digits.x_test[:1])
    proto = Protocol(warmup_runs=3, warmup_s=0.05, min_runs=10, min_s=0.1, max_s=0.4)
    assert short_protocol().max_s <= 2
    res = auto_quantize(cnn, tmp_path / "auto.onnx", calib=digits.x_train[:64],
                        eval_fn=accuracy_eval(digits.x_test, digits.y_test, "input"), inputs=inputs,
                        max_drop=0.005, rounds=2, protocol=proto)
    assert (tmp_path / "auto.onnx").is_file() and res.candidates[0].spec == "fp32"
    measured = [c for c in res.candidates[1:] if c.ratio is not None]
    assert measured and all(c.verdict in ("faster", "slower", "equivalent", "inconclusive") for c in measured)
    if res.chosen_is_fp32:
        assert res.loud and "KEEPING FP32" in res.message
    else:
        assert res.chosen.within_budget and res.chosen.verdict == "faster" and res.chosen.drop <= 0.005 + 1e-9
        assert res.diagnostics["format"] in ("qdq", "qoperator") and res.diagnostics["quantized_time_share"] > 0


@pytest.mark.slow
def test_cli_auto(tmp_path, cnn, capsys):
    src = tmp_path / "m.onnx"
    src.write_bytes(cnn.read_bytes())
    rc = main(["quantize", str(src), "--method", "auto", "--task", "digits", "--max-drop", "0.5", "--rounds", "2",
               "--max-s", "0.3", "--calib-samples", "64", "--json", str(tmp_path / "a.json")])
    out = capsys.readouterr().out
    assert rc == 0, out
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["method"] == "auto" and doc["max_drop_points"] == 0.5 and (tmp_path / "m.auto.onnx").is_file()
    assert "auto: candidates measured interleaved with fp32" in out and "fp32" in out
    a = doc["auto"]
    if a["chosen_is_fp32"]:
        assert "KEEPING FP32" in out and "WARNING" in out
    else:
        assert a["chosen"]["verdict"] == "faster" and a["chosen"]["within_budget"] and "chose " in out
