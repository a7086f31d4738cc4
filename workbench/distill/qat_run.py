"""`workbench distill --qat static`: quantization-aware fine-tuning of a trained image student, with
the KD loss from its teacher (quantization-aware distillation, alpha > 0) or labels only (QAT,
alpha = 0), exported to a deployable ORT int8 artifact and compared with post-training
quantization (PTQ) of the SAME starting student by the SAME method on the same calibration samples.

Outputs in the job's folder: student.fp32.onnx (the starting student), student.ptq.onnx (its PTQ),
student.safetensors + student.onnx (the fine-tuned float weights) and student.int8.onnx (the
deployable QAT/QAD artifact), and card.json with every accuracy measured on the ONNX artifacts through
ORT, the paired difference QAT - PTQ with its CI, the agreement between the fake-quantized PyTorch
model and the int8 artifact, and (unless ``measure=False``) latency of all three measured
interleaved through the harness.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import RecipeError


def _paired(a_score: np.ndarray, b_score: np.ndarray, lower_is_better: bool = False) -> dict:
    """b - a per example (scores: higher is better) with a bootstrap CI. ``lower_is_better``: the scores
    are negated losses and the difference is reported as a loss difference (b - a, negative = b better)."""
    from ..evaluate import bootstrap_mean_ci

    d = b_score.astype(np.float64) - a_score.astype(np.float64)
    lo, hi = bootstrap_mean_ci(d)
    verdict = "better" if lo > 0 else "worse" if hi < 0 else "no significant difference"
    if lower_is_better:
        d, lo, hi = -d, -hi, -lo
    return {"diff": float(d.mean()), "ci95": [float(lo), float(hi)], "verdict": verdict}


def _nll(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-example negative log-likelihood (nats): finer-grained than accuracy near the ceiling."""
    z = logits.astype(np.float64) - logits.max(1, keepdims=True)
    return np.log(np.exp(z).sum(1)) - z[np.arange(len(y)), y]


def _latency(paths: list[Path], x: np.ndarray, input_name: str, progress) -> dict:
    """fp32 / PTQ / QAT medians (ms) and ratios to fp32, interleaved, 1 thread, batch 1."""
    import tempfile

    from ..quantize.auto import _measure, short_protocol

    from ..fileio.containment import temp_prefix  # owner pid in the name: removed by a later run if we are killed

    with tempfile.TemporaryDirectory(prefix=temp_prefix("qat")) as d:
        inputs = Path(d) / "inputs.npz"
        np.savez(inputs, **{input_name: np.ascontiguousarray(x[:1])})
        with progress.bar("measuring fp32 / PTQ / QAT interleaved (1 thread)", 1.0) as update:
            ms, comps = _measure(paths, inputs, 1, short_protocol(), 3, lambda f, msg: update(f, msg))
    rows = {}
    for p, m, c in zip(paths, ms, comps):
        ci = m.stats.ci95_median
        rows[p.name] = {"median_ms": m.stats.median, "ci95_ms": list(ci) if ci else None,
                        "ratio_to_fp32": None if c is None else c.ratio_median,
                        "ratio_ci95": None if c is None or c.ci95 is None else list(c.ci95),
                        "verdict": None if c is None else c.verdict}
    return {"threads": 1, "batch": 1, "runtime": "ort", "variants": rows}


