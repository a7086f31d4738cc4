"""Benchmark: repeatability -- the same artifact measured in two separate invocations.

Each invocation is one ``measure_interleaved`` call (one model, several rounds: a fresh worker per
round), as ``workbench bench`` would make it; the two are then compared like two results files
from two days: unpaired two-level bootstrap over processes, ratio of medians and verdict.

    .venv/bin/python benchmarks/harness/repeatability.py [--rounds 5] [--threads 1]

Target (issue 3): medians within 5% and the verdict "equivalent" (95% CI of the ratio inside +-2%).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from common import ci, cleanup, header, met, mlp, tmpdir, warning_codes

MODEL = ("~2 ms MLP (512 wide, 12 layers, batch 32)", (512, 12, 32))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    from workbench.measure import Protocol, compare, measure_interleaved

    proto = Protocol()
    label, (w, d, b) = MODEL
    header("repeatability", f"{label}: invocation 1 vs invocation 2, each measure_interleaved with "
           f"{args.rounds} rounds (fresh worker per round)", "medians within 5% and verdict 'equivalent'",
           proto, args.threads)
    tmp = tmpdir("repeat")
    t0 = time.perf_counter()
    try:
        path = mlp(os.path.join(tmp, "mlp.onnx"), w, d, b)
        runs = []
        for i in (1, 2):
            (m,) = measure_interleaved([path], "ort", args.threads, None, proto, rounds=args.rounds, seed=i)
            runs.append(m)
            meds = ", ".join(f"{x:.4f}" for x in m.to_json()["latency"]["process_medians"])
            print(f"invocation {i}: median {m.stats.median:.4f} ms, 95% CI {ci(m.stats.ci95_median)} "
                  f"(two-level, {m.processes} processes, n={m.stats.n}); per-process medians {meds}; "
                  f"warnings {warning_codes(m) or 'none'}")
        c = compare(runs[0], runs[1])
        diff = abs(runs[1].stats.median / runs[0].stats.median - 1)
        ok_diff, ok_verdict = diff <= 0.05, c.verdict == "equivalent"
        print()
        print(f"ratio invocation 2 / invocation 1 = {c.ratio_median:.4f}, 95% CI {ci(c.ci95)}, verdict {c.verdict!r}")
        print(f"  ({c.method})")
        print(f"medians within 5%: {diff:.2%} -> {met(ok_diff)}")
        print(f"verdict 'equivalent': {c.verdict!r} -> {met(ok_verdict)}")
    finally:
        cleanup(tmp)
    print(f"overall: {met(ok_diff and ok_verdict)} ({time.perf_counter() - t0:.0f} s)")
    return 0 if ok_diff and ok_verdict else 1


if __name__ == "__main__":
    sys.exit(main())
