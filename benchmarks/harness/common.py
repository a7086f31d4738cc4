"""Shared helpers for the harness benchmarks: ONNX models built here, the machine line, verdict lines."""
from __future__ import annotations

import os
import sys
import time

import numpy as np

SHOWN_PROTOCOL = ("warmup_runs", "warmup_s", "min_runs", "min_s", "max_s", "target_ci")


def mlp(path: str, width: int, depth: int, batch: int, seed: int = 0) -> str:
    """``depth`` MatMul + Add + Relu layers of ``width`` on a ``batch`` x ``width`` input (onnx.helper)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits, prev = [], [], "x"
    for i in range(depth):
        w = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        b = np.zeros(width, dtype=np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"]),
                  helper.make_node("Relu", [f"a{i}"], [f"h{i}" if i < depth - 1 else "y"])]
        prev = f"h{i}"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, width])
    g = helper.make_graph(nodes, f"mlp_{width}x{depth}", [x], [y], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def quick_median_ms(path: str, threads: int = 1, seconds: float = 1.0) -> float:
    """A rough in-process median, only to check a model's size (never a reported number)."""
    from workbench.runtimes.ort import OrtRuntime

    s = OrtRuntime().load(path, threads)
    spec = s.input_specs()[0]
    feeds = {spec.name: np.ones(spec.shape, dtype=np.float32)}
    for _ in range(5):
        s.run(feeds)
    t = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(t) < 5:
        t0 = time.perf_counter_ns()
        s.run(feeds)
        t.append(time.perf_counter_ns() - t0)
    return float(np.median(t)) / 1e6


def header(title: str, compares: str, target: str, protocol=None, threads: int = 1) -> None:
    from workbench.measure import collect_environment

    env = collect_environment()
    v = env["versions"]
    print(f"== {title}")
    print(f"compares: {compares}")
    print(f"target:   {target}")
    print(f"machine:  {env['description']}")
    print(f"versions: onnxruntime {v.get('onnxruntime')}, numpy {v.get('numpy')}, python {env['python']}; "
          f"load average at start {', '.join(f'{x:.2f}' for x in env['loadavg'] or [])}")
    if protocol is not None:
        shown = ", ".join(f"{k}={getattr(protocol, k)}" for k in SHOWN_PROTOCOL)
        print(f"protocol: {shown}; threads={threads}")
    print(f"steadiness: {steadiness()}")
    print()
    sys.stdout.flush()


def steadiness(probes: int = 12) -> str:
    """How steady this machine's speed is right now: the harness's fixed sentinel kernel timed
    ``probes`` times over ~2 s (a VM's host can slow it down even when nothing runs inside the VM)."""
    from workbench.measure.worker import sentinel_ms

    t = []
    for _ in range(probes):
        t.append(sentinel_ms(reps=3))
        time.sleep(0.15)
    lo, mid, hi = min(t), float(np.median(t)), max(t)
    return (f"sentinel kernel {mid:.2f} ms median over {probes} probes in ~2 s, range {lo / mid - 1:+.1%} .. "
            f"{hi / mid - 1:+.1%} (a quiet machine stays within a few %)")


def ci(c) -> str:
    return f"[{c[0]:.4f}, {c[1]:.4f}]" if c else "n/a"


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def finish(checks: list[tuple[str, bool]], t0: float) -> int:
    """Print each target line with met / NOT met, the overall verdict and the time; the exit code."""
    import time

    print()
    for line, ok in checks:
        print(f"{line}: {met(ok)}")
    ok = all(ok for _, ok in checks)
    print(f"overall: {met(ok)} ({time.perf_counter() - t0:.0f} s)")
    return 0 if ok else 1


def warning_codes(m) -> list[str]:
    return [w.code for w in m.stability.warnings]


def tmpdir(prefix: str) -> str:
    import tempfile

    return tempfile.mkdtemp(prefix=f"workbench-bench-{prefix}-")


def elapsed(t0: float) -> str:
    return f"{time.perf_counter() - t0:.0f} s"


def cleanup(path: str) -> None:
    import shutil

    if path and os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
