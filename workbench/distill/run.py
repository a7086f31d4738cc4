"""`workbench distill`: one teacher, one student, one task -> a trained student, its ONNX export
checked for parity, its metric measured on the exported artifact, and a card.

A job comes from CLI options or a TOML file (``[distill]`` table with the same keys); CLI
options override the file. All inputs are checked before the output folder is touched; outputs
are written atomically; a killed run resumes from its last epoch checkpoint.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from ..errors import RecipeError
from .engine import FitConfig

DEFAULT_CACHE = Path(os.environ.get("WORKBENCH_CACHE", "~/.cache/workbench")).expanduser() / "teacher-outputs"


@dataclass(frozen=True)
class DistillJob:
    teacher: str
    student: str
    task: str
    out: str = ""
    # losses (image / text classification)
    alpha: float = 0.9
    temperature: float = 4.0
    hint: float = 0.0
    hint_layers: tuple = ()
    attention: float = 0.0
    attention_layers: tuple = ()
    # losses (sentence embeddings)
    embedding_cosine: float = 1.0
    hidden_mse: float = 1.0
    max_len: int = 128
    # data
    shift: int = 1  # image augmentation: integer pixel shifts up to +-shift (cached exactly per view)
    few: int = 0  # >0: only this many labelled examples per class (same subset for every run with this seed)
    # trainer
    epochs: int = 20
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 5e-4
    optimizer: str = "adamw"
    schedule: str = "cosine"
    warmup_frac: float = 0.05
    patience: int = 5
    seed: int = 0
    cache: str = ""
    feature_cache_mb: float = 1024
    # quantization-aware fine-tuning of a trained student (image tasks): a static method spec, e.g. "static"
    qat: str = ""
    measure: bool = True  # qat: measure fp32 / PTQ / QAT latency interleaved through the harness
    base_dir: str = field(default="", compare=False)

    def fit_config(self) -> FitConfig:
        return FitConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                         optimizer=self.optimizer, schedule=self.schedule, warmup_frac=self.warmup_frac,
                         patience=self.patience, seed=self.seed)

    def losses(self):
        from .classify import LossConfig, parse_layer_pairs

        return LossConfig(alpha=self.alpha, temperature=self.temperature, hint=self.hint,
                          hint_layers=parse_layer_pairs(self.hint_layers, "hint_layers"),
                          attention=self.attention,
                          attention_layers=parse_layer_pairs(self.attention_layers, "attention_layers"))

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("base_dir")
        return d


FIELDS = {f.name for f in fields(DistillJob)} - {"base_dir"}


def load_job(config: str | None, overrides: dict) -> DistillJob:
    """A job from an optional TOML file (``[distill]`` table or top level) plus CLI overrides."""
    data: dict = {}
    base = ""
    if config:
        import tomllib

        p = Path(config)
        if not p.is_file():
            raise RecipeError(f"distill config {config} not found")
        try:
            doc = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as e:
            raise RecipeError(f"{config} is not valid TOML: {e}") from None
        data = dict(doc.get("distill", doc))
        base = str(p.resolve().parent)
    data.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise RecipeError(f"unknown distill key(s) {', '.join(unknown)}; valid: {', '.join(sorted(FIELDS))}")
    needed = ("student", "task") if data.get("qat") and data.get("alpha") == 0 else ("teacher", "student", "task")
    missing = [k for k in needed if not data.get(k)]
    data.setdefault("teacher", "")
    if missing:
        raise RecipeError(f"distill needs {', '.join('--' + m for m in missing)} (or the key in the config file)")
    for k in ("hint_layers", "attention_layers"):
        if isinstance(data.get(k), list):
            data[k] = tuple(tuple(x) if isinstance(x, list) else x for x in data[k])
    for f in fields(DistillJob):  # a TOML value of the wrong type would otherwise fail deep inside training
        v = data.get(f.name)
        want = str if f.name in ("teacher", "student", "task") else type(f.default)
        if v is not None and want is bool and not isinstance(v, bool):
            raise RecipeError(f"distill key {f.name} must be true or false, got {v!r}")
        if v is None or want not in (int, float, str):
            continue
        if isinstance(v, bool) or not (isinstance(v, want) or (want is float and isinstance(v, int))):
            what = {int: "a whole number", float: "a number", str: "a string"}[want]
            raise RecipeError(f"distill key {f.name} must be {what}, got {v!r}")
    try:
        job = DistillJob(**data, base_dir=base)
    except TypeError as e:
        raise RecipeError(f"bad distill configuration: {e}") from None
    job.fit_config()  # validates
    if job.few < 0 or job.shift < 0 or job.max_len < 8:
        raise RecipeError("few and shift must be >= 0 and max_len >= 8")
    return job


def default_out(job: DistillJob) -> Path:
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in job.student.split("?")[0].split("/")[-1])
    return Path("runs") / f"distill-{name.strip('-')}"


def run_distill(job: DistillJob, progress) -> dict:
    """Run the job; returns the card (also written to <out>/card.json)."""
    from ..tasks import load_task
    from ..tasks.base import Task

    base = Path(job.base_dir) if job.base_dir else None
    task = load_task(job.task, base)
    if job.qat:
        if not isinstance(task, Task):
            raise RecipeError(f"--qat fine-tunes image classifiers; task {job.task!r} is not one (quantize "
                              "transformers with `workbench quantize --method auto`)")
        from .qat_run import run_qat_job

        return run_qat_job(job, task, base, progress, measure=job.measure)
    if isinstance(task, Task):
        return _run_image(job, task, base, progress)
    from .. import tasks

    kind = type(task).__name__
    if kind == "TextCorpus":
        from .transformer_run import run_embedding_job

        return run_embedding_job(job, task, base, progress)
    if kind == "TextClassificationTask":
        from .transformer_run import run_text_classification_job

        return run_text_classification_job(job, task, base, progress)
    raise RecipeError(f"task {job.task!r} ({kind}) is not supported by distill; see `workbench distill --help`"
                      f" ({tasks.__doc__.splitlines()[0]})")


def _prepare_out(job: DistillJob) -> Path:
    from ..fileio import ensure_writable_dir

    out = Path(job.out) if job.out else default_out(job)
    ensure_writable_dir(out)
    return out


def _run_image(job: DistillJob, task, base, progress) -> dict:
    import torch

    from ..errors import SourceError
    from ..export import export_onnx
    from ..evaluate import evaluate_accuracy
    from ..fileio import write_json
    from ..zoo.sources import load_model, unwrap
    from ..zoo.models import count_params
    from ..zoo.weights import save_weights
    from .cache import OutputCache
    from .classify import check_feature_layers, distil_classifier

    losses = job.losses()
    cfg = job.fit_config()
    c = task.sample_shape[0]
    teacher = load_model(job.teacher, in_channels=c, num_classes=task.num_classes, base_dir=base, role="teacher", task=task)
    torch.manual_seed(job.seed)
    student = load_model(job.student, in_channels=c, num_classes=task.num_classes, base_dir=base, role="student")
    if student.module is None:
        raise RecipeError(f"student {job.student} is not trainable")
    with torch.no_grad():
        student.module.eval()
        try:
            probe = student.module(torch.from_numpy(task.x_train[:2]))
        except Exception as e:
            raise SourceError(f"student {job.student} cannot run the task's inputs {tuple(task.x_train.shape[1:])}: "
                              f"{str(e).splitlines()[0][:200]}") from None
    if probe.ndim != 2 or probe.shape[1] != task.num_classes:
        raise SourceError(f"student {job.student} outputs {tuple(probe.shape[1:])} but the task has {task.num_classes} "
                          "classes; set num_classes in its spec")
    if losses.uses_features and not teacher.white_box:
        raise RecipeError(f"teacher {job.teacher} is a black box: feature losses (hint, attention) need its layers; "
                          "use output-level KD only (--hint 0 --attention 0) or a white-box teacher")
    check_feature_layers(teacher, student, losses, task.x_train)
    subset = task.labelled_subset(job.few, job.seed) if job.few else None
    out = _prepare_out(job)
    progress.info(f"distil {teacher.description} -> {student.description} on {task.name} "
                  f"({len(subset) if subset is not None else len(task.y_train)} training examples; {losses.describe()})")
    cache = OutputCache(Path(job.cache).expanduser() if job.cache else DEFAULT_CACHE)
    t0 = time.perf_counter()
    res = distil_classifier(teacher, student, task, losses, cfg, out_dir=out / "work", cache=cache, shift=job.shift,
                            subset=subset, progress=progress, feature_cache_mb=job.feature_cache_mb,
                            key_extra=str(job.seed))
    train_s = time.perf_counter() - t0
    model = student.module
    save_weights(unwrap(model), out / "student.safetensors", metadata={"student": job.student, "teacher": job.teacher,
                                                               "task": job.task})
    diff = export_onnx(model, task.x_test[:1], out / "student.onnx", task.input_name, task.x_test[:16])
    quality, _ = evaluate_accuracy(str(out / "student.onnx"), "ort", task.x_test, task.y_test, task.input_name)
    teacher_acc = None
    if teacher.outputs.get("test") is not None:
        teacher_acc = float((teacher.outputs["test"].argmax(1) == task.y_test).mean())
    elif teacher.module is not None or teacher.onnx_path is not None:
        teacher_acc = float((teacher.predict(task.x_test).argmax(1) == task.y_test).mean())
    card = {
        "kind": "workbench distill card",
        "teacher": {"spec": job.teacher, "description": teacher.description, "sha256": teacher.sha256,
                    "params": count_params(teacher.module) if teacher.module is not None else None,
                    "test_accuracy": teacher_acc},
        "student": {"spec": job.student, "description": student.description, "params": count_params(model),
                    "weights": "student.safetensors", "onnx": "student.onnx", "onnx_parity_max_abs": diff},
        "task": task.summary(),
        "losses": losses.to_json(),
        "fit": res["fit"], "fit_config": cfg.to_json(), "job": job.to_json(),
        "teacher_cache": {"root": str(cache.root), "status": res["cache"], "seconds": res["cache_seconds"]},
        "metrics": {"val_accuracy_torch": res["val_accuracy"], "test_accuracy_torch": res["test_accuracy_torch"],
                    "test_accuracy_onnx": quality.to_json(),
                    "test_accuracy_source": "the exported student.onnx run by ONNX Runtime on the test split"},
        "seconds": round(train_s, 2),
    }
    write_json(out / "card.json", card)
    card["out"] = str(out)
    return card


def summary_lines(card: dict) -> list[str]:
    if card.get("kind") == "workbench qat card":
        from .qat_run import summary_lines as qat_lines

        return qat_lines(card)
    if "metrics" not in card:  # transformer cards
        from .transformer_run import summary_lines as text_lines

        return text_lines(card)
    m = card["metrics"]
    lines = [f"student {card['student']['spec']}: {card['student']['params']:,} params "
             f"(teacher {format(card['teacher']['params'], ',') if card['teacher']['params'] else 'black box'})"]
    if "test_accuracy_onnx" in m:
        q = m["test_accuracy_onnx"]
        ci = q.get("ci95") or [np.nan, np.nan]
        t = card["teacher"].get("test_accuracy")
        lines.append(f"test accuracy of student.onnx (ONNX Runtime): {q['value']:.4f} [95% CI {ci[0]:.4f}, {ci[1]:.4f}]"
                     + (f"; teacher {t:.4f}" if t is not None else ""))
    for k, v in m.items():
        if k.startswith("test_") and k != "test_accuracy_onnx" and isinstance(v, (int, float)):
            lines.append(f"{k}: {v:.4f}")
    f = card["fit"]
    lines.append(f"trained {f['epochs_run']} epochs (best epoch {f['best_epoch']}, "
                 f"{'early stop, ' if f['stopped_early'] else ''}{card['seconds']:.1f} s); teacher cache: "
                 + ", ".join(f"{k} {v}" for k, v in card["teacher_cache"]["status"].items()))
    return lines


def with_overrides(job: DistillJob, **kw) -> DistillJob:
    return replace(job, **kw)
