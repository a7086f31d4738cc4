"""Benchmark: distilled students vs quantized teachers on the built-in digits task, one harness.

Runs the demo recipe (or `--recipe`) into a fresh directory, times it, runs it again into the same
directory (resume: everything reused), and prints what it compares, the ratios with their 95% CIs,
what distillation bought over labels-only training, and the machine it ran on.

    .venv/bin/python benchmarks/distill_vs_quantize.py [--recipe R.toml] [--quick] [--out DIR]

Targets (issue 2): the smaller KD student >= 5x faster than the fp32 teacher (median, 1 thread);
a second run into the same directory takes a small fraction of the first.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="runs/bench-distill-vs-quantize")
    ap.add_argument("--summarise-only", metavar="FIRST_S,SECOND_S",
                    help="do not run: print the summary of the run already in --out, with the wall times measured "
                         "when it ran")
    args = ap.parse_args()
    out = Path(args.out)
    cmd = [sys.executable, "-m", "workbench.cli", "run", *([args.recipe] if args.recipe else []),
           *(["--quick"] if args.quick else []), "--out", str(out), "--quiet"]
    if args.summarise_only:
        first, second = (float(x) for x in args.summarise_only.split(","))
    else:
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        second = time.perf_counter() - t0

    doc = json.loads((out / "results.json").read_text())
    env = doc["run"]["environment"]
    print(f"machine: {env.get('description')}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items()))
    print(f"command: {' '.join(cmd[2:])}")
    print(f"\nwall time: first run {first:.0f} s, second run into the same directory {second:.1f} s "
          f"({second / first:.1%} of the first)")

    recs = [r for r in doc["results"] if r["status"] == "ok"]
    keys = sorted({(r["runtime"]["name"] != "ort", r["runtime"]["name"], r["runtime"]["options"]["threads"]) for r in recs})
    for _, runtime, threads in keys:
        rows = [r for r in recs if r["runtime"]["name"] == runtime and r["runtime"]["options"]["threads"] == threads]
        print(f"\n-- {runtime}, {threads} thread(s): every variant vs the fp32 teacher on {runtime} "
              "(ratio of medians, bootstrap 95% CI; < 1 = faster)")
        print(f"{'variant':<24}{'median ms [95% CI]':<26}{'ratio [95% CI]':<24}{'verdict':<14}{'speed-up':>9}"
              f"{'accuracy [95% CI]':>24}{'size MB':>9}")
        for r in sorted(rows, key=lambda r: r["latency"]["median"]):
            lat, q = r["latency"], r["quality"]
            c = r["comparisons"][0] if r["comparisons"] else {"ratio_median": 1.0, "ci95": [1.0, 1.0], "verdict": "reference"}
            print(f"{r['variant']:<24}{lat['median']:.4f} [{lat['ci95_median'][0]:.4f}, {lat['ci95_median'][1]:.4f}]".ljust(50)
                  + f"{c['ratio_median']:.3f} [{c['ci95'][0]:.3f}, {c['ci95'][1]:.3f}]".ljust(24)
                  + f"{c['verdict']:<14}{1 / c['ratio_median']:>8.2f}x"
                  + f"{q['value']:>10.1%} [{q['ci95'][0]:.1%}, {q['ci95'][1]:.1%}]"
                  + f"{r['artifact']['size_bytes'] / 1e6:>9.2f}")

    print("\n-- what distillation bought: KD minus labels-only, same budget, test accuracy of each seed's model")
    for s in doc["studies"]["distillation"]:
        lo, hi = s["diff_ci95"]
        print(f"{s['student']:<7}{s['regime_label']:<46} labels {s['labels_mean']:.1%}  KD {s['kd_mean']:.1%}  "
              f"diff {s['diff_mean'] * 100:+.1f} pts [{lo * 100:+.1f}, {hi * 100:+.1f}] over {len(s['seeds'])} seeds: {s['verdict']}")

    t1 = {r["variant"]: r for r in recs if r["runtime"]["options"]["threads"] == 1 and r["runtime"]["name"] == "ort"}
    students = sorted({r["artifact"]["params"]: v for v, r in t1.items() if r["family"] == "distilled"}.items())
    smallest = students[0][1]
    ratio = t1[smallest]["comparisons"][0]
    speedup = 1 / ratio["ratio_median"]
    print(f"\ntarget: smaller KD student ({smallest}) >= 5x faster than the fp32 teacher at 1 thread on ort: "
          f"{speedup:.1f}x [{1 / ratio['ci95'][1]:.1f}, {1 / ratio['ci95'][0]:.1f}] -> {'met' if speedup >= 5 else 'NOT met'}")
    print(f"target: second run a small fraction of the first: {second / first:.1%} -> "
          f"{'met' if second / first < 0.2 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
