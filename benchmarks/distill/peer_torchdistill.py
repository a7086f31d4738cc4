"""Peer benchmark: the workbench's Hinton KD vs torchdistill's, side by side on the digits task.

Same teacher (the committed `zoo:digits-resnet`, eval mode), same student (`cnn-s` = cnn width 8
depth 2; the same initial weights per seed on both sides, checked by hash), same data (the `digits`
task's 1,257 training images, no augmentation on either side), same optimiser (AdamW, lr 3e-3,
weight decay 5e-4), same schedule (linear warm-up, then cosine decay per step), batch 64, same
epochs (20), same loss (T = 4, 0.9 on the soft-target term, 0.1 on the labels), same torch threads
(1), same accuracy function, seeds 0, 1, 2.

The workbench side is run along each of its two training paths, each against a torchdistill run
set up to match it:
- `engine`: what `workbench distill` runs (distil_classifier on the epoch engine: validation after
  every epoch, best epoch kept); torchdistill's side also keeps its best-validation epoch, as
  torchdistill's example script does; every batch used.
- `trainer`: what the recipe pipeline (`workbench run`) runs (train_classifier on the same engine with
  a budget in steps, no validation here, so final weights); torchdistill keeps its final weights; the
  same number of steps (epochs x n // batch) on both; the engine's passes include their partial batch.
The workbench reads teacher logits from its teacher-output cache, filled from cold inside every timed
run (the warm-cache time is reported too); torchdistill 1.1.5 (DistillationBox, KDLoss; in its own
venv, benchmarks/.venv-torchdistill, made on first use) runs the teacher on every batch. Each side
runs in a fresh process, one at a time, who goes first alternating.

    .venv/bin/python benchmarks/distill/peer_torchdistill.py [--quick] [--epochs N] [--seeds 0,1,2]
        [--students cnn-s,cnn-m] [--paths engine,trainer] [--same-order] [--threads 1] [--out FILE]

Targets (issue 4): the workbench's student at least as accurate (mean test-accuracy difference,
workbench - torchdistill, >= -0.3 points, about one test image of 360), in no more wall time
(ratio of mean training wall times, workbench with a cold cache / torchdistill, <= 1.0).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WORKER = HERE / "peer_torchdistill_worker.py"
DEFAULT_VENV = REPO / "benchmarks" / ".venv-torchdistill"
# one pip call: torch pinned beside what needs it, else pip pulls a newer multi-GB build
PIP_PINS = ["torch==2.14.1", "torchvision==0.29.1", "torchdistill==1.1.5", "scikit-learn", "numpy", "safetensors"]
STUDENTS = {"cnn-s": ("cnn", {"width": 8, "depth": 2}), "cnn-m": ("cnn", {"width": 16, "depth": 2})}
ACC_MARGIN_PTS = 0.3


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the torchdistill venv
def ensure_venv(venv: Path) -> Path:
    """The torchdistill venv's python; the venv is created on first use (about 2 minutes, ~5.7 GB)."""
    py = venv / "bin" / "python"
    if not py.exists():
        log(f"[setup] creating the torchdistill venv at {venv} (isolated; about 2 minutes and ~5.7 GB, once)")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        log(f"[setup] pip install {' '.join(PIP_PINS)}")
        proc = subprocess.Popen([str(py), "-m", "pip", "install", "--progress-bar", "off", *PIP_PINS],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        tail = []
        for line in proc.stdout:
            line = line.rstrip()
            tail = (tail + [line])[-20:]
            if line.startswith(("Collecting", "Installing", "Successfully", "ERROR")):
                log(f"[setup]   {line[:150]}")
        if proc.wait() != 0:
            shutil.rmtree(venv, ignore_errors=True)
            sys.exit("could not install torchdistill into its venv (removed it again); pip said:\n" + "\n".join(tail))
    check = subprocess.run([str(py), "-c", "import torch, torchdistill, sklearn, safetensors;"
                            "print(torch.__version__, torchdistill.__version__)"], capture_output=True, text=True)
    if check.returncode != 0:
        sys.exit(f"the torchdistill venv at {venv} is broken ({check.stderr.strip().splitlines()[-1:]}); "
                 f"delete it (rm -rf {venv}) and run this again to re-create it")
    log(f"[setup] torchdistill venv ready: torch {check.stdout.split()[0]}, torchdistill {check.stdout.split()[1]}")
    return py


# ---------------------------------------------------------------- the workbench side (run in a fresh process)
def workbench_side(cfg: dict) -> dict:
    """One workbench KD run on a cold teacher-output cache; also times the warm-cache path."""
    import torch

    torch.set_num_threads(cfg["threads"])
    sys.path.insert(0, str(HERE))
    from peer_torchdistill_worker import accuracy, state_digest

    from workbench.tasks import get_task

    task = get_task("digits")
    cache_dir = Path(tempfile.mkdtemp(prefix="workbench-peer-"))  # empty: a cold cache in every run
    try:
        run = _engine_run if cfg["path"] == "engine" else _trainer_run
        student, times, extra = run(cfg, task, cache_dir, state_digest)
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    student.eval()
    cold = times["setup"] + times["fill"] + times["fit"]
    return {"side": "workbench", "train_s": cold, "warm_s": cold - times["fill"] + times["hit"],
            "fill_s": times["fill"], "hit_s": times["hit"], "fit_s": times["fit"], **extra,
            "val_acc": accuracy(student, task.x_val, task.y_val),
            "test_acc": accuracy(student, task.x_test, task.y_test),
            "task_fingerprint": task.fingerprint(), "threads": torch.get_num_threads(),
            "versions": {"torch": torch.__version__, "python": sys.version.split()[0]}}


def _engine_run(cfg, task, cache_dir, state_digest):
    """What `workbench distill` runs: distil_classifier on the epoch engine (val each epoch, best epoch kept)."""
    import torch

    from workbench.distill.cache import OutputCache
    from workbench.distill.classify import ClassifierData, LossConfig, TeacherTargets, distil_classifier
    from workbench.distill.engine import FitConfig
    from workbench.zoo.sources import load_model

    opts = "&".join(f"{k}={v}" for k, v in cfg["arch_options"].items())
    teacher = load_model("zoo:digits-resnet", in_channels=1, num_classes=task.num_classes, role="teacher", task=task)
    torch.manual_seed(cfg["seed"])  # same initial student weights as the torchdistill side
    student = load_model(f"zoo:{cfg['arch']}?{opts}", in_channels=1, num_classes=task.num_classes, role="student")
    init = state_digest(student.module)
    losses = LossConfig(alpha=cfg["kd_weight"], temperature=cfg["temperature"])
    fc = FitConfig(epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"], weight_decay=cfg["weight_decay"],
                   optimizer="adamw", schedule="cosine", warmup_frac=cfg["warmup_frac"], patience=0, seed=cfg["seed"])
    cache = OutputCache(cache_dir / "cache")
    t0 = time.perf_counter()
    res = distil_classifier(teacher, student, task, losses, fc, out_dir=cache_dir / "work", cache=cache, shift=0)
    total = time.perf_counter() - t0
    t1 = time.perf_counter()
    status = TeacherTargets(teacher, ClassifierData(task, 0), losses, cache).prepare()  # what a warm run does instead
    hit = time.perf_counter() - t1
    if res["cache"].get("logits") != "made" or status.get("logits") != "hit":
        sys.exit(f"unexpected teacher-cache behaviour: first {res['cache']}, second {status}")
    fill = res["cache_seconds"]
    steps = len(res["fit"]["history"]) * math.ceil(len(task.y_train) / cfg["batch_size"])
    return student.module, {"setup": 0.0, "fill": fill, "hit": hit, "fit": total - fill}, {
        "steps": steps, "init_digest": init, "best_epoch": res["fit"]["best_epoch"],
        "final_loss": res["fit"]["history"][-1]["loss"]}


def _trainer_run(cfg, task, cache_dir, state_digest):
    """What `workbench run` (the recipe pipeline) runs: train_classifier with a budget in steps on the logits cache."""
    import torch

    from workbench.distill.cache import cache_key, teacher_logits
    from workbench.distill.classifier_train import train_classifier
    from workbench.distill.engine import FitConfig
    from workbench.distill.loss_config import LossConfig
    from workbench.distill.views import ShiftViews
    from workbench.artifact import sha256_file
    from workbench.zoo import build_arch, resolve_teacher

    teacher, weights = resolve_teacher("zoo:digits-resnet", None, 1, task.num_classes)
    teacher.eval()
    torch.manual_seed(cfg["seed"])  # same initial student weights as the torchdistill side
    student = build_arch(cfg["arch"], 1, task.num_classes, **cfg["arch_options"])
    init = state_digest(student)
    steps = cfg["epochs"] * (len(task.y_train) // cfg["batch_size"])  # n // batch steps per epoch (drops the rest)
    t0 = time.perf_counter()
    views = ShiftViews(torch.from_numpy(task.x_train), 0)  # shift 0: the identity view only, no augmentation
    key = cache_key(sha256_file(weights), task.fingerprint(), 0)
    t1 = time.perf_counter()
    teacher_logits(teacher, views, cache_dir, key)  # miss: runs the teacher once over the training split
    t2 = time.perf_counter()
    logits = teacher_logits(teacher, views, cache_dir, key)  # hit: what every later run does instead
    t3 = time.perf_counter()
    tc = FitConfig(steps=steps, batch_size=cfg["batch_size"], lr=cfg["lr"], weight_decay=cfg["weight_decay"],
                   warmup_frac=cfg["warmup_steps"] / steps, seed=cfg["seed"])
    res = train_classifier(student, views, task.y_train, tc, teacher_logits=logits,
                           losses=LossConfig(alpha=cfg["kd_weight"], temperature=cfg["temperature"]))
    t4 = time.perf_counter()
    return student, {"setup": t1 - t0, "fill": t2 - t1, "hit": t3 - t2, "fit": t4 - t3}, {
        "steps": steps, "init_digest": init, "best_epoch": cfg["epochs"], "final_loss": res.final_loss}


# ---------------------------------------------------------------- orchestration
def run_side(side: str, cfg: dict, td_python: Path) -> dict:
    if side == "workbench":
        cmd = [sys.executable, str(Path(__file__).resolve()), "--side-workbench", json.dumps(cfg)]
    else:
        cmd = [str(td_python), str(WORKER), json.dumps(cfg)]
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": str(cfg["threads"])}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"the {side} side failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(lines[-1][len("RESULT "):])
    out["process_s"] = wall
    return out


def machine_lines() -> list[str]:
    import platform

    flags, model = set(), platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", platform.machine(), platform.processor()):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [f"machine: {model}, {cores} usable logical cores ({os.cpu_count()} online), {platform.machine()}, "
            f"{platform.system()} {platform.release()}; ISA: {' '.join(isa) or 'unknown'}",
            f"load average at start: {load}"]


def mean_sd(xs: list[float]) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else float("nan")
    return m, sd


def pm(m: float, sd: float, scale: float = 1.0, digits: int = 2, sign: str = "") -> str:
    """'mean ± sd' (sd shown as n/a for a single value)."""
    return f"{m * scale:{sign}.{digits}f} ± " + ("n/a" if math.isnan(sd) else f"{sd * scale:.{digits}f}")


def paired_ci(diffs: list[float]) -> tuple[float, float] | None:
    """Student-t 95% CI of the mean of paired differences (None with fewer than 2 pairs)."""
    if len(diffs) < 2:
        return None
    from scipy import stats

    m, sd = mean_sd(diffs)
    half = stats.t.ppf(0.975, len(diffs) - 1) * sd / math.sqrt(len(diffs))
    return m - half, m + half


PATHS = {
    "engine": "`workbench distill` path: distil_classifier on the epoch engine (val accuracy after every epoch, "
              "best epoch kept, checkpoint every epoch); torchdistill side likewise keeps its best-val epoch, as its "
              "example script does; every batch used (last one partial)",
    "trainer": "`workbench run` (recipe pipeline) path: train_classifier on the engine with a budget in steps, on the "
               "logits cache, final weights; torchdistill side keeps its final weights too; the same step count "
               "(epochs x n // batch) on both sides",
}


def side_config(path: str, epochs: int, threads: int) -> dict:
    n, batch = 1257, 64
    engine = path == "engine"
    total = epochs * (math.ceil(n / batch) if engine else n // batch)
    return {"repo": str(REPO), "path": path, "threads": threads, "batch_size": batch, "epochs": epochs,
            "drop_last": not engine, "select_best": engine, "total_steps": total,
            "warmup_frac": 0.05, "warmup_steps": int(round(0.05 * total)) if engine else 20,
            "lr": 3e-3, "weight_decay": 5e-4, "kd_weight": 0.9, "temperature": 4.0}


def report(path: str, student: str, rows: list[tuple[int, dict, dict]], out) -> list[tuple[str, bool]]:
    c = side_config(path, rows[0][1]["epochs"], 1)
    out(f"\n-- path '{path}', student {student}: {len(rows)} seed(s), {c['total_steps']} AdamW steps "
        f"({c['warmup_steps']} warm-up); {PATHS[path]}")
    out("   accuracy of the final student on the 360 test images (val: 180); wall s = training including every "
        "teacher forward pass (workbench: its cold cache filled in the run)")
    out(f"{'seed':<6}{'first':<14}{'wb test %':>10}{'td test %':>10}{'diff pts':>10}{'wb val %':>9}{'td val %':>9}"
        f"{'wb cold s':>11}{'(fill s)':>9}{'wb warm s':>11}{'td s':>9}{'cold/td':>9}{'warm/td':>9}"
        f"{'best ep':>9}{'wb proc s':>11}{'td proc s':>11}")
    for seed, wb, td in rows:
        out(f"{seed:<6}{wb['first']:<14}{wb['test_acc'] * 100:>10.2f}{td['test_acc'] * 100:>10.2f}"
            f"{(wb['test_acc'] - td['test_acc']) * 100:>+10.2f}{wb['val_acc'] * 100:>9.2f}{td['val_acc'] * 100:>9.2f}"
            f"{wb['train_s']:>11.2f}{wb['fill_s']:>9.2f}{wb['warm_s']:>11.2f}{td['train_s']:>9.2f}"
            f"{wb['train_s'] / td['train_s']:>9.3f}{wb['warm_s'] / td['train_s']:>9.3f}"
            f"{str(wb['best_epoch']) + '/' + str(td['best_epoch']):>9}"
            f"{wb['process_s']:>11.2f}{td['process_s']:>11.2f}")

    def ms(key, i):
        return mean_sd([r[i][key] for r in rows])

    wa, ta, wv, tv = ms("test_acc", 1), ms("test_acc", 2), ms("val_acc", 1), ms("val_acc", 2)
    wc, ww, tt = ms("train_s", 1), ms("warm_s", 1), ms("train_s", 2)
    diffs = [(wb["test_acc"] - td["test_acc"]) * 100 for _, wb, td in rows]
    dm, dsd = mean_sd(diffs)
    ci = paired_ci(diffs)
    out(f"{'mean ± sd':<20}test %: wb {pm(*wa, 100)}, td {pm(*ta, 100)};  val %: wb {pm(*wv, 100)}, td {pm(*tv, 100)}")
    out(f"{'':<20}wall s: wb cold {pm(*wc)}, wb warm {pm(*ww)}, td {pm(*tt)}")
    ci_txt = f"[{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else "n/a (1 seed)"
    out(f"{'':<20}test-accuracy difference wb - td: {pm(dm, dsd, sign='+')} pts, paired 95% t-CI {ci_txt}")
    cold_ratio, warm_ratio = wc[0] / tt[0], ww[0] / tt[0]
    out(f"{'':<20}wall-time ratio wb / td (ratio of means): cold cache {cold_ratio:.3f} "
        f"({1 / cold_ratio:.2f}x as fast), warm cache {warm_ratio:.3f} ({1 / warm_ratio:.2f}x as fast)")
    acc_ok, time_ok = dm >= -ACC_MARGIN_PTS, cold_ratio <= 1.0
    return [(f"{path}/{student}: at least as accurate (mean diff {dm:+.2f} pts >= -{ACC_MARGIN_PTS} pts)", acc_ok),
            (f"{path}/{student}: no more wall time (cold-cache ratio {cold_ratio:.3f} <= 1.0)", time_ok)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 2 epochs, cnn-s, engine path only")
    ap.add_argument("--epochs", type=int, default=None, help="epochs over the 1,257 training images (default 20)")
    ap.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2)")
    ap.add_argument("--students", default=None, help=f"comma-separated, of {', '.join(STUDENTS)} (default cnn-s)")
    ap.add_argument("--paths", default=None, help="workbench training paths, comma-separated, of "
                    f"{', '.join(PATHS)} (default both)")
    ap.add_argument("--same-order", action="store_true", help="diagnostic, engine path only: torchdistill's sampler "
                    "replays the engine's example order, so the two sides differ only in their code")
    ap.add_argument("--threads", type=int, default=1, help="torch threads on both sides (default 1)")
    ap.add_argument("--venv", default=str(DEFAULT_VENV), help="the torchdistill venv (created when missing)")
    ap.add_argument("--out", default=None, help="also write the report to this file")
    ap.add_argument("--side-workbench", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.side_workbench is not None:  # internal: one workbench run in this fresh process
        sys.path.insert(0, str(REPO))
        print("RESULT " + json.dumps(workbench_side(json.loads(args.side_workbench))), flush=True)
        return 0

    epochs = args.epochs or (2 if args.quick else 20)
    seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
    students = (args.students or "cnn-s").split(",")
    paths = (args.paths or ("engine" if args.quick else "engine,trainer")).split(",")
    for s in students:
        if s not in STUDENTS:
            sys.exit(f"unknown student {s!r}; use one of {', '.join(STUDENTS)}")
    for p in paths:
        if p not in PATHS:
            sys.exit(f"unknown path {p!r}; use one of {', '.join(PATHS)}")
    if args.same_order and paths != ["engine"]:
        sys.exit("--same-order needs --paths engine (only the engine's example order can be replayed)")
    if epochs < 1 or args.threads < 1:
        sys.exit("--epochs and --threads must be >= 1")
    td_python = ensure_venv(Path(args.venv))

    lines: list[str] = []

    def out(line: str = "") -> None:
        lines.append(line)
        print(line, flush=True)

    command = " ".join([".venv/bin/python", os.path.relpath(__file__, REPO), *sys.argv[1:]])
    out(f"# Output of: {command}")
    out(f"# Date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    for ln in machine_lines():
        out(ln)
    out(f"config (both sides): digits task, 1,257 training images, no augmentation; {epochs} epochs of batch 64; "
        "AdamW lr 0.003, weight decay 0.0005; linear warm-up then cosine decay per step; T 4, "
        "loss = 0.9 * T^2 * KL(teacher || student) + 0.1 * CE (torchdistill KDLoss alpha 0.1 on CE, beta 0.9 on KL); "
        f"torch threads {args.threads}; seeds {seeds} (same initial student weights on both sides, checked); "
        "sides run one at a time, each in a fresh process, order alternating")
    if args.same_order:
        out("same order (diagnostic): torchdistill's sampler replays the workbench engine's per-epoch example order")
    out("teacher: zoo:digits-resnet (models/digits-resnet.safetensors), eval mode on both sides; students: "
        + ", ".join(f"{s} = {STUDENTS[s][0]} {STUDENTS[s][1]}" for s in students))

    t_start = time.perf_counter()
    results: dict[tuple[str, str], list] = {(p, s): [] for p in paths for s in students}
    versions = {}
    groups = [(p, s) for p in paths for s in students]
    for i, seed in enumerate(seeds):
        for g, (p, s) in enumerate(groups):
            arch, opts = STUDENTS[s]
            cfg = {**side_config(p, epochs, args.threads), "seed": seed, "arch": arch, "arch_options": opts,
                   "same_order": args.same_order}
            # who goes first alternates from seed to seed within a group, and from group to group within a seed
            order = ["workbench", "torchdistill"] if (i + g) % 2 == 0 else ["torchdistill", "workbench"]
            got = {}
            for side in order:
                log(f"[run] {p}/{s} seed {seed}: {side} ...")
                got[side] = r = run_side(side, cfg, td_python)
                log(f"[run]   {side}: test {r['test_acc']:.2%}, val {r['val_acc']:.2%}, {r['train_s']:.2f} s "
                    f"training ({r['process_s']:.1f} s process), {r['steps']} steps")
            wb, td = got["workbench"], got["torchdistill"]
            for what in ("task_fingerprint", "steps", "init_digest"):
                if wb[what] != td[what]:
                    sys.exit(f"the sides differ in {what}: workbench {wb[what]}, torchdistill {td[what]}; not comparable")
            wb["first"], wb["epochs"] = order[0], epochs
            results[(p, s)].append((seed, wb, td))
            versions = {"wb": wb["versions"], "td": td["versions"]}
    out(f"versions: workbench side torch {versions['wb']['torch']} (python {versions['wb']['python']}); "
        f"torchdistill side torch {versions['td']['torch']}, torchdistill {versions['td']['torchdistill']} "
        f"(python {versions['td']['python']})")
    if versions["wb"]["torch"] != versions["td"]["torch"]:
        out("WARNING: the two sides run different torch builds: the wall times are not comparable")

    checks = []
    for (p, s), rows in results.items():
        checks += report(p, s, rows, out)
    out(f"\nload average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}; "
        f"benchmark took {time.perf_counter() - t_start:.0f} s")
    out(f"rule: 'at least as accurate' = mean test-accuracy difference (wb - td) >= -{ACC_MARGIN_PTS} pts "
        "(one test image = 0.28 pts); 'no more wall time' = ratio of mean wall times, workbench with a cold "
        "cache / torchdistill, <= 1.0")
    for line, ok in checks:
        out(f"target: {line}: {'met' if ok else 'NOT met'}")
    ok = all(ok for _, ok in checks)
    out(f"overall: {'met' if ok else 'NOT met'}")
    if args.quick:
        out("(--quick is a smoke run: with 2 epochs the cache fill costs about what the teacher passes it saves, "
            "and the students are far from trained; its verdicts mean nothing)")
    if args.out:
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(path)
        log(f"[done] report written to {path}")
    return 0 if ok or args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
