"""Benchmark 2 (issue 4): what the teacher-output cache buys — epoch time of KD with the cache vs
without it (the teacher runs on every batch, as distillation libraries without a cache do), and vs
a labels-only epoch (the floor: no teacher at all).

Same student (cnn-s, width 8 depth 2), same data (1,257 digits, +-1 px shifts), same batch size (64),
same optimiser; 1 torch thread. The three variants run interleaved in ``--rounds`` rounds (order
shuffled per round) of ``--epochs`` epochs each; an epoch's time is its training steps plus the
validation pass (identical in all three). The one-off cost of filling the cache is reported separately.

    .venv/bin/python benchmarks/distill/cache_epoch.py [--rounds 3] [--epochs 4]

Target: cached KD epoch <= 1.3x a labels-only epoch.
"""
from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=4)
    args = ap.parse_args()
    import torch
    import torch.nn.functional as F

    from workbench.distill import losses as L
    from workbench.distill.cache import OutputCache
    from workbench.distill.classify import ClassifierData, LossConfig, TeacherTargets, distil_classifier
    from workbench.distill.engine import FitConfig, fit
    from workbench.measure import collect_environment
    from workbench.progress import Progress
    from workbench.zoo.sources import load_model
    from workbench.tasks import load_task

    torch.set_num_threads(1)
    env = collect_environment()
    print("== teacher-output cache: KD epoch time with the cache, without it, and labels-only")
    print(f"machine:  {env['description']}; torch {torch.__version__}, 1 thread")
    print(f"setup:    teacher zoo:digits-resnet (1.23 M params), student zoo:cnn?width=8&depth=2, digits 1,257 images, "
          f"+-1 px shifts (9 views), batch 64 (20 steps/epoch), {args.rounds} interleaved rounds x {args.epochs} epochs")
    print("target:   cached KD epoch <= 1.3x labels-only epoch")
    print()
    task = load_task("digits")
    teacher = load_model("zoo:digits-resnet", in_channels=1, num_classes=10, role="teacher")
    tmp = Path(tempfile.mkdtemp(prefix="wb-bench-cache-"))
    quiet = Progress(quiet=True)
    kd = LossConfig(alpha=0.9, temperature=4.0)
    try:
        cache = OutputCache(tmp / "cache")
        data = ClassifierData(task, 1)
        t0 = time.perf_counter()
        TeacherTargets(teacher, data, kd, cache, quiet).prepare()
        fill_s = time.perf_counter() - t0
        print(f"filling the cache once (9 views x 1,257 images through the teacher): {fill_s:.1f} s")
        t0 = time.perf_counter()
        again = TeacherTargets(teacher, data, kd, cache, quiet)
        status = again.prepare()
        print(f"re-opening it (memory-mapped, status {status}): {time.perf_counter() - t0:.3f} s")
        print()

        def run_variant(name: str, seed: int) -> list[float]:
            cfg = FitConfig(epochs=args.epochs, batch_size=64, seed=seed, patience=0)
            torch.manual_seed(seed)
            student = load_model("zoo:cnn?width=8&depth=2", in_channels=1, num_classes=10, role="student")
            if name in ("labels-only", "KD, cached"):
                losses = LossConfig(alpha=0.0) if name == "labels-only" else kd
                res = distil_classifier(teacher, student, task, losses, cfg, out_dir=tmp / f"w-{name}-{seed}",
                                        cache=cache, shift=1, progress=quiet, key_extra=f"{name}{seed}")
                return [h["seconds"] for h in res["fit"]["history"]]
            # KD without a cache: the teacher runs (no grad, eval mode) on every batch's augmented images
            model, views = student.module, data.views
            labels = torch.from_numpy(task.y_train.astype(np.int64))
            gen = torch.Generator().manual_seed(seed + 17)
            teacher.module.eval()

            def step(idx, epoch):
                view = torch.randint(0, views.n_views, (len(idx),), generator=gen)
                xb = views.get(idx, view)
                with torch.no_grad():
                    tl = teacher.module(xb)
                return L.hinton_kd_loss(model(xb), tl, labels[idx], kd.temperature, kd.alpha)

            def evaluate():
                with torch.no_grad():
                    return float((model(torch.from_numpy(task.x_val)).argmax(1).numpy() == task.y_val).mean())

            res = fit({"student": model}, step, len(task.y_train), evaluate, cfg, progress=None)
            return [h["seconds"] for h in res.history]

        names = ["labels-only", "KD, cached", "KD, no cache"]
        times: dict[str, list[float]] = {n: [] for n in names}
        rng = random.Random(0)
        for r in range(args.rounds):
            order = names[:]
            rng.shuffle(order)
            for n in order:
                times[n] += run_variant(n, r)
            print(f"  round {r + 1}/{args.rounds} ({', '.join(order)}): " +
                  ", ".join(f"{n} {np.median(times[n][-args.epochs:]):.3f} s" for n in names), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {n: float(np.median(v)) for n, v in times.items()}
    rng_np = np.random.default_rng(0)

    def ratio_ci(a, b):
        a, b = np.asarray(times[a]), np.asarray(times[b])
        boots = [np.median(rng_np.choice(a, len(a))) / np.median(rng_np.choice(b, len(b))) for _ in range(2000)]
        return np.percentile(boots, [2.5, 97.5])

    print()
    print(f"{'variant':14} {'median epoch s':>15} {'vs labels-only':>16} {'95% CI':>18}")
    for n in names:
        lo, hi = ratio_ci(n, "labels-only")
        print(f"{n:14} {med[n]:15.3f} {med[n] / med['labels-only']:15.2f}x {f'[{lo:.2f}, {hi:.2f}]':>18}")
    speed = med["KD, no cache"] / med["KD, cached"]
    lo, hi = ratio_ci("KD, no cache", "KD, cached")
    print(f"\nthe cache makes a KD epoch {speed:.1f}x faster [{lo:.1f}, {hi:.1f}] (no cache / cached); the cache fill "
          f"({fill_s:.1f} s, once per teacher x data x augmentation) pays for itself after "
          f"{fill_s / max(1e-9, med['KD, no cache'] - med['KD, cached']):.1f} epochs")
    ok = med["KD, cached"] / med["labels-only"] <= 1.3
    print(f"target cached KD epoch <= 1.3x labels-only: {med['KD, cached'] / med['labels-only']:.2f}x -> "
          f"{'met' if ok else 'NOT met'}")
    print(f"(epoch times: {sum(len(v) for v in times.values())} epochs, CIs: bootstrap of the median ratio over epochs)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
