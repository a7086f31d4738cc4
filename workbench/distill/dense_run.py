"""`workbench distill --task dense:...`: one dense teacher into one dense student (per-pixel KD).

The same training as `workbench run`'s dense family (workbench.pipeline.families.dense_train: per-pixel KD on the
teacher's logit maps + cross-entropy with the true masks + ``--hint`` x the neck's feature hint, on the one
engine), for a single teacher, student and seed. A ``dense:`` teacher without ``weights=`` is trained on the task
once and cached, as in a run; any other white-box source is the user's own network. Writes student.safetensors,
student.onnx (``image`` -> ``logits``) and card.json; the card's mean IoU (and box F1) is the exported student's
through ONNX Runtime on the test pages, beside the teacher's (PyTorch).
"""
from __future__ import annotations

import time
from pathlib import Path

from ..errors import RecipeError


def run_dense_job(job, task, base: Path | None, progress) -> dict:
    """Distil ``job.teacher`` into the ``dense:`` ``job.student`` on the dense ``task``; returns the card (also
    written to <out>/card.json)."""
    import numpy as np
    import torch

    from ..evaluate import run_artifact
    from ..export import export_onnx
    from ..fileio import write_json
    from ..pipeline.families.dense import dense_teacher
    from ..pipeline.families.dense_train import fit_dense, split_quality, teacher_maps
    from ..specs import parse_spec
    from ..tasks.dense_metrics import dense_quality
    from ..zoo.dense import build_dense, check_options
    from ..zoo.models import count_params
    from ..zoo.weights import save_weights
    from .ddp import is_main
    from .outdir import prepare_out

    if job.attention or job.few or job.mode != "standard":
        raise RecipeError("a dense task distils per-pixel maps on every training page: set --attention 0, --few 0 "
                          "and mode standard (--hint W weights the neck's feature hint)")
    s = parse_spec(job.student, "student model")
    if s.kind != "dense" or "weights" in s.options:
        raise RecipeError(f"student {job.student} must be an untrained dense network, e.g. dense:fcn?width=8&depth=2 "
                          "or dense:mobilenet_v3_small?width_mult=0.5&stride=4")
    torch.manual_seed(job.seed)  # the student first: a wrong student is refused before the teacher trains
    student = build_dense(s.target, in_channels=task.sample_shape[0], classes=task.num_classes,
                          **check_options(s.target, dict(s.options), f"student {job.student}"))
    teacher = dense_teacher(job.teacher, task, base, [job.student] if job.hint else [])
    cfg = job.fit_config()
    out = prepare_out(job)
    progress.info(f"distil {teacher.description} -> {job.student} on {task.name} ({len(task.x_train)} pages; "
                  f"per-pixel KD T={job.temperature}, alpha={job.alpha}, hint {job.hint})")
    t0 = time.perf_counter()
    maps = teacher_maps(teacher.module, task)
    with progress.bar("training the dense student", cfg.steps or 0) as update:
        res = fit_dense(student, task, cfg, teacher=maps, temperature=job.temperature, alpha=job.alpha,
                        hint=float(job.hint), on_step=lambda step, loss: update(step, f"loss {loss:.3f}"))
    train_s = time.perf_counter() - t0
    if not is_main():
        return {}
    save_weights(student, out / "student.safetensors", metadata={"student": job.student, "teacher": job.teacher,
                                                                 "task": job.task})
    x = np.ascontiguousarray(task.x_test)
    diff = export_onnx(student, x[:1], out / "student.onnx", task.input_name, x[:8])
    quality = dense_quality(run_artifact(str(out / "student.onnx"), "ort", x, task.input_name), task.mask_test,
                            task.boxes_test)
    card = {
        "kind": "dense-distillation",
        "teacher": {"spec": job.teacher, "description": teacher.description, "sha256": teacher.sha256,
                    "params": count_params(teacher.module), "test": split_quality(teacher.module, task, "test")},
        "student": {"spec": job.student, "params": count_params(student), "weights": "student.safetensors",
                    "onnx": "student.onnx", "onnx_parity_max_abs": diff},
        "task": task.summary(),
        "loss": {"kind": "pixel-kd+ce+hint", "temperature": job.temperature, "alpha": job.alpha, "hint": job.hint},
        "fit": res.to_json(), "fit_config": cfg.to_json(), "job": job.to_json(),
        "metrics": {"test_onnx": quality,
                    "test_source": "the exported student.onnx run by ONNX Runtime on the test pages"},
        "seconds": round(train_s, 2),
    }
    write_json(out / "card.json", card)
    card["out"] = str(out)
    return card


def summary_lines(card: dict) -> list[str]:
    """The lines `workbench distill` prints for a dense card."""
    q, t = card["metrics"]["test_onnx"], card["teacher"]
    lo, hi = q.get("ci95") or [float("nan"), float("nan")]
    return [f"student {card['student']['spec']}: {card['student']['params']:,} params (teacher {t['params']:,})",
            f"test mean IoU of student.onnx (ONNX Runtime, {q['n']} pages): {q['value']:.4f} [95% CI {lo:.4f}, "
            f"{hi:.4f}], box F1 {q['box_f1']:.3f}; teacher {t['test']['value']:.4f}",
            f"trained {card['fit']['steps_run']} steps in {card['seconds']:.1f} s"]
