"""Benchmark (issue 5): quantization-aware training / distillation vs post-training quantization of
the SAME trained student, on digits, paired over seeds.

For each student size and seed a starting student is distilled from the digits teacher (KD, up to
20 epochs, early stopping). From that same start, for each ORT static int8 method:
  PTQ         the start, quantized (ORT static, calibrated on the training split)
  FT-CE+PTQ   control for QAT: the start fine-tuned in fp32 on the labels, same budget, then PTQ
  QAT         fine-tuned with fake quantization on the method's exact grid, labels only, then exported
              and quantized by the same method (the deployable int8 artifact)
  FT-KD+PTQ   control for QAD: fine-tuned in fp32 with the KD loss, same budget, then PTQ
  QAD         QAT with the KD loss from the teacher (quantization-aware distillation)
The controls separate the effect of quantization-awareness from that of "more training".
All accuracies and NLLs are of the int8 ONNX artifacts run by ONNX Runtime on the 360 test images;
each arm is compared with PTQ, and QAT / QAD with their fp32-fine-tuning controls: mean difference
over seeds with a 95% paired-t CI. Fine-tuning:
5 epochs, AdamW lr 5e-4, cosine, +-1 px shifts, best epoch on validation. Latency of fp32 / PTQ /
QAD of seed 0 is measured interleaved through the harness (1 thread, batch 1).

    .venv/bin/python benchmarks/quantize/qat_vs_ptq.py [--seeds 3] [--quick] [--out FILE]

Writes results/qat_vs_ptq.txt (results/qat_vs_ptq-quick.txt with --quick) beside this file.
"""
from __future__ import annotations

import argparse
import datetime
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

STUDENTS = {"cnn-xs (w4)": "zoo:cnn?width=4", "cnn-s (w8)": "zoo:cnn?width=8"}
METHODS = ["static", "static?per_channel=false"]
LINES: list[str] = []


def out(line: str = "") -> None:
    print(line, flush=True)
    LINES.append(line)


