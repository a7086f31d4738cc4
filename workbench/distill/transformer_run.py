"""`workbench distill` for transformers: an hf: teacher, a drop:LAYERS student, a corpus (sentence
embeddings) or a text-classification task. Thin glue from a DistillJob to workbench.distill.transformer."""
from __future__ import annotations

from pathlib import Path

from ..errors import RecipeError
from ..specs import parse_spec


def _teacher_and_keep(job, base, hf_task: str, num_labels: int | None = None):
    from ..zoo.hf import load_hf

    t = parse_spec(job.teacher, "teacher model")
    if t.kind != "hf":
        raise RecipeError(f"text tasks need a transformers teacher (hf:DIR); got {job.teacher}")
    s = parse_spec(job.student, "student model")
    if s.kind != "drop" or not s.target:
        raise RecipeError(f"for an hf: teacher the student is drop:LAYERS (e.g. drop:0,2,4, drop:every-other, drop:3 "
                          f"for 3 evenly spread layers); got {job.student}")
    d = Path(t.target).expanduser()
    if not d.is_absolute() and base is not None and not d.exists() and (base / d).exists():
        d = base / d
    weights = t.options.get("weights")
    if weights is not None:
        from ..zoo import find_file

        weights = find_file(str(weights), base)
    teacher = load_hf(d, weights=weights, task=hf_task, num_labels=num_labels)
    return teacher, s.target


def _finish(job, card: dict, out: Path) -> dict:
    card["job"] = job.to_json()
    card["out"] = str(out)
    return card


def run_embedding_job(job, corpus, base, progress) -> dict:
    """`workbench distill` of a sentence-embedding job: an hf: encoder teacher, a drop: student, a corpus;
    returns the card (student/, student.onnx with its fidelity, card.json in the job's output folder)."""
    from .outdir import cache_root, prepare_out
    from .transformer import distill_embeddings

    teacher, keep = _teacher_and_keep(job, base, "embedding")
    if job.hint or job.alpha not in (0.0, 0.9):
        progress.info("  note: alpha/hint do not apply to sentence-embedding distillation "
                      "(its losses: embedding_cosine, hidden_mse, attention)")
    out = prepare_out(job)
    losses = {"embedding_cosine": job.embedding_cosine, "hidden_mse": job.hidden_mse, "attention": job.attention}
    # student dropout 0: +0.009 cosine on pydoc in benchmarks/distill/minilm.toml's trials
    card = distill_embeddings(teacher, keep, corpus, job.fit_config(), out, losses=losses, max_len=job.max_len,
                              progress=progress, cache_root=cache_root(job),
                              dropout=0.0)
    return _finish(job, card, out)


def run_text_classification_job(job, task, base, progress) -> dict:
    """`workbench distill` of a text-classification job: a fine-tuned hf: classifier teacher, a drop:
    student, a labelled text task; returns the card (test accuracy of student.onnx with its CI)."""
    from .outdir import cache_root, prepare_out
    from .text_classifier import distill_text_classifier

    teacher, keep = _teacher_and_keep(job, base, "classification", num_labels=task.num_classes)
    if getattr(teacher, "new_weights", None):
        raise RecipeError(f"teacher {job.teacher} has freshly initialised weights ({', '.join(teacher.new_weights[:3])}"
                          "...): its classifier head was never trained on this task; fine-tune it first")
    out = prepare_out(job)
    losses = {"kd": job.alpha, "ce": 1.0 - job.alpha, "hidden_mse": job.hidden_mse}
    card = distill_text_classifier(teacher, keep, task, job.fit_config(), out, losses=losses,
                                   temperature=job.temperature, max_len=job.max_len, progress=progress,
                                   cache_root=cache_root(job))
    return _finish(job, card, out)


def summary_lines(card: dict) -> list[str]:
    """The lines `workbench distill` prints for a transformer card: layers and params, fidelity or accuracy
    of the ONNX student, epochs and cache use."""
    p = card.get("params", {})
    lines = [f"student: {len(card.get('keep', []))} layers {card.get('keep')} of the teacher, "
             f"{p.get('student', 0):,} params (teacher {p.get('teacher', 0):,})"]
    if "fidelity" in card:
        f = card["fidelity"]
        cos, knn = f.get("mean_cosine"), f.get("knn_agreement")
        ci = f.get("mean_cosine_ci95") or f.get("ci95") or []
        line = f"student.onnx (ONNX Runtime) vs teacher on {card['corpus'].get('n_test', 'the')} held-out sentences: "
        if cos is not None:
            line += f"mean cosine {cos:.4f}" + (f" [95% CI {ci[0]:.4f}, {ci[1]:.4f}]" if len(ci) == 2 else "")
        if knn is not None:
            line += f", top-10 neighbour agreement {knn:.3f}"
        lines.append(line)
    if "accuracy" in card:
        a = card["accuracy"]
        t = card.get("teacher_test_accuracy", {}).get("value")
        lines.append(f"test accuracy of student.onnx (ONNX Runtime): {a['value']:.4f} [95% CI {a['ci95'][0]:.4f}, "
                     f"{a['ci95'][1]:.4f}]" + (f"; teacher {t:.4f}" if t is not None else ""))
    fit = card.get("fit", {})
    lines.append(f"trained {fit.get('epochs_run')} epochs (best epoch {fit.get('best_epoch')}, {card.get('seconds', 0):.1f} s); "
                 f"teacher cache: {'hit' if card.get('teacher_cache', {}).get('hit') else 'made'}")
    return lines
