"""Peer benchmark (issue 12): the harness vs onnxruntime's own timing tool, on the harness benchmarks' models.

The peer: the PyPI onnxruntime wheel ships no `onnxruntime_perf_test` binary (it is built only from
source) and Debian has no onnxruntime package, so the peer is the wheel's own timing tool,
`python -m onnxruntime.tools.onnxruntime_test MODEL N`: one session with ORT's defaults (CPU EP, the
default intra-op pool of one thread per physical core the process may use), random inputs, N back-to-back
runs, and it prints one number, the mean latency (first run included, no warm-up, no spread, no CI).
It has no thread option, and `taskset` does not help (ORT pins its pool threads itself: pinned to one CPU
the tool still ran a 1024-wide MLP 1.7x faster than one ORT thread). So with --threads 1 (the default, as
in the other harness benchmarks: 2 threads on 2 cores is bimodal) the tool's own main() runs with one
change, its InferenceSession given intra_op_num_threads=1 (PEER_1T below), and the harness uses 1 thread;
with --threads default the tool runs untouched and the harness uses ORT's default (one per physical core).

1. Median agreement: the ~0.3 ms and ~10 ms MLPs of overhead.py; per round (order shuffled), one
   harness measurement (fresh worker) and one peer run (fresh process, ~RUN_S s of runs). Ratios
   harness median / peer mean and, like for like, harness mean / peer mean.
2. Time to a verdict: A = MLP 256 x 20 layers, B = A + 1 layer (~5% more work; sensitivity.py's pair).
   The harness: `measure_interleaved([A, B])` + `compare` -> ratio, 95% CI, verdict, wall seconds.
   The peer: A and B alternately, 3 runs each -> ratio of its means (no CI, so no verdict of its own;
   the spread of the per-run ratios shows what one run of it would have claimed), wall seconds.

    .venv/bin/python benchmarks/harness/peer_perf_test.py [--quick] [--no-write]

Writes results/peer_perf_test.txt (results/peer_perf_test-quick.txt with --quick).
"""
from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from common import cleanup, mlp, tmpdir  # noqa: E402

MODELS = {"~0.3 ms MLP (256 wide, 8 layers, batch 32)": (256, 8, 32),
          "~10 ms MLP (1024 wide, 7 layers, batch 64)": (1024, 7, 64)}
PAIR = (256, 20, 32)  # A; B has one more layer
PEER = [sys.executable, "-m", "onnxruntime.tools.onnxruntime_test"]
# --threads 1: the same tool, its sessions given intra_op_num_threads=1 (the only change)
PEER_1T = [sys.executable, "-c", (
    "import sys, onnxruntime as ort\n"
    "from onnxruntime.tools import onnxruntime_test as t\n"
    "_IS = ort.InferenceSession\n"
    "def one_thread(path, sess_options=None, **kw):\n"
    "    so = sess_options or ort.SessionOptions()\n"
    "    so.intra_op_num_threads = 1\n"
    "    return _IS(path, sess_options=so, **kw)\n"
    "ort.InferenceSession = one_thread\n"
    "sys.argv = ['onnxruntime_test', *sys.argv[1:]]\n"
    "t.main()\n")]
CMD: list[str] = list(PEER)  # the peer command in use
LINES: list[str] = []


def out(line: str = "") -> None:
    print(line, flush=True)
    LINES.append(line)


def peer(path: str, iters: int) -> float:
    """One run of onnxruntime_test in a fresh process: its 'avg latency' in ms."""
    r = subprocess.run([*CMD, path, str(iters)], capture_output=True, text=True, check=True)
    m = re.search(r"avg latency: ([0-9.eE+-]+) ms", r.stdout)
    if not m:
        raise RuntimeError(f"onnxruntime_test printed no 'avg latency': {r.stdout[-300:]} {r.stderr[-300:]}")
    return float(m.group(1))


def peer_iters(path: str, seconds: float) -> int:
    """How many runs make ``seconds`` of the peer's timed loop (from a 20-run probe)."""
    return max(50, int(seconds * 1000 / max(peer(path, 20), 1e-3)))


def agreement(label: str, path: str, inputs: str, threads: int, protocol, rounds: int, run_s: float) -> dict:
    """Harness and peer alternately (shuffled per round), fresh processes each; medians and means compared."""
    from workbench.measure import measure_latency

    iters = peer_iters(path, run_s)
    rng = random.Random(0)
    h_samples, h_meds, h_means, p_means = [], [], [], []
    for _ in range(rounds):
        sides = ["harness", "peer"]
        rng.shuffle(sides)
        for side in sides:
            if side == "harness":
                m = measure_latency(path, "ort", threads, inputs, protocol)
                h_samples.append(np.asarray(m.samples))
                h_meds.append(m.stats.median)
                h_means.append(m.stats.mean)
            else:
                p_means.append(peer(path, iters))
    allh = np.concatenate(h_samples)
    med, mean, pm = float(np.median(allh)), float(allh.mean()), float(np.median(p_means))
    out(f"{label}:")
    out(f"  harness: median {med:.4f} ms, mean {mean:.4f} ms (n={allh.size}; per-process medians "
        + ", ".join(f"{x:.4f}" for x in h_meds) + ")")
    out(f"  peer:    mean {pm:.4f} ms (median of {rounds} runs of {iters} iterations: "
        + ", ".join(f"{x:.4f}" for x in p_means) + ")")
    out(f"  ratio harness median / peer mean = {med / pm:.4f}; harness mean / peer mean = {mean / pm:.4f}")
    return {"median_ratio": med / pm, "mean_ratio": mean / pm}


