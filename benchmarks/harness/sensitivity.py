"""Benchmark: sensitivity -- a model made ~5% slower (one extra layer) is called "slower".

Each trial is one ``measure_interleaved`` run of three entries -- A, B (= A plus one layer) and A
again (the same file, measured as a separate entry) -- over several rounds in shuffled order.
The comparisons B vs A and A vs A are paired by round (two-level bootstrap).

    .venv/bin/python benchmarks/harness/sensitivity.py [--trials 5] [--rounds 5] [--threads 1]

Target (issue 3): B vs A "slower" (not "equivalent") in at least 4 of 5 trials; A vs A never "slower".
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from common import ci, cleanup, finish, header, mlp, tmpdir, warning_codes


def spread(m) -> str:
    meds = m.to_json()["latency"]["process_medians"]
    return f"{min(meds):.4f}-{max(meds):.4f} ms"

WIDTH, DEPTH, BATCH = 256, 20, 32  # ~0.8 ms at 1 thread; one more layer adds ~5%


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    from workbench.measure import Protocol, compare, measure_interleaved

    proto = Protocol()
    header("sensitivity", f"A = MLP {WIDTH} wide x {DEPTH} layers (batch {BATCH}); B = A + 1 layer (~5% more work); "
           f"A vs A; {args.trials} trials, each measure_interleaved([A, B, A]) with {args.rounds} rounds",
           f"B 'slower' in >= 4 of 5 trials; A vs A never 'slower'", proto, args.threads)
    tmp = tmpdir("sensitivity")
    t0 = time.perf_counter()
    slower, self_slower = 0, 0
    try:
        a = mlp(os.path.join(tmp, "a.onnx"), WIDTH, DEPTH, BATCH)
        b = mlp(os.path.join(tmp, "b.onnx"), WIDTH, DEPTH + 1, BATCH)
        for t in range(args.trials):
            ma, mb, ma2 = measure_interleaved([a, b, a], "ort", args.threads, None, proto, rounds=args.rounds, seed=t)
            cb, ca = compare(ma, mb), compare(ma, ma2)
            slower += cb.verdict == "slower"
            self_slower += ca.verdict == "slower"
            print(f"trial {t + 1}: A {ma.stats.median:.4f} ms, B {mb.stats.median:.4f} ms, A' {ma2.stats.median:.4f} ms | "
                  f"B/A {cb.ratio_median:.4f} {ci(cb.ci95)} {cb.verdict!r} | A'/A {ca.ratio_median:.4f} {ci(ca.ci95)} "
                  f"{ca.verdict!r}")
            print(f"         per-process medians A {spread(ma)}, B {spread(mb)}; largest sentinel drift "
                  f"{max(abs(m.stability.sentinel_drift_pct or 0) for m in (ma, mb, ma2)):.1f}%; "
                  f"warnings {sorted(set(warning_codes(ma) + warning_codes(mb) + warning_codes(ma2))) or 'none'}")
            sys.stdout.flush()
    finally:
        cleanup(tmp)
    return finish([(f"B called 'slower' in {slower} of {args.trials} trials (target >= 4 of 5)", slower >= min(4, args.trials)),
                   (f"A vs A called 'slower' in {self_slower} of {args.trials} trials (target 0)", self_slower == 0)], t0)


if __name__ == "__main__":
    sys.exit(main())
