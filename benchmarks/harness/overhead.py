"""Benchmark: harness overhead -- the harness median vs a raw timed loop of ``session.run``.

Both sides run in fresh processes with the same ORT settings (1 intra-op thread, sequential,
ORT_ENABLE_ALL, CPU provider), the same inputs (one .npz), and the same warm-up (>= 10 runs and >= 0.5 s).
The raw side is the loop a user would write: onnxruntime imported directly, ``perf_counter_ns``
around ``session.run``, nothing else. Harness and raw processes alternate over several rounds in
a shuffled order, so drift hits both alike; the ratio is median(harness) / median(raw) over the
pooled samples, with a two-level bootstrap CI paired by round.

    .venv/bin/python benchmarks/harness/overhead.py [--rounds 4] [--threads 1]

Target (issue 3): ratio within 1.00 +- 0.02 for a ~0.3 ms and a ~10 ms model.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time

import numpy as np

from common import cleanup, header, met, mlp, tmpdir

MODELS = {"~0.3 ms MLP (256 wide, 8 layers, batch 32)": (256, 8, 32),
          "~10 ms MLP (1024 wide, 7 layers, batch 64)": (1024, 7, 64)}
RAW_SECONDS = 3.0
TARGET = 0.02


def raw_loop(path: str, inputs: str, threads: int, seconds: float) -> None:
    """Child process: the plain timed loop. Prints one JSON line of samples in ns."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    with np.load(inputs) as z:
        feeds = {k: z[k] for k in z.files}
    n, w0 = 0, time.perf_counter()
    while n < 10 or time.perf_counter() - w0 < 0.5:  # the harness's default warm-up
        sess.run(None, feeds)
        n += 1
    samples, clock = [], time.perf_counter_ns
    end = clock() + int(seconds * 1e9)
    while True:
        t0 = clock()
        sess.run(None, feeds)
        t1 = clock()
        samples.append(t1 - t0)
        if t1 >= end:
            break
    print(json.dumps(samples))


def run_raw(path: str, inputs: str, threads: int, seconds: float) -> list[float]:
    from workbench.measure.worker import thread_env

    env = dict(os.environ, **thread_env(threads))
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--raw", path, inputs, str(threads), str(seconds)],
                         env=env, capture_output=True, text=True, check=True)
    return [ns / 1e6 for ns in json.loads(out.stdout.strip().splitlines()[-1])]


def record(per_round: list[list[float]], run_id: str) -> dict:
    """A results.json-shaped record, so ``compare`` pairs the two sides by round."""
    return {"latency": {"samples": [s for p in per_round for s in p], "process_n": [len(p) for p in per_round],
                        "process_rounds": list(range(len(per_round)))}, "protocol": {"interleave": {"id": run_id}}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    from workbench.measure import Protocol, compare, measure_latency

    # the harness worker gets the raw loop's time: min_s = max_s = RAW_SECONDS (stops at the cap or earlier on the CI)
    proto = Protocol(min_s=RAW_SECONDS, max_s=RAW_SECONDS)
    header("harness overhead", "harness median vs a raw session.run loop, same settings, fresh processes, "
           f"{args.rounds} rounds each in shuffled order", f"ratio of medians within 1.00 +- {TARGET:.2f}",
           proto, args.threads)
    tmp = tmpdir("overhead")
    t_start = time.perf_counter()
    all_ok = True
    try:
        for label, (w, d, b) in MODELS.items():
            path = mlp(os.path.join(tmp, f"mlp_{w}x{d}_b{b}.onnx"), w, d, b)
            inputs = os.path.join(tmp, f"inputs_{w}_b{b}.npz")
            np.savez(inputs, x=np.random.default_rng(0).standard_normal((b, w)).astype(np.float32))
            rng = random.Random(0)
            harness, raw, order, codes, drifts = [], [], [], set(), []
            for r in range(args.rounds):
                sides = ["harness", "raw"]
                rng.shuffle(sides)
                order.append(sides)
                for side in sides:
                    if side == "harness":
                        m = measure_latency(path, "ort", args.threads, inputs, proto)
                        harness.append(list(m.samples))
                        codes |= {w.code for w in m.stability.warnings}
                        drifts.append(m.stability.sentinel_drift_pct or 0.0)
                    else:
                        raw.append(run_raw(path, inputs, args.threads, RAW_SECONDS))
            h_med, r_med = float(np.median(np.concatenate(harness))), float(np.median(np.concatenate(raw)))
            c = compare(record(raw, "o"), record(harness, "o"))
            ratio = h_med / r_med
            ok = abs(ratio - 1) <= TARGET
            all_ok &= ok
            print(f"{label}: harness median {h_med:.4f} ms (n={sum(map(len, harness))}), "
                  f"raw loop median {r_med:.4f} ms (n={sum(map(len, raw))})")
            print("  per round (harness / raw medians): " + ", ".join(
                f"{np.median(h) / np.median(q):.4f}" for h, q in zip(harness, raw)) + f"; order {order}")
            how = "two-level bootstrap, paired by round" if "paired by round" in c.method else "one process each"
            print(f"  ratio harness/raw = {ratio:.4f}, 95% CI {c.ci95[0]:.4f}-{c.ci95[1]:.4f} ({how}), "
                  f"verdict {c.verdict!r}")
            print(f"  harness workers' warnings: {sorted(codes) or 'none'}; sentinel drift per harness worker: "
                  + ", ".join(f"{d:+.1f}%" for d in drifts))
            print(f"  target 1.00 +- {TARGET:.2f}: {met(ok)}")
            print()
    finally:
        cleanup(tmp)
    print(f"overall: {met(all_ok)} ({time.perf_counter() - t_start:.0f} s)")
    return 0 if all_ok else 1


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--raw":
        raw_loop(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
    else:
        sys.exit(main())
