"""Quantization-aware training / distillation: the simulated integer grid is ORT's, the fake-quantized
model agrees with the deployable int8 artifact, and `workbench distill --qat` end to end."""
import json

import numpy as np
import onnx
import pytest
import torch
from conftest import tiny_digits
from onnx import numpy_helper

from workbench.cli import main
from workbench.errors import RecipeError
from workbench.quantize.methods import parse_method
from workbench.quantize.qat import act_qparams, calibrate, fake_quant_spec, fold_batchnorm, prepare_qat, strip_qat
from workbench.zoo.models import SmallCNN
from workbench.zoo.weights import save_weights


@pytest.fixture(scope="module")
def tiny():
    return tiny_digits(200, 60, 120)


@pytest.fixture(scope="module")
def trained(tiny):
    torch.manual_seed(0)
    m = SmallCNN(in_channels=1, num_classes=10, width=8, depth=1)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    x, y = torch.from_numpy(tiny.x_train), torch.from_numpy(tiny.y_train)
    m.train()
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    return m.eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny, trained):
    root = tmp_path_factory.mktemp("qat")
    np.savez(root / "tiny.npz", x_train=tiny.x_train, y_train=tiny.y_train, x_val=tiny.x_val, y_val=tiny.y_val,
             x_test=tiny.x_test, y_test=tiny.y_test)
    save_weights(trained, root / "student.safetensors")
    return root


def test_spec_follows_the_static_method_options():
    d = fake_quant_spec(parse_method("static"))
    assert (d.per_channel, d.weight_qmin, d.weight_qmax, d.act_qmin, d.act_qmax) == (True, -64, 64, 0, 255)
    f = fake_quant_spec(parse_method("static?per_channel=false&reduce_range=false&activation_type=s8"))
    assert (f.per_channel, f.weight_qmax, f.act_qmin, f.act_qmax) == (False, 127, -128, 127)
    for bad in ("dynamic", "fp16", "static?exclude_nodes=a", "static?weight_type=u8"):
        with pytest.raises(RecipeError):
            fake_quant_spec(parse_method(bad))


def test_activation_qparams_hold_zero_and_match_ort_formula():
    spec = fake_quant_spec(parse_method("static"))
    scale, zero = act_qparams(0.5, 6.0, spec)  # the range is widened to hold 0
    assert scale == pytest.approx(6.0 / 255) and zero == 0
    scale, zero = act_qparams(-1.0, 3.0, spec)
    assert scale == pytest.approx(4.0 / 255) and zero == round(1.0 / (4.0 / 255))


def test_fold_strip_round_trip_keeps_the_function(trained, tiny):
    folded, ok = fold_batchnorm(trained)
    assert ok and not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.from_numpy(tiny.x_test[:16])
    q, info = prepare_qat(trained, fake_quant_spec(parse_method("static")))
    assert info["wrapped_conv"] == 3 and info["wrapped_linear"] == 1 and info["batchnorm_folded"]
    with torch.no_grad():
        ref = trained(x)
        assert torch.allclose(folded(x), ref, atol=1e-4)
        assert torch.allclose(strip_qat(q)(x), ref, atol=1e-4)  # stripping gives back the float layers


