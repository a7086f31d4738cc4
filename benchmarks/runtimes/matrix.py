"""Benchmark: the runtime matrix on digits -- (teacher, KD student) x (fp32, int8) x (every runtime) x (1, 2 threads).

Models: the digits teacher (zoo:digits-resnet) and a KD student (zoo:cnn?width=16, 20 epochs, distilled once and
cached). Artifacts, all made by the workbench's own exporters and cached under .cache/ (see prep.py):
  ort         .onnx fp32 (torch.onnx dynamo) and int8 (ORT static QDQ, method "static")
  ort-mobile  .with_runtime_opt.ort converted from those two .onnx files
  executorch  .pte fp32 and int8 (XNNPACK delegate; PT2E XNNPACKQuantizer calibrated on training images)
  litert      .tflite fp32, int8-dyn (dynamic-range) and int8-full (full integer, calibrated)
Each artifact: size, parity with PyTorch on the 360 test images through its runtime (fp32: max |diff| of the
logits; int8: top-1 agreement), accuracy through its runtime, export time and runtime metadata.
Latency (batch 1, one real test image): per runtime and thread count, the artifacts of BOTH models are measured
interleaved by measure_interleaved (fresh worker per artifact per round, shuffled order). Ratios with two-level
bootstrap 95% CIs: int8 vs fp32 within a runtime (paired by round), and every artifact vs ort at the same
model+precision and vs ort fp32 (separate interleaved runs: unpaired). WINNERS: per model and thread count, the
fastest artifact within 0.5 accuracy points of the PyTorch fp32 model.

    .venv/bin/python benchmarks/runtimes/matrix.py [--quick] [--rounds N] [--threads 1,2] [--runtimes ...] [--out F]

Writes results/matrix.txt (results/matrix-quick.txt with --quick) beside this file.
"""
from __future__ import annotations

import argparse
import collections
import datetime
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

import prep  # noqa: E402

ACC_WINDOW = 0.5  # accuracy points below the PyTorch fp32 model a winner may lose
LINES: list[str] = []
T0 = time.perf_counter()


def out(line: str = "") -> None:
    print(line, flush=True)
    LINES.append(line)


def say(msg: str) -> None:  # progress: terminal only, not the results file
    print(f"[{time.perf_counter() - T0:5.0f} s] {msg}", file=sys.stderr, flush=True)


