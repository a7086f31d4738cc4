"""`workbench bench` per-operator profiles: recorded per model, and what changed vs the first model."""
import io
import json

import pytest

from workbench.cli import main
from workbench.measure import Protocol
from workbench.measure.op_diff import (changes_vs_first, describe_changes, op_changes, print_profiles,
                                       profile_runs)

SHORT = Protocol(warmup_runs=2, warmup_s=0.02, min_runs=10, min_s=0.1, max_s=0.3, memory_runs=3)


@pytest.fixture(autouse=True)
def short_protocol(monkeypatch):
    monkeypatch.setattr("workbench.pipeline.bench.default_protocol", lambda max_s=None: SHORT)


@pytest.fixture(scope="module")
def conv_pair(tmp_path_factory, digits):
    """A small conv net exported to ONNX, and its ORT dynamic-quantized copy: int8 weights make ORT use
    ConvInteger kernels, much slower than its float Conv on x86 (benchmarks: 3-8x)."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from workbench.export import export_onnx
    from workbench.zoo.models import SmallCNN

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("conv")
    fp32, int8 = d / "fp32.onnx", d / "dyn.onnx"
    export_onnx(SmallCNN(width=16, depth=2).eval(), digits.x_test[:1], fp32)
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    return str(fp32), str(int8)


def test_bench_records_profiles_and_names_convinteger(conv_pair, tmp_path, capsys):
    fp32, int8 = conv_pair
    out = tmp_path / "bench.json"
    assert main(["bench", fp32, int8, "--task", "digits", "--rounds", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = json.loads(out.read_text())["results"]
    assert [r["model"] for r in rows] == [fp32, int8]
    for r in rows:  # every model measured on ORT has its profile, from its own pass
        ops = r["profile"]
        assert ops and r["profile_runs"] >= 10 and "separate worker" in r["profile_method"]
        assert abs(sum(o["time_pct"] for o in ops) - 100) < 1e-6
        assert all(o["time_ms"] >= 0 and o["count"] >= 1 for o in ops)
    assert "ConvInteger" in {o["op_type"] for o in rows[1]["profile"]}
    assert "ConvInteger" not in {o["op_type"] for o in rows[0]["profile"]}
    changes = rows[1]["profile_changes"]
    conv_int = next(c for c in changes if c["op_type"] == "ConvInteger")
    assert conv_int["base_ms"] == 0 and conv_int["delta_ms"] > 0
    assert "profile_changes" not in rows[0]
    # the printed line names ConvInteger among the op types whose time changed most
    line = next(ln for ln in printed.splitlines() if ln.strip().startswith("dyn.onnx (1 thread(s)):")
                and " ms in " in ln)
    assert "ConvInteger (new)" in line and "kernels" in line
    assert "per-operator profile on ort" in printed and "vs fp32.onnx" in printed


def test_op_changes_and_description():
    a = [{"op_type": "Conv", "time_ms": 0.5, "time_pct": 50, "count": 2},
         {"op_type": "Gemm", "time_ms": 0.5, "time_pct": 50, "count": 1}]
    b = [{"op_type": "ConvInteger", "time_ms": 0.9, "time_pct": 60, "count": 2},
         {"op_type": "Gemm", "time_ms": 0.501, "time_pct": 40, "count": 1},
         {"op_type": "DynamicQuantizeLinear", "time_ms": 0.1, "time_pct": 6, "count": 2}]
    ch = op_changes(a, b)
    assert [c["op_type"] for c in ch] == ["ConvInteger", "Conv", "DynamicQuantizeLinear", "Gemm"]
    assert ch[0]["delta_ms"] == pytest.approx(0.9) and ch[1]["delta_ms"] == pytest.approx(-0.5)
    text = describe_changes(ch)
    assert text == "+0.90 ms in ConvInteger (new), -0.50 ms in Conv (gone), +0.10 ms in DynamicQuantizeLinear (new)"
    assert describe_changes(op_changes(a, a)).startswith("no op type changed by more than")
    assert op_changes(a, None) is None and op_changes([], b) is None
    # rows: per thread count, every model in order; each compared with the first model of its thread count
    rows = [{"profile": a}, {"profile": b}, {"profile": b}, {"profile": a}]
    got = changes_vs_first(rows, 2)
    assert got[0] is None and got[2] is None and got[1][0]["op_type"] == "ConvInteger"
    assert got[3][0]["op_type"] == "ConvInteger" and got[3][0]["delta_ms"] < 0
    assert profile_runs(None) == 50 and profile_runs(1000.0) == 10 and profile_runs(0.01) == 50


def test_runtime_without_profiler_is_said_once():
    from rich.console import Console

    buf = io.StringIO()
    rows = [{"runtime": {"options": {"threads": t}}, "profile": None} for t in (1, 1, 2, 2)]
    print_profiles(Console(file=buf, width=200), "litert", ["a.tflite", "b.tflite"], rows)
    assert buf.getvalue().count("no per-operator profile for litert") == 1