def run_qat_job(job, task, base, progress, measure: bool = True) -> dict:
    """`workbench distill --qat`: PTQ of the trained student as the baseline, fake-quantized fine-tuning
    (with KD from the teacher when alpha > 0), the int8 export, every artifact's accuracy through ORT and
    (``measure``) their latency; returns the card (also written to <out>/card.json)."""
    import torch

    from ..evaluate import evaluate_accuracy
    from ..export import export_onnx
    from ..fileio import write_json
    from ..quantize.methods import parse_method
    from ..quantize.qat import calibrate, fake_quant_spec, prepare_qat, strip_qat
    from ..zoo.sources import load_model
    from ..zoo.models import count_params
    from ..zoo.weights import save_weights
    from .cache import OutputCache
    from .classify import distil_classifier
    from .outdir import cache_root, prepare_out

    method = parse_method(job.qat)
    spec = fake_quant_spec(method)
    losses = job.losses()
    if losses.uses_features:
        raise RecipeError("--qat fine-tunes with the logit KD loss (alpha) and labels; drop hint/attention")
    cfg = job.fit_config()
    c, name = task.sample_shape[0], task.input_name
    teacher = None
    if losses.uses_teacher:
        if not job.teacher:
            raise RecipeError("quantization-aware distillation (alpha > 0) needs --teacher; "
                              "for plain QAT with labels only give --alpha 0")
        teacher = load_model(job.teacher, in_channels=c, num_classes=task.num_classes, base_dir=base,
                             role="teacher", task=task)
    student = load_model(job.student, in_channels=c, num_classes=task.num_classes, base_dir=base, role="student")
    if student.module is None:
        raise RecipeError(f"student {job.student} is not trainable: QAT needs a PyTorch student")
    if not student.trained:
        raise RecipeError(f"--qat fine-tunes a TRAINED student, but {job.student} has no weights; give them, "
                          "e.g. \"zoo:cnn?width=8&weights=runs/distill-cnn/student.safetensors\" (from workbench distill)")
    out = prepare_out(job)
    kind = "QAD (quantization-aware distillation)" if teacher is not None else "QAT (labels only)"
    progress.info(f"{kind}: {student.description} on {task.name}, method {method.spec} ({spec.describe()})")

    # 1. the baseline: PTQ of the starting student by the same method
    start = student.module.eval()
    export_onnx(start, task.x_test[:1], out / "student.fp32.onnx", name, task.x_test[:16])
    t0 = time.perf_counter()
    with progress.bar(f"PTQ {method.spec} of the starting student (calibration)", 1.0) as update:
        method.apply(out / "student.fp32.onnx", out / "student.ptq.onnx", task.x_train, name, update)
    ptq_s = time.perf_counter() - t0

    # 2. fake-quantized fine-tuning
    qmodel, info = prepare_qat(start, spec)
    if not info["batchnorm_folded"]:
        progress.info("  note: BatchNorm could not be folded (model not traceable by torch.fx): the simulated "
                      "weight grid differs from the artifact's where BN follows a conv")
    calibrate(qmodel, task.x_train)
    qstudent = replace(student, module=qmodel)
    t0 = time.perf_counter()
    res = distil_classifier(teacher, qstudent, task, losses, cfg, out_dir=out / "work",
                            cache=OutputCache(cache_root(job)),
                            shift=job.augment_shift, progress=progress, key_extra=f"{job.seed}|qat:{method.key}")
    train_s = time.perf_counter() - t0
    qmodel.eval()
    with torch.inference_mode():
        fq_pred = np.concatenate([qmodel(torch.from_numpy(np.ascontiguousarray(task.x_test[s:s + 512]))).argmax(1).numpy()
                                  for s in range(0, len(task.x_test), 512)])

    # 3. export the fine-tuned float weights and quantize them with the same method
    tuned = strip_qat(qmodel)
    save_weights(tuned, out / "student.safetensors", metadata={"student": job.student, "teacher": job.teacher or "",
                                                               "task": job.task, "qat": method.spec})
    diff = export_onnx(tuned, task.x_test[:1], out / "student.onnx", name, task.x_test[:16])
    with progress.bar(f"quantizing the fine-tuned student ({method.spec})", 1.0) as update:
        method.apply(out / "student.onnx", out / "student.int8.onnx", task.x_train, name, update)

    # 4. accuracy of every artifact through ORT, paired comparisons
    acc, correct, nll = {}, {}, {}
    for f in ("student.fp32.onnx", "student.ptq.onnx", "student.onnx", "student.int8.onnx"):
        q, logits = evaluate_accuracy(str(out / f), "ort", task.x_test, task.y_test, name)
        acc[f] = q.to_json()
        correct[f] = logits.argmax(1) == task.y_test
        nll[f] = _nll(logits, task.y_test)
        if f == "student.int8.onnx":
            agree = float((logits.argmax(1) == fq_pred).mean())
    card = {
        "kind": "workbench qat card",
        "mode": "qad" if teacher is not None else "qat",
        "method": {"spec": method.spec, "describe": method.describe, "fake_quant": info},
        "teacher": None if teacher is None else {"spec": job.teacher, "description": teacher.description,
                                                 "sha256": teacher.sha256},
        "student": {"spec": job.student, "description": student.description, "params": count_params(tuned),
                    "weights": "student.safetensors", "onnx_parity_max_abs": diff},
        "task": task.summary(), "losses": losses.to_json(), "fit": res["fit"], "fit_config": cfg.to_json(),
        "job": job.to_json(),
        "artifacts": {"start_fp32": "student.fp32.onnx", "ptq": "student.ptq.onnx", "tuned_fp32": "student.onnx",
                      "qat_int8": "student.int8.onnx"},
        "test_accuracy": acc,
        "test_accuracy_source": "each ONNX artifact run by ONNX Runtime on the test split",
        "qat_minus_ptq": _paired(correct["student.ptq.onnx"], correct["student.int8.onnx"]),
        "ptq_minus_fp32": _paired(correct["student.fp32.onnx"], correct["student.ptq.onnx"]),
        "qat_minus_fp32": _paired(correct["student.fp32.onnx"], correct["student.int8.onnx"]),
        "test_nll": {f: float(v.mean()) for f, v in nll.items()},
        # paired difference of per-example NLL, QAT - PTQ (negative = QAT better): sensitive near the accuracy ceiling
        "qat_minus_ptq_nll": _paired(-nll["student.ptq.onnx"], -nll["student.int8.onnx"], lower_is_better=True),
        "fake_quant_agreement": agree,
        "fake_quant_agreement_means": "share of test examples where the fake-quantized PyTorch model and the "
                                      "int8 artifact predict the same class",
        "seconds": {"ptq": round(ptq_s, 2), "qat_training": round(train_s, 2)},
    }
    if measure:
        card["latency"] = _latency([out / "student.fp32.onnx", out / "student.ptq.onnx", out / "student.int8.onnx"],
                                   task.x_test, name, progress)
    write_json(out / "card.json", card)
    card["out"] = str(out)
    return card


