"""The harness end to end: real worker processes on tiny ONNX models, crashes, hangs, memory.

The adapters below are module-level Runtime classes: the harness passes their import path to the
worker process, which re-creates them there (the job's ``adapter`` hook).
"""
from __future__ import annotations

import math

import json
import os
import signal
import sys
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from workbench.errors import ArtifactError, MeasurementError, RecipeError
from workbench.measure import (LatencyMeasurement, Protocol, combine, compare, measure_interleaved, measure_latency,
                               measure_memory, profile_ops)
from workbench.runtimes import InputSpec, Runtime, Session
from workbench.runtimes.ort import OrtRuntime

SHORT = Protocol(warmup_runs=3, warmup_s=0.05, min_runs=20, min_s=0.2, max_s=1.0, memory_runs=5,
                 timeout_s=60, bootstrap_resamples=500)


def _save(model, path) -> str:
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


def tiny_model(path) -> str:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 32])
    w = np.random.default_rng(0).standard_normal((32, 32)).astype(np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "tiny", [x], [y],
                          [helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.ravel())])
    return _save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


def big_model(path, rows=2500, cols=4000) -> str:
    """Gather from a 40 MB float32 initializer: the weights cannot be constant-folded away."""
    idx = helper.make_tensor_value_info("idx", TensorProto.INT64, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cols])
    w = np.full((rows, cols), 0.5, dtype=np.float32)
    g = helper.make_graph([helper.make_node("Gather", ["w", "idx"], ["y"], axis=0)], "big", [idx], [y],
                          [helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.tobytes(), raw=True)])
    return _save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


# --------------------------------------------------------------------------- test adapters

class _NoopSession(Session):
    def input_specs(self):
        return [InputSpec("x", (1,), "float32")]

    def run(self, feeds):
        return [feeds["x"]]


class ExitRuntime(Runtime):
    """Crashes natively-style during load: prints to stderr and exits with code 3."""

    name = "test-exit"
    formats = ("onnx",)

    def available(self):
        return True

    def load(self, path, threads):
        sys.stderr.write("fatal: the runtime blew up\nlibfake: abort in kernel 42\n")
        sys.stderr.flush()
        os._exit(3)


class KillRuntime(ExitRuntime):
    name = "test-kill"

    def load(self, path, threads):
        sys.stderr.write("allocating a lot\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


class HangRuntime(ExitRuntime):
    name = "test-hang"

    def load(self, path, threads):
        time.sleep(600)


class NoProfilerRuntime(ExitRuntime):
    """Loads and runs, but has no profiler (the base class's ``profile``)."""

    name = "test-noprof"

    def load(self, path, threads):
        return _NoopSession()


class RaisingRuntime(ExitRuntime):
    name = "test-raise"

    def load(self, path, threads):
        class S(_NoopSession):
            def run(self, feeds):
                raise ValueError("bad\nkernel shape")

        return S()


# --------------------------------------------------------------------------- latency

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("m") / "tiny.onnx")


@pytest.fixture(scope="module")
def measured(tiny):
    progress = []
    m = measure_latency(tiny, "ort", 1, None, SHORT, on_progress=progress.append)
    return m, progress


def test_measure_latency_on_tiny_model(measured):
    m, progress = measured
    assert isinstance(m, LatencyMeasurement)
    s = m.stats
    assert s.n == len(m.samples) >= SHORT.min_runs
    assert all(v > 0 for v in m.samples)
    assert 0 < s.min <= s.median <= s.p90 <= s.max < 1000
    assert s.ci95_median[0] <= s.median <= s.ci95_median[1]
    assert m.threads == 1 and m.runtime_options["threads"] == 1 and m.runtime_options["intra_op_num_threads"] == 1
    assert m.stop_reason in ("ci_target", "max_s")
    assert 0 < m.phases.load_ms <= m.phases.process_to_ready_ms and m.phases.first_ms > 0
    assert m.input["source"] == "generated" and m.input["shapes"] == {"x": [1, 32]}
    assert any(isinstance(p, float) for p in progress) and "timing" in progress and progress[-1] == 1.0