def test_simulated_weight_grid_is_the_artifacts(trained, tiny, tmp_path):
    """Every weight DequantizeLinear scale ORT writes equals the fake quantizer's max|w| / 64 per channel."""
    from workbench.export import export_onnx

    folded, _ = fold_batchnorm(trained)
    export_onnx(folded, tiny.x_test[:1], tmp_path / "f.onnx")
    parse_method("static").apply(tmp_path / "f.onnx", tmp_path / "q.onnx", tiny.x_train, "input")
    model = onnx.load(str(tmp_path / "q.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    convs = [m for m in folded.modules() if isinstance(m, torch.nn.Conv2d)]
    want = sorted(tuple(np.round(c.weight.detach().abs().flatten(1).amax(1).numpy() / 64, 7)) for c in convs)
    got = []
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None and inits[n.input[0]].ndim == 4:
            got.append(tuple(np.round(inits[n.input[1]], 7)))
    assert len(got) == len(convs)
    for g, w in zip(sorted(got), want):
        np.testing.assert_allclose(g, w, rtol=1e-5)


def test_fake_quant_model_agrees_with_the_int8_artifact(trained, tiny, tmp_path):
    from workbench.evaluate import run_artifact
    from workbench.export import export_onnx

    q, _ = prepare_qat(trained, fake_quant_spec(parse_method("static")))
    calibrate(q, tiny.x_train)
    export_onnx(strip_qat(q), tiny.x_test[:1], tmp_path / "f.onnx")
    parse_method("static").apply(tmp_path / "f.onnx", tmp_path / "q.onnx", tiny.x_train, "input")
    art = run_artifact(str(tmp_path / "q.onnx"), "ort", tiny.x_test, "input")
    with torch.no_grad():
        sim = q.eval()(torch.from_numpy(tiny.x_test)).numpy()
    assert (art.argmax(1) == sim.argmax(1)).mean() >= 0.95
    assert np.abs(art - sim).max() < 0.25 * np.abs(sim).max()


def test_qat_gradients_flow_through_the_rounding(trained, tiny):
    q, _ = prepare_qat(trained, fake_quant_spec(parse_method("static")))
    calibrate(q, tiny.x_train)
    q.train()
    loss = torch.nn.functional.cross_entropy(q(torch.from_numpy(tiny.x_train[:32])), torch.from_numpy(tiny.y_train[:32]))
    loss.backward()
    grads = [p.grad for p in q.parameters()]
    assert all(g is not None for g in grads) and all(float(g.abs().sum()) > 0 for g in grads)


def _qat_args(files, out, *extra):
    return ["distill", "--qat", "static", "--student", f"zoo:cnn?width=8&depth=1&weights={files / 'student.safetensors'}",
            "--task", f"npz:{files / 'tiny.npz'}", "--epochs", "2", "--lr", "5e-4", "--no-measure", "--quiet",
            "--cache", str(files / "cache"), "--out", str(out), *extra]


def test_cli_qat_labels_only_writes_deployable_int8_and_compares_with_ptq(files, tmp_path, capsys):
    out = tmp_path / "qat"
    assert main(_qat_args(files, out, "--alpha", "0")) == 0
    text = capsys.readouterr().out
    assert "QAT - PTQ:" in text and "fake-quantized PyTorch vs int8 artifact" in text
    for f in ("student.fp32.onnx", "student.ptq.onnx", "student.onnx", "student.int8.onnx", "student.safetensors"):
        assert (out / f).is_file(), f
    card = json.loads((out / "card.json").read_text())
    assert card["mode"] == "qat" and card["teacher"] is None
    ops = {n.op_type for n in onnx.load(str(out / "student.int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # a real QDQ int8 artifact
    for f in card["artifacts"].values():
        assert 0 <= card["test_accuracy"][f]["value"] <= 1
    assert card["fake_quant_agreement"] >= 0.9
    lo, hi = card["qat_minus_ptq"]["ci95"]
    assert lo <= card["qat_minus_ptq"]["diff"] <= hi
    assert len(card["fit"]["history"]) == 2


@pytest.mark.slow
def test_cli_qad_with_teacher_and_latency(files, tmp_path, capsys):
    out = tmp_path / "qad"
    teacher = f"zoo:cnn?width=8&depth=1&weights={files / 'student.safetensors'}"
    args = [a for a in _qat_args(files, out) if a != "--no-measure"]
    assert main(args + ["--teacher", teacher]) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["mode"] == "qad" and card["teacher"]["spec"] == teacher
    lat = card["latency"]["variants"]
    assert set(lat) == {"student.fp32.onnx", "student.ptq.onnx", "student.int8.onnx"}
    assert lat["student.int8.onnx"]["ratio_to_fp32"] > 0 and lat["student.int8.onnx"]["verdict"]


@pytest.mark.parametrize("extra, needle", [
    (["--alpha", "0", "--qat", "dynamic"], "QAT simulates static int8"),
    ([], "needs --teacher"),
    (["--alpha", "0", "--qat", "static?bogus=1"], "no option bogus"),
])
def test_cli_qat_bad_input_is_one_line_and_exit_2(files, tmp_path, capsys, extra, needle):
    out = tmp_path / "bad"
    assert main(_qat_args(files, out, *extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
    assert not out.exists()  # nothing written


def test_cli_qat_refuses_an_untrained_student(files, tmp_path, capsys):
    args = _qat_args(files, tmp_path / "u", "--alpha", "0")
    args[args.index("--student") + 1] = "zoo:cnn?width=8&depth=1"
    assert main(args) == 2
    assert "TRAINED student" in capsys.readouterr().err
