"""Where do reverse distillation and self-distillation (born-again generations) help, and where not?

Runs the committed recipes workbench/recipes/reverse.toml (a 6 k-param teacher teaching a 73 k-param
student) and workbench/recipes/self.toml (the teacher's architecture, born-again generations) through
`workbench run`'s pipeline over several seeds and data regimes, then prints the pipeline's own study
(results.json's studies: KD vs the labels-only twin, generation k vs k-1), each difference paired over
seeds with its 95% CI (workbench.pipeline.study.paired_difference; nothing is recomputed here).

    nice -n 5 .venv/bin/python benchmarks/distill/reverse_self.py [--seeds N] [--steps N] [--few-steps N]
        [--regimes full,few-5,few-10] [--out runs/bench-reverse-self]

Defaults: each recipe's own [distill] settings (5 seeds; full data and 5 labels per class; 150 / 80 steps).
The benchmark measures accuracy, not speed: quantization is left out and latency is measured with a short
protocol on ORT only. With the default settings `workbench run RECIPE --out <out>/<recipe name>` afterwards
reuses every trained student and adds the int8 variants and the full measurement (the committed reports).
Training runs at 1 PyTorch thread: on the shared 2-core machine 2 threads were 3.6x slower per step.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def bench_recipe(name: str, args):
    """The committed recipe ``name`` with the benchmark's seeds, regimes and budget."""
    from workbench.recipe import BUILTIN_DIR, load_recipe

    r = load_recipe(BUILTIN_DIR / name)
    d = r.distill
    return replace(r, distill=replace(d, seeds=tuple(range(args.seeds)) if args.seeds else d.seeds,
                                      regimes=tuple(args.regimes.split(",")) if args.regimes else d.regimes,
                                      steps=args.steps or d.steps, few_steps=args.few_steps or d.few_steps),
                   quantize=replace(r.quantize, teacher=(), students=()),
                   measure=replace(r.measure, threads=(1,), warmup_runs=3, warmup_s=0.05, min_runs=20, min_s=0.2,
                                   max_s=1.0, rounds=2, memory_runs=3))


def _pts(x) -> str:
    return f"{100 * x:+.2f}"


def _line(label: str, base: float, other: float, diff: float, ci, verdict: str) -> str:
    return (f"  {label:<46} {100 * base:6.2f}  {100 * other:6.2f}  {_pts(diff):>7} "
            f"[{_pts(ci[0])}, {_pts(ci[1])}]  {verdict}")


def report(doc: dict) -> list[str]:
    """The study of one run as text lines: the mode's sentences, KD vs twin, and the generations."""
    st = doc["studies"]
    out = [f"  {n}" for n in st.get("mode", {}).get("notes", [])]
    out.append(f"  {'comparison (accuracy %, paired over seeds)':<46} {'base':>6}  {'other':>6}  {'diff':>7} [95% CI]  verdict")
    for s in st["distillation"]:
        out.append(_line(f"{s['regime']} ({s['n_train']} images): KD vs labels-only", s["labels_mean"], s["kd_mean"],
                         s["diff_mean"], s["diff_ci95"], s["verdict"]))
    for g in st.get("generations", []):
        if g["generation"] == 1:
            continue  # generation 1 vs the twin is the KD row above
        out.append(_line(f"{g['regime']}: gen {g['generation']} vs {g['against'].replace('generation', 'gen')}",
                         g["base_mean"], g["generation_mean"], g["diff_mean"], g["diff_ci95"], g["verdict"]))
    return out


def verdicts(doc: dict, what: str) -> list[str]:
    """Plain sentences: where ``what`` helped (CI above zero), hurt (below) or made no significant difference."""
    st = doc["studies"]
    rows = [(f"{s['regime_label']}, KD vs the labels-only twin", s["verdict"], s["diff_mean"]) for s in st["distillation"]]
    rows += [(f"{g['regime_label']}, generation {g['generation']} vs the {g['against']}", g["verdict"], g["diff_mean"])
             for g in st.get("generations", []) if g["generation"] > 1]
    out = []
    for label, verdict, diff in rows:
        word = ("helps" if verdict.endswith(("helps", "better")) else "hurts" if verdict.endswith(("hurts", "worse"))
                else "no significant difference")
        out.append(f"  {what} {word}: {label} ({_pts(diff)} points)")
    return out


def main(argv=None) -> int:
    """Run both recipes over the seeds and print the studies."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default: the recipe's)")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps on full data (default: the recipe's)")
    p.add_argument("--few-steps", type=int, default=None, help="steps in few-label regimes (default: the recipe's)")
    p.add_argument("--regimes", default=None, help="e.g. full,few-5,few-10 (default: the recipe's)")
    p.add_argument("--out", default=str(ROOT / "runs" / "bench-reverse-self"))
    p.add_argument("--recipes", default="reverse.toml,self.toml")
    args = p.parse_args(argv)
    import torch

    from workbench.pipeline.runner import run
    from workbench.progress import Progress

    torch.set_num_threads(1)

    print("$ " + " ".join(shlex.quote(a) for a in ["benchmarks/distill/reverse_self.py", *(argv or sys.argv[1:])]))
    t0 = time.perf_counter()
    docs = {}
    for name in args.recipes.split(","):
        recipe = bench_recipe(name, args)
        path = run(recipe, Path(args.out) / recipe.name, command=f"benchmarks/distill/reverse_self.py ({name})",
                   progress=Progress())
        docs[name] = json.loads(Path(path).read_text())
        d = recipe.distill
        print(f"\n== {name} ({recipe.name}, mode {d.mode}): {len(d.seeds)} seeds, regimes {', '.join(d.regimes)}, "
              f"{d.steps} steps on full data, {d.few_steps} with few labels; teacher {recipe.teacher.source}; "
              f"{time.perf_counter() - t0:.0f} s so far")
        print("\n".join(report(docs[name])), flush=True)
    env = next(iter(docs.values()))["run"]["environment"]
    print("\n== where it helps and where it does not (95% paired-t CI over seeds; 'no significant difference' "
          "= the CI includes 0)")
    for name, doc in docs.items():
        print("\n".join(verdicts(doc, "reverse KD" if doc["studies"].get("mode", {}).get("mode") == "reverse"
                                 else "self-distillation")))
    print(f"\nmachine: {env.get('description')}; torch threads as the pipeline sets them; "
          f"{time.perf_counter() - t0:.0f} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