def test_latency_json_schema(measured):
    m, _ = measured
    d = json.loads(json.dumps(m.to_json(), allow_nan=False))
    assert set(d) >= {"runtime", "input", "protocol", "phases", "latency", "stability"}
    assert d["runtime"]["name"] == "ort" and d["runtime"]["version"] and d["runtime"]["options"]["threads"] == 1
    assert set(d["input"]) == {"shapes", "dtypes", "source"}
    assert {"load_ms", "process_to_ready_ms", "first_ms"} <= set(d["phases"])
    lat = d["latency"]
    assert lat["unit"] == "ms" and len(lat["samples"]) == lat["n"]
    assert {"median", "mean", "p90", "p95", "p99", "min", "max", "std", "cv", "mad", "ci95_median", "ci95_p90",
            "ci_method"} <= set(lat)
    assert d["protocol"]["min_runs"] == 20 and d["protocol"]["processes"] == 1
    st = d["stability"]
    assert isinstance(st["warnings"], list) and isinstance(st["sentinel_drift_pct"], float)
    for w in st["warnings"]:
        assert set(w) == {"code", "message", "advice"}
    back = LatencyMeasurement.from_json(d, model_path=m.model_path)
    assert back.samples == m.samples and back.stats == m.stats


def test_combine_pools_processes(measured):
    m, _ = measured
    both = combine([m, m])
    assert both.processes == 2 and both.stats.n == 2 * m.stats.n
    assert both.stats.median == pytest.approx(m.stats.median)


def test_inputs_file_and_two_threads(tmp_path, tiny):
    npz = tmp_path / "inputs.npz"
    np.savez(npz, x=np.ones((3, 32), dtype=np.float64))  # float64 is cast to the model's float32
    m = measure_latency(tiny, "ort", 2, str(npz), SHORT)
    assert m.input == {"shapes": {"x": [3, 32]}, "dtypes": {"x": "float32"}, "source": "inputs.npz"}
    assert m.threads == 2 and m.runtime_options["intra_op_num_threads"] == 2


def test_inputs_file_missing_an_input(tmp_path, tiny):
    npz = tmp_path / "wrong.npz"
    np.savez(npz, y=np.ones((1, 32), dtype=np.float32))
    with pytest.raises(MeasurementError, match="wrong.npz lacks x"):
        measure_latency(tiny, "ort", 1, str(npz), SHORT)


# --------------------------------------------------------------------------- failures

def _one_line(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_missing_and_corrupt_artifacts(tmp_path):
    with pytest.raises(ArtifactError, match="no such file"):
        measure_latency(str(tmp_path / "nope.onnx"), "ort", 1, None, SHORT)
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"definitely not onnx")
    with pytest.raises(ArtifactError) as e:
        measure_latency(str(bad), "ort", 1, None, SHORT)
    assert _one_line(e).startswith("cannot load model.onnx with onnxruntime: ")


def test_bad_arguments(tiny):
    with pytest.raises(RecipeError, match="unknown runtime"):
        measure_latency(tiny, "nope", 1, None, SHORT)
    with pytest.raises(RecipeError, match="threads"):
        measure_latency(tiny, "ort", 0, None, SHORT)


def test_crashing_worker_exit_code(tiny):
    with pytest.raises(MeasurementError) as e:
        measure_latency(tiny, ExitRuntime(), 1, None, SHORT)
    msg = _one_line(e)
    assert msg == ("measuring tiny.onnx on test-exit (1 thread) failed: worker exited with code 3: "
                   "libfake: abort in kernel 42")


def test_killed_worker_reports_signal(tiny):
    with pytest.raises(MeasurementError) as e:
        measure_memory(tiny, KillRuntime(), 2, None, SHORT)
    assert _one_line(e) == ("measuring tiny.onnx on test-kill (2 threads) failed: worker exited with signal 9 "
                            "(killed; out of memory?): allocating a lot")


def test_exception_in_session_is_one_line(tiny):
    with pytest.raises(MeasurementError) as e:
        measure_latency(tiny, RaisingRuntime(), 1, None, SHORT)
    assert "ValueError: bad kernel shape" in _one_line(e)


