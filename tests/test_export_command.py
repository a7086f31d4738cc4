"""`workbench export`: a torchvision: and a py: model to every format (parity, accuracy through each runtime,
latency through the harness), the exporter registry, and bad input (one line, exit 2, nothing written)."""
from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest

from workbench.cli import main

NET = """
import torch


def make(in_channels=1, num_classes=3):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(in_channels, 4, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(16, num_classes))
"""


@pytest.fixture()
def user(tmp_path, monkeypatch):
    """A folder with a py: model file and a tiny labelled npz task (8x8 grey images, 3 classes)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.py").write_text(textwrap.dedent(NET))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "t.npz", x=rng.normal(size=(60, 1, 8, 8)).astype(np.float32), y=rng.integers(0, 3, 60))
    rgb = rng.normal(size=(40, 3, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "rgb.npz", x=rgb, y=rng.integers(0, 3, 40))
    return tmp_path


def _one_line_exit_2(capsys, argv, *needles):
    assert main(argv) == 2
    cap = capsys.readouterr()
    lines = [line for line in cap.err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("argv, needles", [
    (["--to", "onnx,coreml"], ("unknown format 'coreml'", "executorch")),
    (["--to", ""], ("--to names no format",)),
    (["--to", "onnx", "--int8", "pt2e"], ("applied by executorch", "add executorch to --to")),
    (["--to", "executorch", "--int8", "nosuch"], ("unknown quantization method 'nosuch'",)),
    (["--to", "executorch", "--int8", "pt2e?mode=x"], ("pt2e has no option mode",)),
    (["--to", "onnx", "--int8", "fp16"], ("gives fp16, not int8",)),
])
def test_bad_requests_are_one_line_and_write_nothing(user, capsys, argv, needles):
    _one_line_exit_2(capsys, ["export", "py:net.py:make", "--task", "npz:t.npz", "--out", "o", *argv], *needles)
    assert not (user / "o").exists()


def test_bad_model_and_task_write_nothing(user, capsys):
    _one_line_exit_2(capsys, ["export", "py:net.py:nosuch", "--task", "npz:t.npz", "--out", "o"], "nosuch")
    _one_line_exit_2(capsys, ["export", "py:net.py:make", "--task", "npz:missing.npz", "--out", "o"], "missing.npz")
    _one_line_exit_2(capsys, ["export", "torchvision:nosuchnet", "--task", "npz:t.npz", "--out", "o"], "nosuchnet")
    assert not (user / "o").exists()


def test_missing_runtime_names_its_install_command(user, capsys, monkeypatch):
    from workbench.runtimes import RUNTIMES

    monkeypatch.setattr(type(RUNTIMES.get("litert")), "available", lambda self: False)
    line = _one_line_exit_2(capsys, ["export", "py:net.py:make", "--to", "onnx,litert", "--task", "npz:t.npz",
                                     "--out", "o"], "runtime 'litert' is not installed", "install it with: pip install")
    assert "remove 'litert' from --to" in line
    assert not (user / "o").exists()


def test_a_format_that_fails_is_a_note_and_the_others_go_on(user, monkeypatch):
    from workbench.errors import ExportError
    from workbench.export import EXPORTERS
    from workbench.export.standalone import export_model

    def fail(self, *a, **k):
        raise ExportError("ort-mobile conversion failed for a test reason")

    monkeypatch.setattr(type(EXPORTERS.get("ort-mobile")), "_export", fail)
    path = export_model("py:net.py:make", "onnx,ort-mobile", None, "npz:t.npz", "o", measure=False, echo=lambda s: None)
    doc = json.loads(path.read_text())
    assert [r["format"] for r in doc["artifacts"]] == ["onnx"]
    assert any("ort-mobile" in n and "test reason" in n for n in doc["notes"])
    row = doc["artifacts"][0]
    assert row["variant"] == "net.fp32" and (user / "o" / row["path"]).is_file()
    assert row["parity"]["max_abs"] < 1e-4 and row["accuracy"]["n"] == 12 and row["latency"] is None


def test_registry_and_runtime_lookup():
    from workbench.errors import ExportError, QuantizationError
    from workbench.export import EXPORTERS, exporter_for_runtime
    from workbench.quantize import parse_method

    assert EXPORTERS.names() == ["executorch", "litert", "onnx", "ort-mobile"]
    assert {rt: exporter_for_runtime(rt).name for rt in ("ort", "ort-mobile", "executorch", "litert")} == {
        "ort": "onnx", "ort-mobile": "ort-mobile", "executorch": "executorch", "litert": "litert"}
    with pytest.raises(ExportError):
        exporter_for_runtime("nosuch")
    pt2e, full, static = parse_method("pt2e"), parse_method("litert-full"), parse_method("static")
    assert EXPORTERS.get("executorch").applies(pt2e) and not EXPORTERS.get("litert").applies(pt2e)
    assert EXPORTERS.get("litert").precision_word(full) == "int8-full"
    assert EXPORTERS.get("onnx").applies(static) and EXPORTERS.get("ort-mobile").applies(static)
    with pytest.raises(QuantizationError, match="--to executorch --int8 pt2e"):
        pt2e.apply("a.onnx", "b.onnx")


def test_runtimes_never_import_export():
    """Imports run export -> evaluate -> runtimes: loading every adapter pulls in no exporter."""
    import subprocess

    code = ("import sys, workbench.runtimes.executorch, workbench.runtimes.litert, workbench.evaluate; "
            "print(any(m.startswith('workbench.export') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.slow
@pytest.mark.ort_mobile
@pytest.mark.executorch
@pytest.mark.litert
def test_py_model_to_all_four_formats_measured(user, capsys):
    pytest.importorskip("executorch")
    pytest.importorskip("ai_edge_litert")
    argv = ["export", "py:net.py:make", "--to", "onnx,ort-mobile,executorch,litert",
            "--int8", "static,pt2e,litert-dynamic", "--task", "npz:t.npz", "--out", "o", "--rounds", "1",
            "--max-s", "0.05"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    doc = json.loads((user / "o" / "export.json").read_text())
    got = {(r["format"], r["variant"]) for r in doc["artifacts"]}
    assert got == {("onnx", "net.fp32"), ("onnx", "net.int8-static"), ("ort-mobile", "net.fp32"),
                   ("ort-mobile", "net.int8-static"), ("executorch", "net.fp32"), ("executorch", "net.int8-pt2e"),
                   ("litert", "net.fp32"), ("litert", "net.int8-litert-dynamic")}, doc["notes"]
    for r in doc["artifacts"]:
        assert (user / "o" / r["path"]).is_file()
        assert r["accuracy"]["n"] == 12 and 0 <= r["accuracy"]["value"] <= 1
        assert r["latency"]["median_ms"] > 0 and r["latency"]["interleaved"]
        if r["precision"] == "fp32":
            assert r["parity"]["max_abs"] < 1e-4  # checked within tolerance
            assert r["accuracy"]["value"] == pytest.approx(doc["pytorch_accuracy"])
        else:
            assert r["parity"]["n"] == 12 and "recorded" in r["parity"]["criterion"]
            assert "ratio_median" in r["latency"]["vs_fp32"]
    assert "net.int8-pt2e" in out and "median ms" in out


@pytest.mark.slow
@pytest.mark.ort_mobile
@pytest.mark.executorch
@pytest.mark.litert
def test_torchvision_model_to_all_four_formats(user):
    pytest.importorskip("executorch")
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("torchvision")
    from workbench.export.standalone import export_model

    path = export_model("torchvision:mobilenet_v3_small", "onnx,ort-mobile,executorch,litert", None, "npz:rgb.npz",
                        "tv", measure=False, echo=lambda s: None)
    doc = json.loads(path.read_text())
    assert [r["format"] for r in doc["artifacts"]] == ["onnx", "ort-mobile", "executorch", "litert"], doc["notes"]
    for r in doc["artifacts"]:
        assert r["variant"] == "mobilenet_v3_small.fp32" and (user / "tv" / r["path"]).is_file()
        assert r["parity"]["max_abs"] < 1e-2 and r["accuracy"]["n"] == 8  # fp32: checked by the exporter


def test_no_format_converted_is_one_line_and_leaves_no_folder(user, capsys, monkeypatch):
    from workbench.errors import ExportError
    from workbench.export import EXPORTERS

    def fail(self, *a, **k):
        raise ExportError("unsupported operator in a test")

    monkeypatch.setattr(type(EXPORTERS.get("onnx")), "_export", fail)
    _one_line_exit_2(capsys, ["export", "py:net.py:make", "--to", "onnx", "--task", "npz:t.npz", "--out", "o"],
                     "no format could convert", "unsupported operator in a test")
    assert not (user / "o").exists()
