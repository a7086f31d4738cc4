"""Distilling a transformers sequence classifier (hf: teacher, drop:LAYERS student) on a text-classification
task: KD on cached teacher logits, cross-entropy, optional hidden-state MSE; export and accuracy of the ONNX
artifact. The shared machinery (cache, batching, export) lives in workbench.distill.transformer."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from ..errors import RecipeError
from ..fileio import write_json
from .transformer import DEFAULT_CLS_LOSSES, _freeze, _set_dropout, check_losses, export_encoder, parse_layer_map, save_student
from .transformer_data import (MICRO_BATCH, cache_root_of, cached_teacher_pass, forward, masked_mse, micro_batches, pad_id_of,
                               padded_hidden)


def classifier_module(model):
    """``forward(input_ids, attention_mask) -> logits``: the exportable form of a sequence classifier."""
    import torch

    class TextClassifier(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.model = m

        def forward(self, input_ids, attention_mask):
            return forward(self.model, input_ids, attention_mask).logits

    return TextClassifier(model)


def distill_text_classifier(teacher, keep_layers, task, cfg, out_dir, losses: dict | None = None,
                            temperature: float = 4.0, max_len: int = 128, progress=None, *, cache_root=None,
                            layer_map=None, micro_batch: int = MICRO_BATCH, export: bool = True,
                            freeze: tuple[str, ...] = ("word_embeddings",), eval_threads: int = 1,
                            dropout: float | None = None) -> dict:
    """Distil an HFModel (task "classification") into ``drop_layers(teacher, keep_layers)`` on a
    TextClassificationTask (see :func:`train_text_classifier`). Writes student/, student.onnx (input_ids,
    attention_mask -> logits) and card.json (test accuracy of the ONNX artifact through ONNX Runtime, with
    a bootstrap CI)."""
    from ..evaluate import bootstrap_mean_ci
    from ..evaluate.embedding import batched_outputs, tokenize

    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    student, card, arrays = train_text_classifier(
        teacher, keep_layers, task, cfg, out_dir, losses, temperature, max_len, progress, cache_root=cache_root,
        layer_map=layer_map, micro_batch=micro_batch, freeze=freeze, dropout=dropout)
    save_student(student, teacher.tokenizer, out_dir / "student")
    card["student_dir"] = str(out_dir / "student")
    if export:
        from ..runtimes import get_runtime

        onnx_path = out_dir / "student.onnx"
        exp = export_encoder(classifier_module(student).eval(), teacher.tokenizer, onnx_path,
                             list(task.test_texts[:8]), max_len, output_name="logits")
        card["onnx"] = {"path": str(onnx_path), **exp}
        session = get_runtime("ort").load(str(onnx_path), eval_threads)
        ids = tokenize(teacher.tokenizer, task.test_texts, max_len)
        logits = batched_outputs(lambda a, m: session.run({"input_ids": a, "attention_mask": m})[0], ids,
                                pad_id_of(teacher.tokenizer))
        y_test = np.asarray(task.test_labels)
        correct = (logits.argmax(1) == y_test).astype(np.float64)
        card["accuracy"] = {"split": "test", "value": float(correct.mean()), "ci95": list(bootstrap_mean_ci(correct)),
                            "n": int(len(y_test)), "measured_on": "student.onnx through ONNX Runtime (CPU EP)",
                            "agreement_with_teacher": float((logits.argmax(1) == np.asarray(arrays["test_out"]).argmax(1)).mean())}
    card["seconds"] = round(time.perf_counter() - t_start, 2)
    write_json(out_dir / "card.json", card)
    return card



def classifier_cache(teacher, task, t_layers: list[int], max_len: int, cache_root,
                     progress=None) -> tuple[dict, str, bool]:
    """(arrays, key, hit): the teacher-output cache entry of a classifier distillation on ``task``: the teacher's
    logits of every split and the hidden states of teacher layers ``t_layers`` (the layer map's, when a
    hidden-state loss applies), computed in one pass when missing (THE entry training reads; the pipeline's
    teacher_outputs unit fills it before)."""
    texts = {s: task.split(s)[0] for s in ("train", "val", "test")}
    n_out = int(getattr(teacher.config, "num_labels", 0) or 0)
    return cached_teacher_pass(teacher, texts, max_len, t_layers, cache_root,
                               {"kind": "classifier-logits", "task": task.fingerprint()}, n_out,
                               lambda out, mask: out.logits, progress, 32)


def classifier_cache_layers(teacher, keep_layers, losses: dict | None, layer_map=None) -> list[int]:
    """The teacher layers a classifier distillation's cache entry holds: the layer map's (student layer i ->
    teacher layer keep[i] by default) when the hidden-state loss is on, none otherwise."""
    from ..zoo.hf import parse_keep

    w = check_losses(losses, DEFAULT_CLS_LOSSES)
    if not w["hidden_mse"] > 0:
        return []
    keep = parse_keep(keep_layers, teacher.num_layers)
    return sorted(set(parse_layer_map(layer_map, keep, teacher.num_layers).values()))


def train_text_classifier(teacher, keep_layers, task, cfg, work_dir, losses: dict | None = None,
                          temperature: float = 4.0, max_len: int = 128, progress=None, *, cache_root=None,
                          layer_map=None, micro_batch: int = MICRO_BATCH,
                          freeze: tuple[str, ...] = ("word_embeddings",), dropout: float | None = None,
                          student=None) -> tuple[object, dict, dict]:
    """Train a sequence-classifier student of ``teacher`` (an HFModel, task "classification") on a
    TextClassificationTask through the engine: ``kd`` = T^2 KL(teacher || student) of the
    temperature-softened logits (from the cache), ``ce`` = cross-entropy on the labels, ``hidden_mse`` as for
    embeddings; best epoch by validation accuracy. ``student``: a ready student module; None =
    ``drop_layers(teacher, keep_layers)``. Returns (student in eval mode, card fields, cache arrays)."""
    import torch
    import torch.nn.functional as F

    from ..evaluate import bootstrap_mean_ci
    from ..evaluate.embedding import batched_outputs, tokenize
    from ..zoo.hf import drop_layers, parse_keep
    from .engine import fit

    work_dir = Path(work_dir)
    w = check_losses(losses, DEFAULT_CLS_LOSSES)
    if not temperature > 0:
        raise RecipeError(f"temperature must be > 0, got {temperature!r}")
    n_out = int(getattr(teacher.config, "num_labels", 0) or 0)
    if teacher.task != "classification" or n_out != task.num_classes:
        raise RecipeError(f"the teacher must be a sequence classifier with {task.num_classes} labels (it is "
                          f"{teacher.task!r} with {n_out}); load it with load_hf(DIR, task='classification', "
                          f"num_labels={task.num_classes}) after fine-tuning it on the task")
    if not len(task.train_texts) or not len(task.val_texts) or not len(task.test_texts):
        raise RecipeError(f"task {task.name} has an empty split; give more labelled texts")
    keep = parse_keep(keep_layers, teacher.num_layers)
    lmap = parse_layer_map(layer_map, keep, teacher.num_layers) if w["hidden_mse"] > 0 else {}
    t_layers = sorted(set(lmap.values()))
    texts = {s: task.split(s)[0] for s in ("train", "val", "test")}
    arrays, cache_key, hit = classifier_cache(teacher, task, t_layers, max_len, cache_root_of(cache_root, work_dir),
                                              progress)
    student = drop_layers(teacher.module, keep) if student is None else student
    frozen = _freeze(student, freeze)
    _set_dropout(student, dropout)
    pad = pad_id_of(teacher.tokenizer)
    ids = {s: tokenize(teacher.tokenizer, t, max_len) for s, t in texts.items()}
    y = {s: torch.from_numpy(np.asarray(task.split(s)[1], dtype=np.int64)) for s in texts}
    t_logits = torch.from_numpy(np.array(arrays["train_out"], dtype=np.float32))
    offsets, t_hidden = np.asarray(arrays["train_offsets"]), arrays.get("train_hidden")
    pairs = [(s_, t_layers.index(t_)) for s_, t_ in lmap.items()]
    lengths = np.array([len(x) for x in ids["train"]])
    T = float(temperature)

    def step(idx, epoch):
        total = 0.0
        for sel, a, m, share in micro_batches(idx, lengths, ids["train"], pad, micro_batch):
            out = forward(student, a, m, output_hidden_states=bool(pairs))
            loss = 0.0
            if w["kd"]:
                kl = F.kl_div(F.log_softmax(out.logits / T, 1), F.log_softmax(t_logits[sel] / T, 1),
                              reduction="batchmean", log_target=True)
                loss = loss + w["kd"] * kl * T * T
            if w["ce"]:
                loss = loss + w["ce"] * F.cross_entropy(out.logits, y["train"][sel])
            if pairs:
                th = padded_hidden(t_hidden, offsets, sel, a.shape[1])
                loss = loss + w["hidden_mse"] * sum(masked_mse(out.hidden_states[s_ + 1], th[:, :, j], m)
                                                    for s_, j in pairs) / len(pairs)
            total = total + loss * share
        return total

    def torch_logits(a, m):
        with torch.inference_mode():
            return forward(student, torch.from_numpy(a), torch.from_numpy(m)).logits.float().numpy()

    def evaluate() -> float:
        return float((batched_outputs(torch_logits, ids["val"], pad).argmax(1) == y["val"].numpy()).mean())

    run_key = hashlib.sha256(json.dumps({"cache": cache_key, "keep": keep, "map": lmap, "losses": w, "T": T,
                                         "max_len": max_len, "micro_batch": micro_batch, "frozen": frozen,
                                         "dropout": dropout, "student": student.config.to_json_string()},
                                        sort_keys=True).encode()).hexdigest()[:16]
    work_dir.mkdir(parents=True, exist_ok=True)
    result = fit({"student": student}, step, len(ids["train"]), evaluate, cfg, checkpoint=work_dir / "checkpoint.pt",
                 key=run_key, progress=progress, metric_name="val_accuracy",
                 describe=f"distil {len(keep)}-layer classifier")
    student.eval()
    y_test = y["test"].numpy()
    t_correct = (np.asarray(arrays["test_out"]).argmax(1) == y_test).astype(np.float64)
    card = {"kind": "classifier-distillation", "teacher": teacher.describe(), "keep": keep, "layer_map": lmap,
            "losses": w, "temperature": T, "max_len": max_len, "micro_batch": micro_batch, "frozen": frozen,
            "dropout": dropout,
            "cfg": cfg.to_json(), "task": task.summary(), "teacher_cache": {"key": cache_key, "hit": hit},
            "params": {"teacher": teacher.params, "student": sum(p.numel() for p in student.parameters())},
            "fit": result.to_json(), "val_accuracy_pytorch": result.best_metric,
            "teacher_test_accuracy": {"value": float(t_correct.mean()), "ci95": list(bootstrap_mean_ci(t_correct)),
                                      "measured_on": "teacher PyTorch"}}
    return student, card, arrays
