"""Benchmark (issue 5): every quantization method, `auto`, and optimum's ORTQuantizer, on four models.

Models: the digits teacher (ResNet, models/digits-resnet.safetensors), a digits student distilled from it,
a 2-layer 384-wide BERT distilled from all-MiniLM-L6-v2 (there is no hub: the "tiny BERT" is made here by
layer dropping + a short distillation), and all-MiniLM-L6-v2 itself (mean-pooled sentence embedding).
Each is exported to ONNX with the project's exporters and cached under benchmarks/quantize/.cache/.

Per model: every fixed method that applies (static QDQ with its default options and the variants `auto`
tries, dynamic, fp16, int4 for MatMul models), `auto` (auto_quantize with the task metric: accuracy for
digits, budget 0.5 point; cosine to fp32 for the text models, budget 0.01 = cosine >= 0.99), and for the
text models optimum's ORTQuantizer (avx2 and avx512_vnni presets, dynamic, per-channel). All variants of
one model are measured INTERLEAVED with fp32 in one harness run, at 1 and at 2 threads, batch 1 (text:
seq 128 of real held-out tokens); ratio of medians to fp32 with a bootstrap 95% CI and a verdict.
Quality is measured on the artifacts through ONNX Runtime: test accuracy with a paired CI of the drop
(digits), mean cosine of the sentence embeddings to the fp32 artifact's on held-out sentences (text).

    .venv/bin/python benchmarks/quantize/methods.py [--quick] [--only KEY,...] [--no-write]

Writes results/methods.txt (results/methods-quick.txt with --quick). Exit 1 when a target is not met
(never with --quick).
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import prep  # noqa: E402

LINES: list[str] = []
KEYS = ("digits-teacher", "digits-student", "tiny-bert", "minilm")


def out(line: str = "") -> None:
    print(line, flush=True)
    LINES.append(line)


def ver(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def ci(c, fmt="{:.3f}") -> str:
    return f"[{fmt.format(c[0])}, {fmt.format(c[1])}]" if c else "[no CI]"


def fixed_methods(subject, isa) -> list:
    """Every fixed method that applies: static / dynamic / fp16 / int4 with their defaults, plus every
    variant auto proposes for this graph on this CPU (deduplicated by method key)."""
    from workbench.quantize import make_method
    from workbench.quantize.propose import propose_candidates

    ms = [make_method(n) for n in ("static", "dynamic", "fp16", "int4")]
    ms += [p.method for p in propose_candidates(subject.onnx, isa, True)]
    seen, keep = set(), []
    for m in ms:
        if m.key not in seen:
            seen.add(m.key)
            keep.append(m)
    return keep


def quality_row(subject, ref_pe, pe) -> dict:
    """Metric of a variant with its 95% CI, and its drop vs fp32 with a paired 95% CI (per test example)."""
    import numpy as np

    from workbench.evaluate import bootstrap_mean_ci

    pe = np.asarray(pe, dtype=np.float64)
    if subject.kind == "digits":
        return {"value": pe.mean(), "ci": bootstrap_mean_ci(pe), "drop": ref_pe.mean() - pe.mean(),
                "drop_ci": bootstrap_mean_ci(ref_pe - pe)}
    pe = np.minimum(pe, 1.0)  # cosine of fp32 to itself rounds to 1 + 1e-8
    return {"value": pe.mean(), "ci": bootstrap_mean_ci(pe), "drop": 1 - pe.mean(), "drop_ci": bootstrap_mean_ci(1 - pe)}


def fmt_quality(subject, q) -> str:
    if subject.kind == "digits":
        return (f"{100 * q['value']:6.2f}% {ci([100 * x for x in q['ci']], '{:.1f}'):<13} "
                f"{100 * q['drop']:+6.2f} pts {ci([100 * x for x in q['drop_ci']], '{:+.2f}')}")
    return f"{q['value']:.4f} {ci(q['ci'], '{:.4f}'):<17} {q['drop']:.4f} {ci(q['drop_ci'], '{:.4f}')}"


def run_subject(s, args, isa, protocol, rounds, progress, work: Path) -> dict:
    from workbench.errors import QuantizationError
    from workbench.measure import compare, measure_interleaved
    from workbench.quantize.auto import auto_quantize, short_protocol, slug

    t0 = time.perf_counter()
    wd = work / s.key
    wd.mkdir(parents=True)
    variants, skipped = [("fp32", "fp32 (not quantized)", str(s.onnx))], []
    for m in fixed_methods(s, isa):
        path = wd / f"{slug(m.spec)}.onnx"
        progress.info(f"   quantizing: {m.spec}")
        try:
            m.apply(s.onnx, path, s.calib if m.needs_calibration else None, "input")
            variants.append((m.spec, m.describe, str(path)))
        except QuantizationError as e:
            skipped.append((m.spec, str(e)))
    reuse = {}
    for m in fixed_methods(s, isa):
        p = wd / f"{slug(m.spec)}.onnx"
        if p.is_file():
            reuse[m.key] = str(p)
    progress.info(f"   auto: quantize candidates, evaluate, measure them interleaved with fp32 ({args.auto_rounds} rounds)")
    state = {"next": 0.0}

    def say(f, msg):
        if f >= state["next"]:
            progress.info(f"     auto {f:4.0%} {msg}")
            state["next"] = f + 0.2

    auto = auto_quantize(s.onnx, wd / "auto.onnx", calib=s.calib, eval_fn=s.auto_eval, inputs=s.latency_npz,
                         threads=1, max_drop=s.max_drop, rounds=args.auto_rounds, protocol=short_protocol(),
                         progress=say, work_dir=wd / "auto-work", reuse=reuse)
    variants.append(("auto", f"auto -> {auto.chosen.spec}", str(wd / "auto.onnx")))
    peers_note = None
    if s.kind == "text":
        if prep.optimum_available():
            for preset in ("avx2", "avx512_vnni"):
                progress.info(f"   optimum ORTQuantizer, AutoQuantizationConfig.{preset}(is_static=False, per_channel=True)")
                d = wd / f"optimum-{preset}"
                d.mkdir()
                p = prep.optimum_quantize(s.onnx, d, preset)
                variants.append((f"optimum {preset}", f"optimum ORTQuantizer {preset} preset, dynamic, per-channel", str(p)))
        else:
            peers_note = prep.PEER_INSTALL
            progress.info(peers_note)

    progress.info(f"   evaluating {len(variants)} variants through ONNX Runtime")
    ref_pe = s.quality(s.onnx)
    pe = {name: ref_pe if name == "fp32" else s.quality(path) for name, _, path in variants}
    qual = {name: quality_row(s, ref_pe, v) for name, v in pe.items()}
    lat = {}
    for threads in (1, 2):
        state = {"next": 0.0}

        def on_progress(f, msg, _t=threads):
            if f >= state["next"]:
                progress.info(f"   measuring {len(variants)} variants interleaved, {_t} thread(s): {f:4.0%} ({msg})")
                state["next"] = f + 0.25

        ms = measure_interleaved([p for _, _, p in variants], "ort", threads, s.latency_npz, protocol, rounds=rounds,
                                 seed=threads, on_progress=on_progress)
        lat[threads] = {name: (m, None if i == 0 else compare(ms[0], m, against="fp32"))
                        for i, ((name, _, _), m) in enumerate(zip(variants, ms))}
    return {"variants": variants, "skipped": skipped, "auto": auto, "quality": qual, "pe": pe, "latency": lat,
            "peers_note": peers_note, "seconds": time.perf_counter() - t0}


def verdict(c) -> str:
    if c is None:
        return "reference"
    return "⚠ SLOWER" if c.verdict == "slower" else c.verdict


def report_subject(s, r) -> list[str]:
    """Print the table of one model; returns the names of the variants slower than fp32 (any thread count)."""
    from workbench.measure import compare

    out(f"== {s.title}")
    out(f"   ONNX: {s.onnx.relative_to(ROOT)}; latency inputs: {s.latency_inputs}; metric: {s.metric}")
    for n in s.notes:
        out(f"   {n}")
    a = r["auto"]
    out(f"   auto ({a.elapsed_s:.0f} s, its own interleaved run at 1 thread): {a.message}")
    for what, why in r["skipped"]:
        out(f"   not applicable: {what}: {why}")
    if r["peers_note"]:
        out(f"   {r['peers_note']}")
    qh = ("accuracy [95% CI]     drop vs fp32 [paired 95% CI]" if s.kind == "digits"
          else "mean cos [95% CI]        1 - cos [95% CI]")
    out(f"   {'variant':<44} {'MB':>6}  {'1 thread: median ms [CI]':<26} {'ratio [95% CI]':<22} {'verdict':<13}"
        f" {'2 threads: median ms [CI]':<26} {'ratio [95% CI]':<22} {'verdict':<13} {qh}")
    slower = []
    for name, desc, path in r["variants"]:
        cells = []
        for t in (1, 2):
            m, c = r["latency"][t][name]
            med = f"{m.stats.median:.3f} {ci(m.stats.ci95_median)}"
            rat = "(baseline)" if c is None else f"{c.ratio_median:.3f} {ci(c.ci95)}"
            cells.append(f"{med:<26} {rat:<22} {verdict(c):<13}")
            if c is not None and c.verdict == "slower":
                slower.append(f"{name} ({t} thread{'s' if t > 1 else ''}, ratio {c.ratio_median:.2f})")
        label = f"auto -> {a.chosen.spec}" if name == "auto" else name
        out(f"   {label:<44} {os.path.getsize(path) / 1e6:>6.2f}  {cells[0]} {cells[1]}"
            f"{fmt_quality(s, r['quality'][name])}")
    # auto against each fixed method, paired in the same interleaved run
    am = r["latency"][1]["auto"][0]
    parts = []
    for name, _, _ in r["variants"][1:]:
        if name != "auto":
            c = compare(r["latency"][1][name][0], am)
            parts.append(f"{name} {c.ratio_median:.2f} {c.verdict}")
    out("   auto vs each variant at 1 thread (median(auto) / median(variant), verdict of auto): " + "; ".join(parts))
    out(f"   ({r['seconds']:.0f} s for this model)")
    out()
    return slower


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples and rounds, short runs (a few minutes)")
    ap.add_argument("--only", help=f"comma-separated subset of {','.join(KEYS)}")
    ap.add_argument("--no-write", action="store_true", help="do not write results/methods*.txt")
    args = ap.parse_args()
    only = [k.strip() for k in args.only.split(",")] if args.only else list(KEYS)
    if set(only) - set(KEYS):
        raise SystemExit(f"--only: unknown {sorted(set(only) - set(KEYS))}; use {', '.join(KEYS)}")
    t_start = time.perf_counter()
    import torch

    from workbench.measure import Protocol, collect_environment
    from workbench.progress import Progress
    from workbench.quantize.auto import short_protocol
    from workbench.tasks import load_task

    torch.set_num_threads(1)
    progress = Progress()
    env = collect_environment(["ort"])
    isa = env["isa"]
    rounds, args.auto_rounds = (2, 2) if args.quick else (3, 3)
    protocol = short_protocol() if args.quick else Protocol(warmup_runs=10, warmup_s=0.3, min_runs=30, min_s=1.5, max_s=6.0)
    cmd = ".venv/bin/python benchmarks/quantize/methods.py" + (" --quick" if args.quick else "") + \
        (f" --only {args.only}" if args.only else "")
    out("== Quantization benchmark (issue 5): every method, auto, and optimum's ORTQuantizer, one harness")
    out(f"machine:  {env['cpu_model'] or env['description']}; {env['cores']['logical']} logical cores; ISA flags: "
        f"{', '.join(f for f, on in isa.items() if on)}; load average at start "
        f"{', '.join(f'{x:.2f}' for x in env['loadavg'] or [])}")
    out(f"versions: python {env['python']}, onnxruntime {ver('onnxruntime')}, onnx {ver('onnx')}, torch {ver('torch')}, "
        f"transformers {ver('transformers')}, optimum {ver('optimum')}, optimum-onnx {ver('optimum-onnx')}, numpy {ver('numpy')}")
    out(f"latency:  ONNX Runtime CPU EP, batch 1, threads 1 and 2; per model all variants measured interleaved in one "
        f"harness run ({rounds} rounds, a fresh worker per variant per round, order shuffled); protocol warm-up "
        f">= {protocol.warmup_runs} runs / {protocol.warmup_s} s, timed >= {protocol.min_runs} runs, {protocol.min_s}-"
        f"{protocol.max_s} s per variant in all; ratio = median(variant) / median(fp32), two-level bootstrap 95% CI; "
        "verdict faster / slower (CI entirely below / above 1), equivalent (CI within +-2%), else inconclusive")
    out()
    work = Path(tempfile.mkdtemp(prefix="wb-qbench-"))
    results, subjects, slower_all = {}, {}, {}
    try:
        subs = []
        if {"digits-teacher", "digits-student"} & set(only):
            subs += prep.digits_subjects(load_task("digits"), args.quick, progress)
        if {"tiny-bert", "minilm"} & set(only):
            subs += prep.text_subjects(args.quick, progress)
        for s in [s for s in subs if s.key in only]:
            progress.info(f"-- {s.key}")
            subjects[s.key], results[s.key] = s, run_subject(s, args, isa, protocol, rounds, progress, work)
            slower_all[s.key] = report_subject(s, results[s.key])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ok = targets(results, subjects, slower_all)
    out(f"total {time.perf_counter() - t_start:.0f} s" + ("  (--quick: a smoke run with fewer samples and short "
                                                        "measurements; the targets are judged by the full run)" if args.quick else ""))
    if not args.no_write:
        dest = HERE / "results" / ("methods-quick.txt" if args.quick else "methods.txt")
        dest.parent.mkdir(exist_ok=True)
        stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
        dest.write_text(f"# Output of: {cmd}\n# Date: {stamp}\n" + "\n".join(LINES) + "\n")
        print(f"written: {dest.relative_to(ROOT)}")
    return 0 if ok or args.quick else 1


def targets(results, subjects, slower_all) -> bool:
    import numpy as np

    from workbench.evaluate import bootstrap_mean_ci
    from workbench.measure import compare

    out("== TARGETS (this machine)")
    ok = True

    def line(met: bool, text: str):
        nonlocal ok
        ok = ok and met
        out(f"   [{'met' if met else 'NOT met'}] {text}")

    def speed(r, t=1):
        c = r["latency"][t]["auto"][1]
        return 1 / c.ratio_median, (1 / c.ci95[1], 1 / c.ci95[0]) if c.ci95 else None

    if "digits-teacher" in results:
        r = results["digits-teacher"]
        sp, sp_ci = speed(r)
        q = r["quality"]["auto"]
        line(sp >= 1.3 and q["drop"] <= 0.005,
             f"digits teacher: auto ({r['auto'].chosen.spec}) >= 1.3x faster than fp32 at 1 thread: {sp:.2f}x "
             f"{ci(sp_ci, '{:.2f}')}, with <= 0.5 point accuracy drop: {100 * q['drop']:+.2f} points "
             f"{ci([100 * x for x in q['drop_ci']], '{:+.2f}')}")
    if "minilm" in results:
        r = results["minilm"]
        sp, sp_ci = speed(r)
        q = r["quality"]["auto"]
        line(sp >= 1.5 and q["value"] >= 0.99,
             f"MiniLM: auto ({r['auto'].chosen.spec}) >= 1.5x faster than fp32 at 1 thread: {sp:.2f}x "
             f"{ci(sp_ci, '{:.2f}')}, with mean cosine >= 0.99: {q['value']:.4f} {ci(q['ci'], '{:.4f}')}")
        if "optimum avx2" in r["latency"][1]:
            diff = np.asarray(r["pe"]["optimum avx2"], float) - np.asarray(r["pe"]["auto"], float)  # per sentence
            lo, hi = bootstrap_mean_ci(diff)
            fid_ok = lo <= 0  # auto's cosine is not detectably below optimum's
            for t in (1, 2):
                c = compare(r["latency"][t]["optimum avx2"][0], r["latency"][t]["auto"][0])
                line(c.verdict != "slower" and fid_ok,
                     f"MiniLM, {t} thread{'s' if t > 1 else ''}: auto at least as fast as optimum's avx2 preset: "
                     f"median(auto)/median(optimum) {c.ratio_median:.3f} {ci(c.ci95)} ({c.verdict}), at no more "
                     f"fidelity loss: cosine auto {r['quality']['auto']['value']:.4f} vs optimum "
                     f"{r['quality']['optimum avx2']['value']:.4f} (paired diff optimum - auto {diff.mean():+.4f} "
                     f"[{lo:+.4f}, {hi:+.4f}])")
        else:
            out("   [skipped] MiniLM vs optimum: optimum not installed (see above)")
    listing = [f"{k}: {v}" for k, vs in slower_all.items() for v in vs]
    out(f"   variants slower than fp32 (each marked ⚠ SLOWER in its table): {'; '.join(listing) or 'none'}")
    silent = [f"{k} (auto -> {r['auto'].chosen.spec}, ratio {r['latency'][1]['auto'][1].ratio_median:.2f})"
              for k, r in results.items() if r["latency"][1]["auto"][1].verdict == "slower" and not r["auto"].loud]
    loud = [f"{k}: {r['auto'].message}" for k, r in results.items() if r["auto"].loud]
    line(not silent, "auto never returned a variant slower than fp32 without saying so (1 thread, re-measured "
         f"here): {'; '.join(silent) or 'none did'}" + (f"; kept fp32 loudly: {'; '.join(loud)}" if loud else ""))
    return ok


if __name__ == "__main__":
    sys.exit(main())