def test_hanging_worker_is_killed_at_timeout(tiny):
    p = Protocol(warmup_runs=1, warmup_s=0.0, min_runs=5, min_s=0.1, max_s=1.0, timeout_s=2.0)
    t0 = time.monotonic()
    with pytest.raises(MeasurementError) as e:
        measure_latency(tiny, HangRuntime(), 1, None, p)
    assert time.monotonic() - t0 < 10
    assert "timeout_s=2 s" in _one_line(e) and "killed" in str(e.value)


def test_local_adapter_classes_are_refused(tiny):
    class Local(ExitRuntime):
        pass

    with pytest.raises(RecipeError, match="module-level"):
        measure_latency(tiny, Local(), 1, None, SHORT)


# --------------------------------------------------------------------------- memory

def test_memory_of_a_40mb_model_vs_a_tiny_one(tmp_path, tiny):
    big = measure_memory(big_model(tmp_path / "big.onnx"), "ort", 1, None, SHORT)
    small = measure_memory(tiny, OrtRuntime(), 1, None, SHORT)
    for m in (big, small):
        assert 0 < m.baseline_mb <= m.after_load_mb <= m.peak_mb
        assert m.peak_delta_mb == pytest.approx(m.peak_mb - m.baseline_mb)
        assert "VmHWM" in m.method or "ru_maxrss" in m.method
        assert set(m.to_json()) >= {"baseline_mb", "after_load_mb", "peak_mb", "peak_delta_mb", "method"}
    assert big.after_load_mb - big.baseline_mb >= 35
    assert big.peak_delta_mb >= 35
    assert small.after_load_mb - small.baseline_mb < 20
    assert small.peak_delta_mb < big.peak_delta_mb - 25


# --------------------------------------------------------------------------- interleaved

def test_interleaved_order_is_shuffled_per_round_seeded_and_recorded(monkeypatch, measured, tmp_path):
    import dataclasses

    import workbench.measure.interleave as il

    m, _ = measured
    paths = [tiny_model(tmp_path / f"{name}.onnx") for name in "abc"]
    calls = []

    def fake(job, model_path, protocol, on_progress=None):
        calls.append((os.path.basename(model_path), protocol.min_s, protocol.max_s))
        return dataclasses.replace(m, model_path=model_path, protocol=protocol)

    monkeypatch.setattr(il, "latency_from_job", fake)
    progress = []
    res = measure_interleaved(paths, "ort", 1, None, SHORT, rounds=6, seed=3,
                              on_progress=lambda f, msg: progress.append((f, msg)))
    order = res[0].interleave["order"]
    assert [c[0] for c in calls] == [x for rnd in order for x in rnd]  # the order recorded is the order used
    assert all(sorted(rnd) == ["a.onnx", "b.onnx", "c.onnx"] for rnd in order) and len(order) == 6
    assert len({tuple(rnd) for rnd in order}) > 1  # shuffled, not the same every round
    again = measure_interleaved(paths, "ort", 1, None, SHORT, rounds=6, seed=3)
    assert again[0].interleave["order"] == order and again[0].interleave["id"] != res[0].interleave["id"]
    assert {c[1:] for c in calls} == {(SHORT.min_s / 6, SHORT.max_s / 6)}  # per-worker budget
    assert [r.model_path for r in res] == paths and [r.interleave["label"] for r in res] == ["a.onnx", "b.onnx", "c.onnx"]
    for r in res:
        assert r.processes == 6 and r.process_rounds == tuple(range(6)) and r.protocol == SHORT
        assert r.stats.n == 6 * m.stats.n and "two-level" in r.stats.ci_method
    assert progress[-1] == (1.0, "done") and all(0 <= f <= 1 for f, _ in progress)
    assert [f for f, _ in progress] == sorted(f for f, _ in progress)
    with pytest.raises(RecipeError, match="rounds"):
        measure_interleaved(paths, "ort", 1, None, SHORT, rounds=0)
    with pytest.raises(RecipeError, match="list of model paths"):
        measure_interleaved(paths[0], "ort", 1, None, SHORT)


