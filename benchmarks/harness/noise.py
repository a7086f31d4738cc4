"""Benchmark: noise -- with CPU burners in the background the harness flags the measurement.

Alternates quiet and noisy measurements (``measure_latency``, 1 thread). For the noisy ones the
benchmark starts one CPU-burning process per usable core (each exits on its own after a bounded
time, and is killed as soon as the measurement ends) -- on 2 cores with a 1-thread measurement,
fewer burners would leave the measured core its own free core, which is not noise. Each burner
runs in its own session (see ``start_burners``: with autogroup scheduling, burners sharing one
session would not disturb the worker at all).

    .venv/bin/python benchmarks/harness/noise.py [--trials 3] [--threads 1]

Target (issue 3): every noisy measurement is flagged unstable (busy_machine / sentinel_drift /
high_cv / outliers ...); no quiet one is flagged busy_machine.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from common import cleanup, finish, header, mlp, tmpdir, warning_codes

UNSTABLE = {"busy_machine", "sentinel_drift", "high_cv", "slow_outliers", "fast_outliers", "process_spread"}
BURN_LIMIT_S = 60  # a burner never outlives this, even if the benchmark is killed
BURN = "import time\nend = time.time() + {limit}\nwhile time.time() < end:\n    pass\n"


def start_burners(n: int) -> list[subprocess.Popen]:
    # each in its own session, like programs started from other terminals: with Linux autogroup scheduling
    # (sched_autogroup_enabled=1) burners in ONE session share one group's CPU share, and the measuring
    # worker (its own session) keeps a whole core -- the measurement is not disturbed at all.
    return [subprocess.Popen([sys.executable, "-c", BURN.format(limit=BURN_LIMIT_S)], start_new_session=True)
            for _ in range(n)]


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    from workbench.measure import Protocol, measure_latency
    from workbench.measure.worker import usable_cores

    proto = Protocol(max_s=6.0)
    cores = usable_cores()
    header("noise", f"quiet vs {cores} background CPU burner(s), {args.trials} trials each, alternating; "
           "MLP 256 wide x 8 layers (batch 32)", "noisy: flagged unstable every time; quiet: never busy_machine",
           proto, args.threads)
    tmp = tmpdir("noise")
    t0 = time.perf_counter()
    noisy_flagged = quiet_busy = 0
    try:
        path = mlp(os.path.join(tmp, "mlp.onnx"), 256, 8, 32)
        for t in range(args.trials):
            for noisy in (False, True):
                burners = start_burners(cores) if noisy else []
                try:
                    time.sleep(0.5 if noisy else 0.0)
                    m = measure_latency(path, "ort", args.threads, None, proto)
                finally:
                    stop(burners)
                codes = warning_codes(m)
                st = m.stability
                flagged = bool(UNSTABLE & set(codes))
                noisy_flagged += noisy and flagged
                quiet_busy += (not noisy) and "busy_machine" in codes
                print(f"trial {t + 1} {'noisy' if noisy else 'quiet'}: median {m.stats.median:.4f} ms, cv {m.stats.cv:.1%}, "
                      f"other processes used {st.other_load if st.other_load is not None else float('nan'):.2f} cores, "
                      f"sentinel drift {st.sentinel_drift_pct:+.1f}% -> warnings {codes or 'none'}")
                sys.stdout.flush()
                if noisy:
                    time.sleep(2.0)  # let the machine settle before the next quiet measurement
    finally:
        cleanup(tmp)
    return finish([(f"noisy measurements flagged unstable: {noisy_flagged} of {args.trials}", noisy_flagged == args.trials),
                   (f"quiet measurements flagged busy_machine: {quiet_busy} of {args.trials}", quiet_busy == 0)], t0)


if __name__ == "__main__":
    sys.exit(main())
