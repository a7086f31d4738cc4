"""`workbench distill`: one teacher, one student, one task -> a trained student, its ONNX export
checked for parity, its metric measured on the exported artifact, and a card.

A job (:class:`DistillJob`) comes from CLI options or a TOML file (a ``[distill]`` table); CLI
options override the file. Its keys are the one ``[distill]`` schema recipes use too
(workbench.recipe.distill_keys), checked by the same function. All inputs are checked before the
output folder is touched; outputs are written atomically; a killed run resumes from its last
checkpoint.

This module dispatches: the loaded task's type (workbench.tasks.task_type) picks the job runner
from ``RUNNERS`` (image classifiers here, transformers in transformer_run.py), ``qat`` picks
qat_run.py; a card's ``kind`` picks its summary from ``SUMMARIES``. The runners share the output
folder and teacher cache through distill/outdir.py and never import this module.
"""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from ..errors import RecipeError, TaskError
from ..recipe.distill_keys import COMMAND, check_distill, default, option_label, section_label
from ..registry import Registry
from .engine import FitConfig
from .outdir import DEFAULT_CACHE, cache_root, default_out, prepare_out  # noqa: F401  (DEFAULT_CACHE, default_out: re-exported)


def _d(name: str):
    return default(name, COMMAND)


@dataclass(frozen=True)
class DistillJob:
    """One `workbench distill` job: what to distil (teacher, student, task), the losses, the data, the
    training budget and optimiser, and where to write. Every field is a key of the one ``[distill]``
    schema (defaults from it); build one with :func:`load_job`, which validates."""

    teacher: str
    student: str
    task: str
    out: str = _d("out")
    mode: str = _d("mode")  # standard | reverse | self: checked against the teacher's and student's sizes
    # losses (image / text classification)
    alpha: float = _d("alpha")
    temperature: float = _d("temperature")
    hint: float = _d("hint")
    hint_layers: tuple = _d("hint_layers")
    attention: float = _d("attention")
    attention_layers: tuple = _d("attention_layers")
    # losses (sentence embeddings)
    embedding_cosine: float = _d("embedding_cosine")
    hidden_mse: float = _d("hidden_mse")
    max_len: int = _d("max_len")
    # data
    augment_shift: int = _d("augment_shift")  # image augmentation: integer pixel shifts up to +-N (cached exactly per view)
    few: int = _d("few")  # >0: only this many labelled examples per class (same subset for every run with this seed)
    # trainer: the budget in epochs or steps (neither: the engine's 20 epochs)
    epochs: int | None = _d("epochs")
    steps: int | None = _d("steps")
    batch_size: int = _d("batch_size")
    lr: float = _d("lr")
    weight_decay: float = _d("weight_decay")
    optimizer: str = _d("optimizer")
    schedule: str = _d("schedule")
    warmup_frac: float = _d("warmup_frac")
    patience: int = _d("patience")
    seed: int = _d("seed")
    cache: str = _d("cache")
    feature_cache_mb: float = _d("feature_cache_mb")
    # quantization-aware fine-tuning of a trained student (image tasks): a static method spec, e.g. "static"
    qat: str = _d("qat")
    measure: bool = _d("measure")  # qat: measure fp32 / PTQ / QAT latency interleaved through the harness
    base_dir: str = field(default="", compare=False)

    def fit_config(self) -> FitConfig:
        """The training engine's config for this job."""
        return FitConfig(epochs=self.epochs, steps=self.steps, batch_size=self.batch_size, lr=self.lr,
                         weight_decay=self.weight_decay, optimizer=self.optimizer, schedule=self.schedule,
                         warmup_frac=self.warmup_frac, patience=self.patience, seed=self.seed)

    def losses(self):
        """The classification loss config (KD, hint, attention) for this job."""
        from .classify import LossConfig, parse_layer_pairs

        return LossConfig(alpha=self.alpha, temperature=self.temperature, hint=self.hint,
                          hint_layers=parse_layer_pairs(self.hint_layers, "hint_layers"),
                          attention=self.attention,
                          attention_layers=parse_layer_pairs(self.attention_layers, "attention_layers"))

    def to_json(self) -> dict:
        """The job as JSON-ready data (the card's ``job``)."""
        d = asdict(self)
        d.pop("base_dir")
        return d