def test_interleaved_real_workers_json_and_paired_compare(tiny):
    p = Protocol(warmup_runs=3, warmup_s=0.05, min_runs=20, min_s=0.2, max_s=0.6, timeout_s=60,
                 bootstrap_resamples=300)
    a, b = measure_interleaved([tiny, tiny], "ort", 1, None, p, rounds=2, seed=0)
    assert a.interleave["models"] == ["tiny.onnx", "tiny.onnx#2"] and a.interleave_id == b.interleave_id
    d = json.loads(json.dumps(a.to_json(), allow_nan=False))
    assert d["protocol"]["processes"] == 2 and d["protocol"]["min_s"] == 0.2
    assert d["protocol"]["interleave"]["order"] == a.interleave["order"] and d["protocol"]["interleave"]["rounds"] == 2
    lat = d["latency"]
    assert len(lat["process_n"]) == 2 and sum(lat["process_n"]) == lat["n"] and len(lat["process_medians"]) == 2
    assert lat["process_rounds"] == [0, 1] and "two-level" in lat["ci_method"]
    back = LatencyMeasurement.from_json(d, model_path=a.model_path)
    assert back.process_n == a.process_n and back.interleave_id == a.interleave_id
    c = compare(a, b, resamples=300)
    # the ratio itself is a timing on a shared machine: assert what it is made of, not its value
    assert "paired by round" in c.method and c.rounds == 2
    assert 0 < c.ci95[0] <= c.ratio_median <= c.ci95[1] and math.isfinite(c.ratio_median)
    assert "paired by round" in compare(d, b.to_json(), resamples=300).method


# --------------------------------------------------------------------------- per-operator profile

def conv_model(path, quantize=False) -> str:
    r = np.random.default_rng(0)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w1 = r.standard_normal((16, 3, 3, 3)).astype(np.float32)
    w2 = r.standard_normal((16, 16, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c2"], ["y"])]
    g = helper.make_graph(nodes, "convs", [x], [y], [onnx.numpy_helper.from_array(w1, "w1"),
                                                     onnx.numpy_helper.from_array(w2, "w2")])
    out = _save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    if not quantize:
        return out
    from onnxruntime.quantization import QuantType, quantize_dynamic

    q = str(path).replace(".onnx", ".int8.onnx")
    quantize_dynamic(out, q, weight_type=QuantType.QUInt8)
    return q


def test_profile_ops_conv_model(tmp_path):
    ops = profile_ops(conv_model(tmp_path / "conv.onnx"), "ort", 1, None, runs=20, protocol=SHORT)
    assert sum(o["time_pct"] for o in ops) == pytest.approx(100.0)
    assert [o["time_pct"] for o in ops] == sorted((o["time_pct"] for o in ops), reverse=True)
    kinds = {o["op_type"]: o for o in ops}
    conv = kinds.get("Conv") or kinds.get("FusedConv")
    assert conv is not None and conv["count"] >= 2 and conv["time_ms"] > 0
    assert all(set(o) == {"op_type", "time_pct", "time_ms", "count"} for o in ops)


def test_profile_ops_dynamically_quantized_conv_shows_convinteger(tmp_path):
    ops = profile_ops(conv_model(tmp_path / "conv.onnx", quantize=True), "ort", 1, None, runs=20, protocol=SHORT)
    kinds = {o["op_type"]: o for o in ops}
    assert "ConvInteger" in kinds and kinds["ConvInteger"]["count"] == 2
    assert sum(o["time_pct"] for o in ops) == pytest.approx(100.0)


def test_profile_ops_without_a_profiler_is_empty(tiny):
    assert profile_ops(tiny, NoProfilerRuntime(), 1, None, runs=3, protocol=SHORT) == []
    with pytest.raises(RecipeError, match="runs"):
        profile_ops(tiny, "ort", 1, None, runs=0)


def test_worker_refuses_an_unknown_mode_in_one_line():
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "workbench.measure.worker"], input=json.dumps({"mode": "nope"}),
                          capture_output=True, text=True, timeout=60)
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert last["error"]["type"] == "MeasurementError"
    assert last["error"]["message"] == "unknown worker mode 'nope'; one of: latency, memory, profile"
