"""Benchmark: repeatability -- the same artifact measured in two separate invocations, in several trials.

Each invocation is one ``measure_interleaved`` call (one model, several rounds: a fresh worker per
round), as ``workbench bench`` would make it; the two are then compared like two results files
from two days: unpaired (Welch t-interval on the log process medians, widened to the two-level
bootstrap), ratio of medians and verdict, the noise guards' veto included.

    .venv/bin/python benchmarks/harness/repeatability.py [--trials 10] [--rounds 5] [--threads 1] [--quick]

Targets (issue 12): in every trial the medians lie within 5% of each other, and the verdict is
never "faster" or "slower" ("equivalent" or "inconclusive" are honest). --quick: 2 trials, 3 rounds.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from common import ci, cleanup, finish, header, mlp, tmpdir, warning_codes

MODEL = ("~2 ms MLP (512 wide, 12 layers, batch 32)", (512, 12, 32))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="2 trials of 3 rounds (checks the script, proves nothing)")
    args = ap.parse_args()
    from workbench.measure import Protocol, compare, measure_interleaved

    proto = Protocol()
    trials, rounds = (2, 3) if args.quick else (args.trials, args.rounds)
    label, (w, d, b) = MODEL
    header("repeatability", f"{label}: invocation 1 vs invocation 2, each measure_interleaved with "
           f"{rounds} rounds (fresh worker per round), {trials} trials",
           "medians within 5% in every trial; verdict never 'faster'/'slower'", proto, args.threads)
    tmp = tmpdir("repeat")
    t0 = time.perf_counter()
    diffs, verdicts = [], []
    try:
        path = mlp(os.path.join(tmp, "mlp.onnx"), w, d, b)
        for t in range(trials):
            runs = []
            for i in (1, 2):
                (m,) = measure_interleaved([path], "ort", args.threads, None, proto, rounds=rounds, seed=10 * t + i)
                runs.append(m)
                meds = ", ".join(f"{x:.4f}" for x in m.to_json()["latency"]["process_medians"])
                print(f"trial {t + 1}, invocation {i}: median {m.stats.median:.4f} ms, 95% CI "
                      f"{ci(m.stats.ci95_median)} ({m.processes} processes, n={m.stats.n}); per-process medians "
                      f"{meds}; warnings {warning_codes(m) or 'none'}")
            c = compare(runs[0], runs[1])
            diffs.append(abs(runs[1].stats.median / runs[0].stats.median - 1))
            verdicts.append(c.verdict)
            print(f"trial {t + 1}: ratio 2/1 = {c.ratio_median:.4f}, 95% CI {ci(c.ci95)} ({c.ci_method}), verdict "
                  f"{c.verdict!r}; why: {c.verdict_reason}" + (f"; advice: {c.advice}" if c.advice else ""), flush=True)
        print(f"\n  ({c.method})")
    finally:
        cleanup(tmp)
    false = sum(v in ("faster", "slower") for v in verdicts)
    return finish([(f"medians within 5% in every trial (largest gap {max(diffs):.2%})", max(diffs) <= 0.05),
                   (f"verdict never 'faster'/'slower': {false} of {trials} trials; verdicts "
                    + ", ".join(f"{v} {verdicts.count(v)}" for v in sorted(set(verdicts))), false == 0)], t0)


if __name__ == "__main__":
    sys.exit(main())
