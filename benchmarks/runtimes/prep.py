"""Helpers of benchmarks/runtimes/matrix.py: the two models (teacher, KD student), their artifacts on every
runtime (made once with the workbench's own exporters, cached under benchmarks/runtimes/.cache/ with a
manifest of export times and metadata), and parity / accuracy of each artifact through its own runtime."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
TEACHER_SPEC = "zoo:digits-resnet"
STUDENT_SPEC = "zoo:cnn?width=16"
STUDENT_EPOCHS = 20
N_CALIB = 256  # training images, evenly spaced: calibration of every int8 artifact (ORT, ExecuTorch, LiteRT full)
N_CHECK = 16  # test images the exporters' own parity gates run on
RUNTIMES = ("ort", "ort-mobile", "executorch", "litert")
PRECISIONS = {"ort": ("fp32", "int8"), "ort-mobile": ("fp32", "int8"), "executorch": ("fp32", "int8"),
              "litert": ("fp32", "int8-dyn", "int8-full")}
LITERT_PRECISION = {"fp32": "fp32", "int8-dyn": "int8-dynamic", "int8-full": "int8-full"}


@dataclass
class Subject:
    name: str  # "teacher" | "student"
    spec: str
    module: object
    sha: str
    params: int
    logits: np.ndarray  # PyTorch fp32 logits on the test split
    accuracy: float  # PyTorch fp32 test accuracy


@dataclass
class Artifact:
    model: str
    runtime: str
    precision: str
    path: str = ""
    size_bytes: int = 0
    made_in_s: float = 0.0
    meta: str = ""  # runtime-specific: ORT op count, ExecuTorch delegated share, quantizer
    error: str = ""
    src_sha: str = ""
    cached: bool = False
    parity_max_abs: float | None = None  # vs PyTorch on the whole test split, through the runtime
    top1_agreement: float | None = None
    accuracy: float | None = None
    accuracy_ci: tuple | None = None

    @property
    def key(self) -> str:
        return f"{self.model}/{self.runtime}/{self.precision}"

    @property
    def label(self) -> str:
        return f"{self.runtime} {self.precision}"

    @property
    def fp32(self) -> bool:
        return self.precision == "fp32"


def _logits(module, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return module(torch.from_numpy(np.ascontiguousarray(x))).float().numpy()


def make_subjects(task, say) -> list[Subject]:
    """The digits teacher (zoo weights) and a KD student distilled from it once (cached)."""
    from workbench.distill.run import DistillJob, run_distill
    from workbench.progress import Progress
    from workbench.zoo.sources import load_model

    sdir = CACHE / "student"
    weights = sdir / "student.safetensors"
    if not (sdir / "card.json").is_file() or not weights.is_file():
        say(f"-- distilling the KD student {STUDENT_SPEC} from {TEACHER_SPEC} ({STUDENT_EPOCHS} epochs, no early stopping; once, "
            "about a minute; cached in .cache/student)")
        t0 = time.perf_counter()
        run_distill(DistillJob(teacher=TEACHER_SPEC, student=STUDENT_SPEC, task="digits", epochs=STUDENT_EPOCHS, patience=0,
                               out=str(sdir)), Progress(quiet=True))
        say(f"   distilled in {time.perf_counter() - t0:.0f} s")
    out = []
    for name, spec, role in (("teacher", TEACHER_SPEC, "teacher"),
                             ("student", f"{STUDENT_SPEC}&weights={weights}", "student")):
        m = load_model(spec, in_channels=1, num_classes=10, role=role)
        z = _logits(m.module, task.x_test)
        out.append(Subject(name, spec.split("&weights=")[0] + (_kd_note(sdir) if role == "student" else ""),
                           m.module, m.sha256, sum(p.numel() for p in m.module.parameters()), z,
                           float((z.argmax(1) == task.y_test).mean())))
    return out


def _kd_note(sdir: Path) -> str:
    card = json.loads((sdir / "card.json").read_text())
    fit = card.get("fit", {})
    run, best = fit.get("epochs_run", "?"), fit.get("best_epoch", "?")
    return f" (KD from the teacher, T=4; up to {STUDENT_EPOCHS} epochs, early stop: {run} run, best {best})"


def calibration(task) -> np.ndarray:
    idx = np.unique(np.linspace(0, len(task.x_train) - 1, N_CALIB).round().astype(int))
    return task.x_train[idx]


def _export(a: Artifact, s: Subject, d: Path, task, calib) -> None:
    from workbench.export import export_onnx

    x1, chk, name = task.x_test[:1], task.x_test[:N_CHECK], task.input_name
    onnx = {p: d / f"{s.name}-{p}.onnx" for p in ("fp32", "int8")}  # unique basenames: the harness labels by them
    t0 = time.perf_counter()
    if a.runtime == "ort":
        if a.fp32:
            export_onnx(s.module, x1, onnx["fp32"], name, chk)
            a.meta = "torch.onnx.export (dynamo), opset 18"
        else:
            from workbench.quantize.methods import parse_method

            method = parse_method("static")
            method.apply(onnx["fp32"], onnx["int8"], calib, name)
            a.meta = method.describe.replace("quantize(", "").rstrip(")") + f"; {len(calib)} calibration images"
        a.path = str(onnx[a.precision])
    elif a.runtime == "ort-mobile":
        from workbench.export.ort_mobile import export_ort_mobile

        r = export_ort_mobile(onnx[a.precision], d, check_feeds={name: chk})
        a.path = r.runtime_opt_path
        a.meta = (f"{len(r.runtime_opt_operators)} operators in the reduced build's config "
                  f"(plain .ort: {len(r.operators)}); .with_runtime_opt.ort")
    elif a.runtime == "executorch":
        from workbench.export.executorch import export_executorch

        r = export_executorch(s.module, x1, d / f"{s.name}-{a.precision}.pte", precision=a.precision,
                              calibration=calib if not a.fp32 else None, input_name=name, check_inputs=chk)
        a.path = r.path
        left = ", ".join(f"{k} x{v}" for k, v in r.non_delegated_ops.items())
        a.meta = (f"XNNPACK delegated {r.delegated_share:.0%} of nodes ({r.delegated_nodes}/"
                  f"{r.delegated_nodes + r.non_delegated_nodes}, {r.delegated_subgraphs} subgraph(s))"
                  + (f"; left to portable kernels: {left}" if left else "")
                  + ("; PT2E XNNPACKQuantizer symmetric per-channel" if not a.fp32 else ""))
    elif a.runtime == "litert":
        from workbench.export.litert import export_litert

        prec = LITERT_PRECISION[a.precision]
        r = export_litert(s.module, x1, d / f"{s.name}-{a.precision}.tflite", precision=prec,
                          calibration=calib if prec == "int8-full" else None, input_name=name, check_inputs=chk)
        a.path = r.path
        a.meta = r.quantizer or "litert-torch convert"
    a.made_in_s = time.perf_counter() - t0
    a.size_bytes = Path(a.path).stat().st_size


def make_artifacts(subjects: list[Subject], task, available: list[str], say) -> list[Artifact]:
    """Every artifact of every model on every available runtime; reuses the cache when the source is unchanged."""
    from workbench.errors import WorkbenchError

    manifest_path = CACHE / "artifacts.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    calib = calibration(task)
    keep = {f.name for f in fields(Artifact)} - {"parity_max_abs", "top1_agreement", "accuracy", "accuracy_ci"}
    arts = []
    for s in subjects:
        d = CACHE / "artifacts" / s.name
        d.mkdir(parents=True, exist_ok=True)
        for rt in RUNTIMES:
            if rt not in available:
                continue
            for prec in PRECISIONS[rt]:
                a = Artifact(s.name, rt, prec, src_sha=s.sha)
                old = manifest.get(a.key)
                if old and old.get("src_sha") == s.sha and not old.get("error") and Path(old["path"]).is_file():
                    a = Artifact(**{k: v for k, v in old.items() if k in keep})
                    a.cached = True
                    arts.append(a)
                    continue
                say(f"-- exporting {s.name} -> {rt} {prec}")
                try:
                    _export(a, s, d, task, calib)
                except WorkbenchError as e:
                    a.error = " ".join(str(e).split())[:300]
                    say(f"   FAILED: {a.error}")
                manifest[a.key] = {k: v for k, v in asdict(a).items() if k in keep}
                CACHE.mkdir(parents=True, exist_ok=True)
                manifest_path.write_text(json.dumps(manifest, indent=1))
                arts.append(a)
    return arts


def evaluate(arts: list[Artifact], subjects: list[Subject], task, say) -> None:
    """Accuracy of each artifact through its runtime on the test split, and parity with PyTorch on it (1 thread)."""
    from workbench.errors import WorkbenchError
    from workbench.evaluate import evaluate_accuracy

    by_name = {s.name: s for s in subjects}
    todo = [a for a in arts if not a.error]
    say(f"-- accuracy of {len(todo)} artifacts through their runtimes ({len(task.y_test)} test images each)")
    for a in todo:
        try:
            q, z = evaluate_accuracy(a.path, a.runtime, task.x_test, task.y_test, task.input_name, threads=1)
        except WorkbenchError as e:
            a.error = f"evaluation failed: {' '.join(str(e).split())[:250]}"
            say(f"   {a.key}: {a.error}")
            continue
        ref = by_name[a.model].logits
        z = np.asarray(z, np.float64).reshape(ref.shape)
        a.parity_max_abs = float(np.abs(z - ref).max())
        a.top1_agreement = float(np.mean(z.argmax(1) == ref.argmax(1)))
        a.accuracy, a.accuracy_ci = q.value, tuple(q.ci95)