def _metrics(path: Path, task) -> tuple[float, float]:
    from workbench.evaluate import run_artifact

    z = run_artifact(str(path), "ort", task.x_test, task.input_name).astype(np.float64)
    z -= z.max(1, keepdims=True)
    nll = np.log(np.exp(z).sum(1)) - z[np.arange(len(task.y_test)), task.y_test]
    return float((z.argmax(1) == task.y_test).mean()), float(nll.mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 student, 1 method, 2 seeds, short training")
    ap.add_argument("--out", help="output file (default results/qat_vs_ptq[-quick].txt)")
    args = ap.parse_args()
    import torch

    from workbench.distill.run import DistillJob, run_distill
    from workbench.measure import collect_environment
    from workbench.progress import Progress
    from workbench.quantize.methods import parse_method
    from workbench.pipeline.study import paired_difference
    from workbench.tasks import load_task

    torch.set_num_threads(1)
    seeds = list(range(2 if args.quick else args.seeds))
    students = dict(list(STUDENTS.items())[1:]) if args.quick else STUDENTS
    methods = METHODS[:1] if args.quick else METHODS
    start_epochs, ft_epochs = (4, 2) if args.quick else (20, 5)
    target = Path(args.out) if args.out else HERE / "results" / f"qat_vs_ptq{'-quick' if args.quick else ''}.txt"
    cmd = "  ".join(["#", "Output of:", ".venv/bin/python benchmarks/quantize/qat_vs_ptq.py"] + sys.argv[1:])
    env = collect_environment()
    out(cmd.replace("  ", " "))
    out(f"# {datetime.datetime.now().isoformat(timespec='minutes')} on {env['description']}; torch {torch.__version__}, "
        f"onnxruntime {env.get('runtimes', {}).get('ort', {}).get('version', '?')}")
    out("== QAT / QAD vs PTQ of the same trained student (digits; int8 artifacts through ORT, 1 thread)")
    out(f"setup: teacher zoo:digits-resnet; start = KD {start_epochs} epochs; fine-tuning {ft_epochs} epochs lr 5e-4; "
        f"seeds {seeds}; methods {methods}")
    task = load_task("digits")
    tmp = Path(tempfile.mkdtemp(prefix="wb-bench-qat-"))
    quiet = Progress(quiet=True)
    base = dict(teacher="zoo:digits-resnet", task="digits", patience=0, cache=str(tmp / "cache"))
    rows = []  # dicts: student, method, seed, arm, acc, nll
    lat = {}
    t_start = time.perf_counter()
    try:
        for sname, sspec in students.items():
            for seed in seeds:
                sdir = tmp / f"start-{sname[:6]}-{seed}"
                run_distill(DistillJob(**{**base, "patience": 5}, student=sspec, epochs=start_epochs, seed=seed,
                                       out=str(sdir)), quiet)
                start = f"{sspec}&weights={sdir / 'student.safetensors'}"
                ft = {}
                for arm, alpha in (("FT-CE+PTQ", 0.0), ("FT-KD+PTQ", 0.9)):
                    ft[arm] = tmp / f"{arm}-{sname[:6]}-{seed}"
                    run_distill(DistillJob(**base, student=start, epochs=ft_epochs, lr=5e-4, seed=seed, alpha=alpha,
                                           out=str(ft[arm])), quiet)
                for mspec in methods:
                    method = parse_method(mspec)
                    cards = {}
                    for arm, alpha in (("QAT", 0.0), ("QAD", 0.9)):
                        d = tmp / f"{arm}-{sname[:6]}-{seed}-{method.key}"
                        measure = arm == "QAD" and seed == seeds[0]
                        cards[arm] = run_distill(DistillJob(**base, student=start, epochs=ft_epochs, lr=5e-4, seed=seed,
                                                            alpha=alpha, qat=mspec, measure=measure, out=str(d)), quiet)
                        if measure:
                            lat[(sname, mspec)] = cards[arm]["latency"]["variants"]
                    for d in ft.values():
                        method.apply(d / "student.onnx", d / f"ptq-{method.key}.onnx", task.x_train, task.input_name)
                    paths = {"PTQ": Path(cards["QAT"]["out"]) / "student.ptq.onnx",
                             "FT-CE+PTQ": ft["FT-CE+PTQ"] / f"ptq-{method.key}.onnx",
                             "QAT": Path(cards["QAT"]["out"]) / "student.int8.onnx",
                             "FT-KD+PTQ": ft["FT-KD+PTQ"] / f"ptq-{method.key}.onnx",
                             "QAD": Path(cards["QAD"]["out"]) / "student.int8.onnx"}
                    fp32_acc, fp32_nll = _metrics(Path(cards["QAT"]["out"]) / "student.fp32.onnx", task)
                    rows.append(dict(student=sname, method=mspec, seed=seed, arm="fp32 start", acc=fp32_acc, nll=fp32_nll))
                    for arm, p in paths.items():
                        acc, nll = _metrics(p, task)
                        rows.append(dict(student=sname, method=mspec, seed=seed, arm=arm, acc=acc, nll=nll,
                                         agree=cards[arm]["fake_quant_agreement"] if arm in cards else None))
                    got = {r["arm"]: r for r in rows if r["student"] == sname and r["method"] == mspec and r["seed"] == seed}
                    out(f"  {sname} seed {seed} {mspec:26} " + "  ".join(
                        f"{a} {100 * r['acc']:.2f}%/{r['nll']:.4f}" for a, r in got.items())
                        + f"  ({time.perf_counter() - t_start:.0f} s)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out()
    out("test accuracy (%) and NLL (nats) of the int8 artifacts, mean over seeds; differences with 95% paired-t CIs")
    out(f"{'student':12} {'method':26} {'arm':10} {'acc %':>7} {'NLL':>7}  {'vs':10} {'d acc (pts) [CI]':>24} "
        f"{'d NLL [CI]':>26}  verdict (accuracy / NLL)")
    for sname in students:
        for mspec in methods:
            sel = lambda arm: [r for r in rows if r["student"] == sname and r["method"] == mspec and r["arm"] == arm]  # noqa: E731
            for arm, refs in (("fp32 start", ()), ("PTQ", ()), ("FT-CE+PTQ", ("PTQ",)), ("QAT", ("PTQ", "FT-CE+PTQ")),
                              ("FT-KD+PTQ", ("PTQ",)), ("QAD", ("PTQ", "FT-KD+PTQ"))):
                rs = sel(arm)
                acc, nll = np.mean([r["acc"] for r in rs]), np.mean([r["nll"] for r in rs])
                head = f"{sname:12} {mspec:26} {arm:10} {100 * acc:7.2f} {nll:7.4f}"
                if not refs:
                    out(head)
                for i, ref in enumerate(refs):
                    base_rs = sel(ref)
                    da = paired_difference([r["acc"] for r in base_rs], [r["acc"] for r in rs])
                    dn = paired_difference([-r["nll"] for r in base_rs], [-r["nll"] for r in rs])  # higher = better
                    va = "better" if da["diff_ci95"][0] > 0 else "worse" if da["diff_ci95"][1] < 0 else "n.s."
                    vn = "better" if dn["diff_ci95"][0] > 0 else "worse" if dn["diff_ci95"][1] < 0 else "n.s."
                    out(f"{head if i == 0 else ' ' * len(head)}  {ref:10} {100 * da['diff_mean']:+8.2f} "
                        f"[{100 * da['diff_ci95'][0]:+5.2f}, {100 * da['diff_ci95'][1]:+5.2f}] "
                        f"{-dn['diff_mean']:+8.4f} [{-dn['diff_ci95'][1]:+.4f}, {-dn['diff_ci95'][0]:+.4f}]  {va} / {vn}")
    agree = [r["agree"] for r in rows if r.get("agree") is not None]
    out()
    out(f"fake-quantized PyTorch vs int8 artifact, same class: min {100 * min(agree):.1f}%, "
        f"mean {100 * np.mean(agree):.1f}% of the test set over all QAT/QAD runs")
    out()
    out("latency, seed 0 (ORT, 1 thread, batch 1, interleaved; ratio to the fp32 start):")
    for (sname, mspec), v in lat.items():
        parts = []
        for f, r in v.items():
            ci = r["ratio_ci95"]
            parts.append(f"{f} {r['median_ms']:.4f} ms" + ("" if r["ratio_to_fp32"] is None else
                         f" ({r['ratio_to_fp32']:.2f}x [{ci[0]:.2f}, {ci[1]:.2f}], {r['verdict']}"
                         + (", ⚠ SLOWER than fp32" if r["verdict"] == "slower" else "") + ")"))
        out(f"  {sname} {mspec}: " + "; ".join(parts))
    out(f"({len(rows)} artifacts evaluated, {time.perf_counter() - t_start:.0f} s)")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(LINES) + "\n")
    print(f"written: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