def summary_lines(card: dict) -> list[str]:
    """The lines `workbench distill --qat` prints for a QAT/QAD card."""
    a = card["test_accuracy"]
    pct = lambda f: f"{100 * a[f]['value']:.2f}%"  # noqa: E731
    d = card["qat_minus_ptq"]
    lines = [f"{card['mode'].upper()} with {card['method']['spec']} ({card['method']['fake_quant']['grid']})",
             f"test accuracy through ORT: start fp32 {pct('student.fp32.onnx')}, PTQ int8 {pct('student.ptq.onnx')}, "
             f"{card['mode'].upper()} int8 {pct('student.int8.onnx')} (fine-tuned fp32 {pct('student.onnx')})",
             f"{card['mode'].upper()} - PTQ: {100 * d['diff']:+.2f} points [95% CI {100 * d['ci95'][0]:+.2f}, "
             f"{100 * d['ci95'][1]:+.2f}] -> {d['verdict']}",
             f"test NLL (nats): PTQ {card['test_nll']['student.ptq.onnx']:.4f}, {card['mode'].upper()} "
             f"{card['test_nll']['student.int8.onnx']:.4f} (paired diff {card['qat_minus_ptq_nll']['diff']:+.4f} "
             f"[{card['qat_minus_ptq_nll']['ci95'][0]:+.4f}, {card['qat_minus_ptq_nll']['ci95'][1]:+.4f}] -> "
             f"{card['qat_minus_ptq_nll']['verdict']})",
             f"fake-quantized PyTorch vs int8 artifact: same class on {100 * card['fake_quant_agreement']:.1f}% of the test set"]
    lat = card.get("latency")
    if lat:
        for f, r in lat["variants"].items():
            if r["ratio_to_fp32"] is not None:
                lines.append(f"latency {f}: {r['median_ms']:.4f} ms, {r['ratio_to_fp32']:.2f}x the fp32 time "
                             f"({r['verdict']})" + ("  ⚠ SLOWER than fp32" if r["verdict"] == "slower" else ""))
    return lines