FIELDS = {f.name for f in fields(DistillJob)} - {"base_dir"}
BUDGET = ("epochs", "steps")  # one decides: a budget given on the command line replaces the file's
_CLI_NAMES = {"shift": "augment_shift"}  # the command's option names that differ from the schema's keys


def load_job(config: str | None, overrides: dict) -> DistillJob:
    """A job from an optional TOML file (``[distill]`` table or top level) plus CLI overrides (option
    name -> value; None = not given), both checked by the one ``[distill]`` schema check. Deprecated
    key names in the file are accepted with a note on stderr."""
    data: dict = {}
    base = ""
    if config:
        import tomllib

        p = Path(config)
        if not p.is_file():
            raise RecipeError(f"distill config {config} not found")
        try:
            doc = tomllib.loads(p.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise RecipeError(f"{config} is not valid TOML: {e}") from None
        table = doc.get("distill", doc)
        if not isinstance(table, dict):
            raise RecipeError(f"{config}: [distill] must be a table of keys")
        data, notes = check_distill(table, COMMAND, section_label)
        for note in notes:
            print(f"note: {config}: {note}", file=sys.stderr)
        base = str(p.resolve().parent)
    given = {_CLI_NAMES.get(k, k): v for k, v in overrides.items() if v is not None}
    cli, _ = check_distill(given, COMMAND, option_label)
    if set(BUDGET) & set(cli):
        for k in BUDGET:
            data.pop(k, None)
    data.update(cli)
    budget = [k for k in BUDGET if data.get(k) is not None]
    if len(budget) > 1:
        raise RecipeError("give the training budget as epochs or as steps, not both")
    needed = ("student", "task") if data.get("qat") and data.get("alpha") == 0 else ("teacher", "student", "task")
    missing = [k for k in needed if not data.get(k)]
    data.setdefault("teacher", "")
    if missing:
        raise RecipeError(f"distill needs {', '.join('--' + m for m in missing)} (or the key in the config file)")
    return DistillJob(**data, base_dir=base)


# ---------------------------------------------------------------- dispatch
RUNNERS: Registry = Registry("distill job runner")  # task type name -> run(job, task, base, progress) -> card
SUMMARIES: Registry = Registry("distill card kind")  # card kind -> summary_lines(card) -> lines
MODES_OF = {"image-classification": ("standard", "reverse", "self")}  # task type -> [distill] modes it trains


def run_distill(job: DistillJob, progress) -> dict:
    """Run the job; returns the card (also written to <out>/card.json)."""
    from ..tasks import ARRAYS, LABELS, load_task, task_type

    base = Path(job.base_dir) if job.base_dir else None
    if job.qat:
        task = load_task(job.task, base, command="distill --qat", needs={ARRAYS, LABELS},
                         hint="--qat fine-tunes image classifiers; quantize transformers with "
                              "`workbench quantize --method auto`")
        from .qat_run import run_qat_job

        return run_qat_job(job, task, base, progress, measure=job.measure)
    task = load_task(job.task, base, command="distill")
    kind = task_type(task)
    if kind.name not in RUNNERS:
        from ..specs import parse_spec
        from ..tasks import SPEC_KINDS

        spec_kind = parse_spec(job.task, "task").kind  # its kind's advice (e.g. dense: use workbench run)
        use = SPEC_KINDS.get(spec_kind).use_with.format(spec=job.task) if spec_kind in SPEC_KINDS else ""
        raise TaskError(f"workbench distill cannot train on {job.task!r} ({kind.what}); it distils: "
                        f"{', '.join(RUNNERS.names())}" + (f"; {use}" if use else ""))
    if job.mode not in MODES_OF.get(kind.name, ("standard",)):
        raise RecipeError(f'[distill] mode = "{job.mode}" is available for {", ".join(MODES_OF)} tasks; '
                          f'{job.task} is {kind.what}: use mode = "standard"')
    return RUNNERS.get(kind.name)(job, task, base, progress)


def summary_lines(card: dict) -> list[str]:
    """The lines `workbench distill` prints for a finished job's card."""
    return SUMMARIES.get(card.get("kind", ""))(card)


def _run_embeddings(job: DistillJob, task, base, progress) -> dict:
    from .transformer_run import run_embedding_job

    return run_embedding_job(job, task, base, progress)


def _run_text_classifier(job: DistillJob, task, base, progress) -> dict:
    from .transformer_run import run_text_classification_job

    return run_text_classification_job(job, task, base, progress)


def _run_graph(job: DistillJob, task, base, progress) -> dict:
    from .graph_run import run_graph_job

    return run_graph_job(job, task, base, progress)


def _run_dense(job: DistillJob, task, base, progress) -> dict:
    from .dense_run import run_dense_job

    return run_dense_job(job, task, base, progress)


def _dense_lines(card: dict) -> list[str]:
    from .dense_run import summary_lines as dense_lines

    return dense_lines(card)


def _run_audio(job: DistillJob, task, base, progress) -> dict:
    """An audio classifier distils as an image one does (arrays in, classes out); a ``kws:`` teacher without
    ``weights=`` is first trained on the task once and cached, as in a run."""
    from dataclasses import replace

    from ..pipeline.families.audio_train import trained_teacher
    from ..specs import parse_spec

    spec = parse_spec(job.teacher, "teacher model")
    if spec.kind == "kws" and "weights" not in spec.options:
        job = replace(job, teacher=trained_teacher(spec, task, base, progress).spec.text)
    return _run_image(job, task, base, progress)


def _graph_lines(card: dict) -> list[str]:
    from .graph_run import summary_lines as graph_lines

    return graph_lines(card)


def _transformer_lines(card: dict) -> list[str]:
    from .transformer_run import summary_lines as text_lines

    return text_lines(card)


def _qat_lines(card: dict) -> list[str]:
    from .qat_run import summary_lines as qat_lines

    return qat_lines(card)


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
    from .modes import check_sizes, mode_note

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
    if job.mode != "standard":  # reverse: a larger student; self: the teacher's architecture (one line otherwise)
        if teacher.module is None:
            raise RecipeError(f'[distill] mode = "{job.mode}" compares the student with the teacher\'s layers; '
                              f"{job.teacher} is a black box: use mode = \"standard\" or a PyTorch teacher")
        check_sizes(job.mode, teacher.module, student.module, job.student)
    subset = task.labelled_subset(job.few, job.seed) if job.few else None
    out = prepare_out(job)
    progress.info(f"distil {teacher.description} -> {student.description} on {task.name} "
                  f"({len(subset) if subset is not None else len(task.y_train)} training examples; {losses.describe()})")
    cache = OutputCache(cache_root(job))
    t0 = time.perf_counter()
    res = distil_classifier(teacher, student, task, losses, cfg, out_dir=out / "work", cache=cache, shift=job.augment_shift,
                            subset=subset, progress=progress, feature_cache_mb=job.feature_cache_mb,
                            key_extra=str(job.seed))
    train_s = time.perf_counter() - t0
    from .ddp import is_main

    if not is_main():  # under torchrun rank 0 writes the weights, the export and the card
        return {}
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
        "mode": job.mode,
        "mode_note": mode_note(job.mode, count_params(teacher.module) if teacher.module is not None else None,
                               count_params(model), job.student),
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


def _image_lines(card: dict) -> list[str]:
    m = card["metrics"]
    lines = [f"student {card['student']['spec']}: {card['student']['params']:,} params "
             f"(teacher {format(card['teacher']['params'], ',') if card['teacher']['params'] else 'black box'})"]
    if card.get("mode_note"):
        lines.append(card["mode_note"])
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


RUNNERS.register("image-classification", _run_image)
RUNNERS.register("text-classification", _run_text_classifier)
RUNNERS.register("sentence-embedding", _run_embeddings)
RUNNERS.register("node-classification", _run_graph)
RUNNERS.register("dense-text", _run_dense)
RUNNERS.register("audio-classification", _run_audio)
SUMMARIES.register("workbench distill card", _image_lines)
SUMMARIES.register("workbench qat card", _qat_lines)
SUMMARIES.register("classifier-distillation", _transformer_lines)
SUMMARIES.register("embedding-distillation", _transformer_lines)
SUMMARIES.register("graph-distillation", _graph_lines)
SUMMARIES.register("dense-distillation", _dense_lines)