def speed(c) -> str:
    """'1.93x faster (0.52 [0.50, 0.54])' from a Comparison (ratio = candidate / baseline)."""
    if c is None:
        return "-"
    r, ci = c.ratio_median, c.ci95 or (float("nan"), float("nan"))
    word = {"faster": f"{1 / r:.2f}x faster", "slower": f"{r:.2f}x SLOWER", "equivalent": "equivalent",
            "inconclusive": "inconclusive"}[c.verdict]
    return f"{word} ({r:.2f} [{ci[0]:.2f}, {ci[1]:.2f}])"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 rounds, a short protocol (a few minutes)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds per run (default 5; 2 with --quick)")
    ap.add_argument("--threads", default="1,2", help="thread counts, comma-separated (default 1,2)")
    ap.add_argument("--runtimes", default=",".join(prep.RUNTIMES), help="subset of: " + ", ".join(prep.RUNTIMES))
    ap.add_argument("--out", help="output file (default results/matrix[-quick].txt)")
    args = ap.parse_args()
    import torch

    from workbench.measure import Protocol, collect_environment, compare, measure_interleaved
    from workbench.measure.inputs import write_npz
    from workbench.progress import Progress
    from workbench.runtimes import RUNTIMES
    from workbench.tasks import load_task

    torch.set_num_threads(1)
    threads_list = [int(t) for t in args.threads.split(",")]
    rounds = args.rounds or (2 if args.quick else 5)
    protocol = (Protocol(warmup_runs=5, warmup_s=0.1, min_runs=20, min_s=0.3, max_s=1.0, target_ci=0.05)
                if args.quick else Protocol())
    wanted = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    bad = [r for r in wanted if r not in prep.RUNTIMES]
    if bad:
        ap.error(f"unknown runtime(s) {', '.join(bad)}; choose from {', '.join(prep.RUNTIMES)}")
    available, missing = [], []
    for name in wanted:
        rt = RUNTIMES.get(name)
        (available if rt.available() else missing).append(name)
    target = Path(args.out) if args.out else HERE / "results" / f"matrix{'-quick' if args.quick else ''}.txt"
    env = collect_environment(runtimes=tuple(available))
    versions = dict(env.get("versions", {}))
    versions.update({d: RUNTIMES.get(n).version() for n, d in (("executorch", "executorch"), ("litert", "ai-edge-litert"))
                     if n in available})
    out("# Output of: " + " ".join([".venv/bin/python benchmarks/runtimes/matrix.py"] + sys.argv[1:]))
    out(f"# {datetime.datetime.now().isoformat(timespec='minutes')} on {env['description']}; "
        + ", ".join(f"{k} {v}" for k, v in versions.items() if v and k not in ("workbench", "numpy", "scipy")))
    out(f"# load average at start: {', '.join(f'{x:.2f}' for x in env.get('loadavg') or [])}")
    out("== Runtime matrix on digits: (teacher, KD student) x (fp32, int8) x runtimes x threads; batch 1")
    for name in missing:
        out(f"runtime {name} is not installed; install it with: {RUNTIMES.get(name).install_hint} -- its rows are skipped")
    out(f"protocol: {rounds} interleaved rounds per (runtime, threads) run, a fresh worker per artifact per round; "
        f"warm-up >= {protocol.warmup_runs} runs / {protocol.warmup_s} s; timed >= {protocol.min_runs} runs, "
        f"{protocol.min_s}-{protocol.max_s} s per artifact in all (split over rounds), CI target "
        f"+-{protocol.target_ci:.0%}; latency input: test image #0 [1, 1, 32, 32]")

    task = load_task("digits")
    subjects = prep.make_subjects(task, say)
    arts = prep.make_artifacts(subjects, task, available, say)
    prep.evaluate(arts, subjects, task, say)
    npz = str(prep.CACHE / "latency-inputs.npz")
    write_npz(npz, {task.input_name: task.x_test[:1]}, {task.input_name: "test image #0, float32 [1, 1, 32, 32]"})

    meas = {}  # (artifact key, threads) -> LatencyMeasurement
    failed_runs = []
    progress = Progress()
    runs = [(t, rt) for t in threads_list for rt in available]
    for i, (t, rt) in enumerate(runs):
        group = [a for a in arts if a.runtime == rt and not a.error]
        if not group:
            continue
        total = rounds * len(group)
        with progress.bar(f"latency {i + 1}/{len(runs)}: {rt}, {t} thread(s), {len(group)} artifacts x {rounds} "
                          "rounds", total) as update:
            try:
                ms = measure_interleaved([a.path for a in group], rt, t, npz, protocol, rounds=rounds, seed=10 * t + i,
                                         on_progress=lambda f, m, _u=update, _n=total: _u(round(f * _n, 1), m))
            except Exception as e:  # a failing worker stops this run only: report it, keep the others
                failed_runs.append(f"{rt}, {t} thread(s): {type(e).__name__}: {' '.join(str(e).split())[:250]}")
                say(f"   FAILED: {failed_runs[-1]}")
                continue
        for a, m in zip(group, ms):
            meas[(a.key, t)] = m

    memo = {}
    say("-- ratios with two-level bootstrap CIs, report")

    def cmp(base_key, cand_key, t):
        b, c = meas.get((base_key, t)), meas.get((cand_key, t))
        if b is None or c is None or base_key == cand_key:
            return None
        if (base_key, cand_key, t) not in memo:
            memo[(base_key, cand_key, t)] = compare(b, c, seed=0, against=base_key)
        return memo[(base_key, cand_key, t)]

    def same_prec_ort(a):
        return f"{a.model}/ort/{'fp32' if a.fp32 else 'int8'}"

    out()
    out("Parity: vs the PyTorch model on all 360 test images through the artifact's runtime (fp32: max |diff| of the "
        "logits; int8: top-1 agreement and max |diff|). acc: test accuracy through the runtime; d pts: minus the PyTorch fp32 model's. "
        "Ratio < 1 = faster than ort fp32 of the same model.")
    out("Ratios between runtimes come from SEPARATE interleaved runs (one run per runtime and thread count): "
        "unpaired two-level bootstrap, drift between runs is not cancelled. Ratios within one runtime are paired by round.")
    for s in subjects:
        rows = [a for a in arts if a.model == s.name]
        base = f"{s.name}/ort/fp32"
        out()
        out(f"== {s.name}: {s.spec}, {s.params / 1e3:.0f} k params; PyTorch fp32 test accuracy {100 * s.accuracy:.2f}%")
        head = f"{'runtime':11}{'prec':10}{'size KB':>8}  {'parity':24}{'acc %':>7}{'d pts':>7}"
        for t in threads_list:
            head += f" | {t}t median ms [95% CI]".ljust(30) + f"{'x ort fp32 [CI]':21}{'verdict':13}"
        out(head)
        for a in rows:
            if a.error:
                out(f"{a.runtime:11}{a.precision:10}  NOT AVAILABLE: {a.error}")
                continue
            par = (f"max|d| {a.parity_max_abs:.1e}" if a.fp32 else
                   f"top1 {100 * a.top1_agreement:.1f}% |d| {a.parity_max_abs:.3g}")
            dpts = 100 * (a.accuracy - s.accuracy)
            line = (f"{a.runtime:11}{a.precision:10}{a.size_bytes / 1024:8.0f}  {par:24}{100 * a.accuracy:7.2f}"
                    f"{dpts:+7.2f}")
            for t in threads_list:
                m = meas.get((a.key, t))
                if m is None:
                    line += " | " + "not measured".ljust(27) + " " * 34
                    continue
                lo, hi = m.stats.ci95_median
                c = cmp(base, a.key, t)
                rat = "1 (reference)" if a.key == base else (
                    f"{c.ratio_median:.2f} [{c.ci95[0]:.2f}, {c.ci95[1]:.2f}]" if c else "-")
                verdict = "" if a.key == base else (c.verdict if c else "-")
                verdict = "SLOWER" if verdict == "slower" else verdict
                line += f" | {m.stats.median:.4f} [{lo:.4f}, {hi:.4f}]".ljust(30) + f"{rat:21}{verdict:13}"
            if dpts < -ACC_WINDOW:
                line += f"  (acc more than {ACC_WINDOW} pts below PyTorch)"
            out(line)
        out(f"-- {s.name}: export, metadata; int8 vs fp32 within the runtime (paired) and vs ort at the same precision "
            "(unpaired); 'faster'/'SLOWER' only when the 95% CI excludes 1, 'equivalent' when it lies within +-2%")
        for a in rows:
            if a.error:
                continue
            out(f"  {a.runtime:11}{a.precision:10} export {a.made_in_s:6.1f} s{'*' if a.cached else ' '}  {a.meta}")
            parts = []
            for t in threads_list:
                if not a.fp32:
                    parts.append(f"{t}t vs {a.runtime} fp32: {speed(cmp(f'{a.model}/{a.runtime}/fp32', a.key, t))}")
                if a.runtime != "ort" and not a.fp32:  # fp32 vs ort fp32 is in the table above
                    parts.append(f"{t}t vs {same_prec_ort(a).split('/', 1)[1].replace('/', ' ')}: "
                                 f"{speed(cmp(same_prec_ort(a), a.key, t))}")
            if parts:
                out(" " * 23 + "; ".join(parts))
    if any(a.cached for a in arts):
        out("(* export time measured when the artifact was first made, read from .cache/artifacts.json; ort-mobile's "
            "covers both .ort styles; ort int8's includes calibration)")

    out()
    out(f"== WINNERS: per model and thread count, the fastest artifact within {ACC_WINDOW} accuracy points of the PyTorch "
        "fp32 model (ratio = winner / other, < 1 = winner faster; 95% CI; cross-runtime ratios unpaired)")
    for s in subjects:
        ok = [a for a in arts if a.model == s.name and a.accuracy is not None
              and 100 * (a.accuracy - s.accuracy) >= -ACC_WINDOW - 1e-9]
        dropped = [a.label for a in arts if a.model == s.name and a.accuracy is not None and a not in ok]
        for t in threads_list:
            cands = sorted((meas[(a.key, t)].stats.median, a.label, a) for a in ok if (a.key, t) in meas)
            if not cands:
                out(f"{s.name}, {t} thread(s): nothing measured")
                continue
            (wm, _, w), base = cands[0], f"{s.name}/ort/fp32"
            line = f"{s.name}, {t} thread(s): {w.label} {wm:.4f} ms"
            if w.key == base:
                line += " -- ort fp32 itself"
            else:
                line += f" -- vs ort fp32: {speed(cmp(base, w.key, t))}"
            if len(cands) > 1:
                rm, _, r = cands[1]
                pair = "paired" if r.runtime == w.runtime else "unpaired"
                c = cmp(r.key, w.key, t)
                tie = "" if c is None or c.verdict == "faster" else " -> a tie: the CI does not separate them"
                line += f"; vs runner-up {r.label} {rm:.4f} ms: {speed(c)}, {pair}{tie}"
            out(line)
        if dropped:
            out(f"  {s.name}: excluded for accuracy (> {ACC_WINDOW} pts below PyTorch): {', '.join(dropped)}")

    if len(threads_list) > 1:
        t1, tn = threads_list[0], threads_list[-1]
        worse = []
        for a in arts:
            m1, mn = meas.get((a.key, t1)), meas.get((a.key, tn))
            if m1 is not None and mn is not None:
                c = compare(m1, mn, seed=0)
                if c.verdict == "slower":
                    worse.append(f"{a.model} {a.label} {c.ratio_median:.2f} [{c.ci95[0]:.2f}, {c.ci95[1]:.2f}]")
        out()
        out(f"thread scaling: artifacts SLOWER with {tn} threads than with {t1} (ratio {tn}t / {t1}t [95% CI], "
            f"separate runs): {len(worse)} of {len(arts)}" + (":" if worse else ""))
        for i in range(0, len(worse), 4):
            out("  " + "; ".join(worse[i:i + 4]))
    warn = collections.defaultdict(list)
    for (key, t), m in meas.items():
        for w in m.stability.warnings:
            warn[w.code].append(f"{key.replace('/', ' ')} {t}t")
    out()
    if warn:
        out("noise warnings from the harness (see MEASUREMENT.md; re-run on a quieter machine if they matter):")
        for code, where in sorted(warn.items()):
            out(f"  {code} x{len(where)}: {', '.join(where[:6])}{' ...' if len(where) > 6 else ''}")
    else:
        out("noise warnings from the harness: none")
    for f in failed_runs:
        out(f"latency run FAILED (its artifacts have no latency): {f}")
    out(f"({len(arts)} artifacts, {len(meas)} latency measurements, {time.perf_counter() - T0:.0f} s)")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(LINES) + "\n")
    print(f"written: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