def time_to_verdict(tmp: str, threads: int, protocol, rounds: int, run_s: float) -> None:
    """A vs B (+5% work): the harness's verdict and wall time vs the peer's ratio of means and wall time."""
    from workbench.measure import compare, measure_interleaved

    w, d, b = PAIR
    a_path, b_path = mlp(os.path.join(tmp, "a.onnx"), w, d, b), mlp(os.path.join(tmp, "b.onnx"), w, d + 1, b)
    inputs = os.path.join(tmp, "pair.npz")
    np.savez(inputs, x=np.random.default_rng(0).standard_normal((b, w)).astype(np.float32))
    t0 = time.perf_counter()
    ma, mb = measure_interleaved([a_path, b_path], "ort", threads, inputs, protocol, rounds=rounds, seed=0)
    c = compare(ma, mb)
    h_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    iters = peer_iters(a_path, run_s)
    pa, pb = [], []
    for _ in range(3):
        pa.append(peer(a_path, iters))
        pb.append(peer(b_path, iters))
    p_s = time.perf_counter() - t0
    per_run = [y / x for x, y in zip(pa, pb)]
    out(f"time to a verdict: A = MLP {w} x {d} layers (batch {b}), B = A + 1 layer (~5% more work)")
    out(f"  harness: median(B)/median(A) {c.ratio_median:.4f} [{c.ci95[0]:.4f}, {c.ci95[1]:.4f}] -> {c.verdict} "
        f"({rounds} interleaved rounds, {c.ci_method}) in {h_s:.0f} s"
        + (f"; why: {c.verdict_reason}" if getattr(c, "verdict_reason", None) else ""))
    out(f"  peer:    mean(B)/mean(A) {float(np.median(pb)) / float(np.median(pa)):.4f} from 3 runs each of {iters} "
        f"iterations in {p_s:.0f} s; per-run ratios " + ", ".join(f"{x:.4f}" for x in per_run)
        + " (no CI: one run of the peer would have claimed any of these)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 rounds and shorter runs (a smoke run)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write results/")
    ap.add_argument("--threads", choices=["1", "default"], default="1",
                    help="1: harness and peer with 1 intra-op thread (default); default: ORT's default pool on both")
    args = ap.parse_args()
    import onnxruntime
    import psutil

    from workbench.measure import Protocol, collect_environment

    if args.threads == "1":
        CMD[:] = PEER_1T
        threads = 1
    else:
        threads = psutil.cpu_count(logical=False) or 1  # ORT's default intra-op pool: one thread per physical core
    rounds, run_s = (2, 1.0) if args.quick else (4, 3.0)
    protocol = Protocol(min_s=run_s, max_s=run_s) if not args.quick else Protocol(warmup_s=0.2, min_s=run_s,
                                                                                   max_s=run_s)
    env = collect_environment(["ort"])
    t_start = time.perf_counter()
    out("== Peer benchmark (issue 12): the harness vs onnxruntime's own timing tool")
    out(f"command:  .venv/bin/python benchmarks/harness/peer_perf_test.py{' --quick' if args.quick else ''}"
        f"{' --threads default' if args.threads == 'default' else ''}")
    out(f"date:     {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    out(f"machine:  {env['description']}; load average at start "
        f"{', '.join(f'{x:.2f}' for x in env['loadavg'] or [])}")
    out(f"peer:     python -m onnxruntime.tools.onnxruntime_test (onnxruntime {onnxruntime.__version__} wheel; "
        "no onnxruntime_perf_test binary in the wheel): ORT defaults, random inputs, mean of N runs")
    pin = ("; the peer's sessions given intra_op_num_threads=1 (its only change)" if threads == 1 else
           " = ORT's default pool here (one per physical core), the peer untouched")
    out(f"harness:  fresh worker per measurement, {threads} thread(s){pin}; warm-up {protocol.warmup_runs} runs / "
        f"{protocol.warmup_s} s, timed {protocol.min_s}-{protocol.max_s} s; {rounds} rounds, order shuffled per round")
    out()
    tmp = tmpdir("peer-perf-test")
    try:
        ratios = []
        for label, (w, d, b) in MODELS.items():
            path = mlp(os.path.join(tmp, f"mlp_{w}x{d}_b{b}.onnx"), w, d, b)
            inputs = os.path.join(tmp, f"inputs_{w}_b{b}.npz")
            np.savez(inputs, x=np.random.default_rng(0).standard_normal((b, w)).astype(np.float32))
            ratios.append(agreement(label, path, inputs, threads, protocol, rounds, run_s))
        out()
        time_to_verdict(tmp, threads, protocol, 3 if args.quick else 5, run_s)
    finally:
        cleanup(tmp)
    load = os.getloadavg()
    out()
    out("summary: harness median / peer mean " + ", ".join(f"{r['median_ratio']:.3f}" for r in ratios)
        + "; harness mean / peer mean " + ", ".join(f"{r['mean_ratio']:.3f}" for r in ratios))
    out(f"({time.perf_counter() - t_start:.0f} s; load average at the end {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}: "
        "other programs sharing the cores make both tools noisier; the lead may re-run on a quiet machine)")
    if not args.no_write:
        dst = HERE / "results" / ("peer_perf_test-quick.txt" if args.quick else "peer_perf_test.txt")
        dst.write_text("\n".join(LINES) + "\n")
        print(f"written: {dst.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
