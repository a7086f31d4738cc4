"""Distilling a transformer encoder into a shallower student made by layer dropping.

``distill_embeddings``: student = ``drop_layers(teacher, keep)``; losses (weights in ``losses``):
- ``embedding_cosine``: 1 - cos(student, teacher) of the sentence embeddings (mean pooled, L2-normalised);
- ``hidden_mse``: MSE over real tokens between student layer i's output and the output of the teacher
  layer it was copied from (``layer_map`` to change the pairs);
- ``attention``: KL(teacher || student) of the attention maps of the mapped layers (teacher run
  online: the maps grow with length squared, so they are not cached).
The teacher's embeddings (all splits) and mapped hidden states (train split, fp16, ragged: flat
tokens + offsets) come from the teacher-output cache, keyed by teacher sha + corpus fingerprint +
tokenizer + max_len + layers. Training runs through the engine (checkpoint per epoch, resume,
early stopping on the validation mean cosine). Outputs in ``out_dir``: ``student/`` (a valid
``hf:DIR``), ``student.onnx`` (parity-checked), ``card.json`` (fidelity on the test split measured
on the ONNX artifact through ONNX Runtime).

``workbench.distill.text_classifier.distill_text_classifier``: the same for a sequence-classification teacher on a labelled task
(KD on logits + optional hidden MSE); the metric is accuracy.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np

from ..errors import ExportError, ParityError, RecipeError
from ..fileio import atomic_path, write_json
from .transformer_data import (MICRO_BATCH, attention_kl, cache_root_of, masked_mse, micro_batches, pad_id_of,
                               padded_hidden, teacher_outputs)

DEFAULT_LOSSES = {"embedding_cosine": 1.0, "hidden_mse": 1.0, "attention": 0.0}
DEFAULT_CLS_LOSSES = {"kd": 1.0, "ce": 0.0, "hidden_mse": 0.0}
PARITY_ATOL, PARITY_RTOL = 1e-4, 1e-3


# --------------------------------------------------------------------------- options

def check_losses(losses: dict | None, defaults: dict) -> dict:
    """``defaults`` updated with the given loss weights; a RecipeError for an unknown loss, a weight < 0 or
    all weights 0."""
    out = dict(defaults)
    for k, v in (losses or {}).items():
        if k not in defaults:
            raise RecipeError(f"unknown loss {k!r}; use {', '.join(defaults)} (weights >= 0)")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
            raise RecipeError(f"loss weight {k}={v!r} must be a number >= 0")
        out[k] = float(v)
    if not any(out.values()):
        raise RecipeError("all loss weights are 0; give at least one a weight > 0")
    return out


def parse_layer_map(spec, keep: list[int], teacher_layers: int) -> dict[int, int]:
    """Student layer -> teacher layer (0-based) whose output it learns; default: the layer it was copied from.
    ``spec``: None, a dict, or "0:1,1:3,2:5"."""
    if spec is None or spec == "":
        return {i: k for i, k in enumerate(keep)}
    if isinstance(spec, str):
        try:
            spec = dict(tuple(int(x) for x in p.split(":")) for p in spec.replace(" ", "").split(",") if p)
        except ValueError:
            raise RecipeError(f"layer_map {spec!r}: write STUDENT:TEACHER pairs, e.g. 0:1,1:3,2:5") from None
    out = {}
    for s, t in dict(spec).items():
        s, t = int(s), int(t)
        if not 0 <= s < len(keep) or not 0 <= t < teacher_layers:
            raise RecipeError(f"layer_map {s}:{t}: the student has layers 0..{len(keep) - 1} and the teacher "
                              f"0..{teacher_layers - 1}")
        out[s] = t
    return dict(sorted(out.items()))


# --------------------------------------------------------------------------- the embedding path

def distill_embeddings(teacher, keep_layers, corpus, cfg, out_dir, losses: dict | None = None, max_len: int = 128,
                       progress=None, *, cache_root=None, layer_map=None, micro_batch: int = MICRO_BATCH,
                       export: bool = True, eval_threads: int = 1, k: int = 10,
                       freeze: tuple[str, ...] = ("word_embeddings",), cache_layers: list[int] | None = None,
                       dropout: float | None = None) -> dict:
    """Distil ``teacher`` (an HFModel, task "embedding") into ``drop_layers(teacher, keep_layers)`` on ``corpus``
    (a TextCorpus) with the engine's FitConfig ``cfg``; writes student/, student.onnx, card.json into
    ``out_dir`` and returns the card (a dict). The training itself is :func:`train_embedding_student`."""
    from ..evaluate.embedding import embedding_fidelity, encode, tokenize

    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    student, card, arrays = train_embedding_student(
        teacher, keep_layers, corpus, cfg, out_dir, losses, max_len, progress, cache_root=cache_root,
        layer_map=layer_map, micro_batch=micro_batch, freeze=freeze, cache_layers=cache_layers, dropout=dropout)
    save_student(student, teacher.tokenizer, out_dir / "student")
    card["student_dir"] = str(out_dir / "student")
    if export:
        from ..zoo.hf import SentenceEncoder

        onnx_path = out_dir / "student.onnx"
        exp = export_encoder(SentenceEncoder(student), teacher.tokenizer, onnx_path, list(corpus.test[:8]), max_len)
        card["onnx"] = {"path": str(onnx_path), **exp}
        test_ids = tokenize(teacher.tokenizer, corpus.test, max_len)
        s_emb = encode(str(onnx_path), None, teacher.tokenizer, max_len, ids=test_ids, threads=eval_threads)
        card["fidelity"] = {"split": "test", "measured_on": "student.onnx through ONNX Runtime (CPU EP)",
                            "reference": "teacher PyTorch embeddings (fp32)",
                            **embedding_fidelity(s_emb, np.asarray(arrays["test_out"]), k=k)}
    card["seconds"] = round(time.perf_counter() - t_start, 2)
    write_json(out_dir / "card.json", card)
    return card


def train_embedding_student(teacher, keep_layers, corpus, cfg, work_dir, losses: dict | None = None,
                            max_len: int = 128, progress=None, *, cache_root=None, layer_map=None,
                            micro_batch: int = MICRO_BATCH, freeze: tuple[str, ...] = ("word_embeddings",),
                            cache_layers: list[int] | None = None, dropout: float | None = None,
                            student=None) -> tuple[object, dict, dict]:
    """Train a sentence-embedding student of ``teacher`` (an HFModel) on ``corpus`` through the engine;
    returns (student in eval mode, card fields, the teacher-output cache arrays). ``work_dir`` holds the
    engine's checkpoint (resume after a kill) and, without ``cache_root``, the cache.

    ``student``: a ready student module (e.g. built from a smaller config); None = ``drop_layers(teacher,
    keep_layers)``. ``keep_layers`` also gives the default layer map (student layer i learns teacher layer
    keep[i]). ``freeze``: parameters whose names contain one of these stay as initialised (default: the
    word-embedding table, 2/3 of a 3-layer MiniLM's parameters: updating it every step costs more time than
    the forward pass and it barely moves with a small corpus). ``cache_layers``: teacher layers to store in
    the cache, a superset of the mapped ones (students with different layer maps or losses then share one
    cache entry, i.e. one teacher pass). ``dropout``: the student's dropout while training (None: as in
    its config)."""
    import torch

    from ..evaluate.embedding import encode, tokenize
    from ..zoo.hf import SentenceEncoder, drop_layers, mean_pool, parse_keep
    from .engine import fit

    work_dir = Path(work_dir)
    w = check_losses(losses, DEFAULT_LOSSES)
    if not isinstance(max_len, int) or isinstance(max_len, bool) or not 2 <= max_len <= 4096:
        raise RecipeError(f"max_len must be a whole number of tokens in 2..4096, got {max_len!r}")
    if not isinstance(micro_batch, int) or micro_batch < 1:
        raise RecipeError(f"micro_batch must be a whole number >= 1, got {micro_batch!r}")
    if not corpus.train or not corpus.val or not corpus.test:
        raise RecipeError(f"corpus {corpus.name} has an empty split (train {len(corpus.train)}, val {len(corpus.val)}, "
                          f"test {len(corpus.test)}); give more documents")
    keep = parse_keep(keep_layers, teacher.num_layers)
    lmap = parse_layer_map(layer_map, keep, teacher.num_layers) if w["hidden_mse"] > 0 or w["attention"] > 0 else {}
    t_layers = sorted(set(lmap.values())) if w["hidden_mse"] > 0 else []
    if cache_layers is not None:
        missing = sorted(set(t_layers) - set(cache_layers))
        if missing:
            raise RecipeError(f"cache_layers {list(cache_layers)} lacks teacher layer(s) {missing} of the layer map "
                              f"{lmap}; add them or leave cache_layers out")
        t_layers = sorted(set(int(x) for x in cache_layers))
    say = progress.info if progress is not None else (lambda msg: None)
    say(f"student: teacher layers {keep} of {teacher.num_layers}; losses "
        + ", ".join(f"{k}={v:g}" for k, v in w.items() if v) + (f"; layer map {lmap}" if lmap else ""))

    arrays, cache_key, hit = teacher_outputs(teacher, corpus, max_len, t_layers, cache_root_of(cache_root, work_dir),
                                             progress)
    say(f"teacher outputs: {'reused from the cache' if hit else 'computed and cached'} (key {cache_key})")
    student = drop_layers(teacher.module, keep) if student is None else student
    if w["attention"] > 0:
        _use_eager_attention(student)
        _use_eager_attention(teacher.module)
    frozen = _freeze(student, freeze)
    _set_dropout(student, dropout)
    enc = SentenceEncoder(student)
    pad = pad_id_of(teacher.tokenizer)
    train_ids = tokenize(teacher.tokenizer, corpus.train, max_len)
    offsets = np.asarray(arrays["train_offsets"])
    if len(offsets) != len(train_ids) + 1 or int(offsets[-1]) != sum(len(x) for x in train_ids):
        raise RecipeError(f"teacher-output cache entry {cache_key} does not match the corpus tokenization; "
                          "delete that folder from the cache and re-run")
    t_emb = torch.from_numpy(np.array(arrays["train_out"], dtype=np.float32))
    t_hidden = arrays.get("train_hidden")
    pairs = [(s, t_layers.index(t)) for s, t in lmap.items()] if w["hidden_mse"] > 0 else []
    att_pairs = list(lmap.items()) if w["attention"] > 0 else []
    lengths = np.array([len(x) for x in train_ids])
    val_ids = tokenize(teacher.tokenizer, corpus.val, max_len)
    val_teacher = np.asarray(arrays["val_out"], dtype=np.float32)

    def step(idx, epoch):
        total = 0.0
        for sel, ids_t, mask, share in micro_batches(idx, lengths, train_ids, pad, micro_batch):
            out = enc.token_states(ids_t, mask, output_hidden_states=bool(pairs), output_attentions=bool(att_pairs))
            emb = mean_pool(out.last_hidden_state, mask)
            loss = 0.0
            if w["embedding_cosine"]:
                loss = loss + w["embedding_cosine"] * (1 - (emb * t_emb[sel]).sum(1)).mean()
            if pairs:
                th = padded_hidden(t_hidden, offsets, sel, ids_t.shape[1])
                mse = sum(masked_mse(out.hidden_states[s + 1], th[:, :, j], mask) for s, j in pairs) / len(pairs)
                loss = loss + w["hidden_mse"] * mse
            if att_pairs:
                with torch.no_grad():
                    t_out = SentenceEncoder(teacher.module).token_states(ids_t, mask, output_attentions=True)
                kl = sum(attention_kl(out.attentions[s], t_out.attentions[t], mask) for s, t in att_pairs)
                loss = loss + w["attention"] * kl / len(att_pairs)
            total = total + loss * share
        return total

    def evaluate() -> float:
        emb = encode(enc, None, teacher.tokenizer, max_len, ids=val_ids)
        return float((emb * val_teacher).sum(1).mean())

    run_key = hashlib.sha256(json.dumps({"cache": cache_key, "keep": keep, "map": lmap, "losses": w, "max_len": max_len,
                                         "micro_batch": micro_batch, "frozen": frozen, "dropout": dropout,
                                         "student": student.config.to_json_string()},
                                        sort_keys=True).encode()).hexdigest()[:16]
    work_dir.mkdir(parents=True, exist_ok=True)
    teacher.module.eval()
    result = fit({"student": student}, step, len(train_ids), evaluate, cfg, checkpoint=work_dir / "checkpoint.pt",
                 key=run_key, progress=progress, metric_name="val_cosine", describe=f"distil {len(keep)}-layer student")
    student.eval()
    card = {"kind": "embedding-distillation", "teacher": teacher.describe(), "keep": keep, "layer_map": lmap,
            "losses": w, "max_len": max_len, "micro_batch": micro_batch, "frozen": frozen, "dropout": dropout,
            "cfg": cfg.to_json(),
            "corpus": corpus.summary(), "teacher_cache": {"key": cache_key, "hit": hit},
            "params": {"teacher": teacher.params, "student": sum(p.numel() for p in student.parameters())},
            "fit": result.to_json(), "val_cosine_pytorch": result.best_metric}
    return student, card, arrays


def _freeze(model, names) -> list[str]:
    frozen = [n for n, _ in model.named_parameters() if any(f in n for f in names)]
    for n, p in model.named_parameters():
        p.requires_grad_(n not in frozen)
    return frozen


def _set_dropout(model, p: float | None) -> None:
    if p is None:
        return
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise RecipeError(f"dropout must be a probability in [0, 1), got {p!r}")
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = float(p)


def _use_eager_attention(model) -> None:
    """Attention maps need the eager attention implementation (SDPA does not return them)."""
    setter = getattr(model, "set_attn_implementation", None)
    if setter is not None:
        setter("eager")
    else:
        model.config._attn_implementation = "eager"


def save_student(model, tokenizer, directory: Path) -> Path:
    """save_pretrained + the tokenizer into ``directory`` (written next to it, then renamed into place)."""
    directory = Path(directory)
    tmp = directory.with_name(f".{directory.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        if directory.exists():
            shutil.rmtree(directory)
        tmp.rename(directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return directory


# --------------------------------------------------------------------------- ONNX export

def export_encoder(encoder, tokenizer, path, sample_texts: list[str], max_len: int = 128,
                   atol: float = PARITY_ATOL, rtol: float = PARITY_RTOL, output_name: str = "sentence_embedding") -> dict:
    """Export a SentenceEncoder (a transformers model is wrapped in one; any module with
    ``forward(input_ids, attention_mask)`` is exported as it is) to ONNX with dynamic batch and sequence
    axes (inputs ``input_ids``, ``attention_mask`` int64; one output, ``output_name``), then check parity
    with PyTorch through the ORT adapter on ``sample_texts`` (a padded batch and each sentence alone).
    Returns {exporter, opset, max_abs_diff, parity_texts, ...}; raises ParityError out of tolerance."""
    import torch

    from ..evaluate.embedding import pad_batch, tokenize
    from ..export.onnx import OPSET, _quiet
    from ..zoo.hf import SentenceEncoder

    from transformers import PreTrainedModel

    enc = SentenceEncoder(encoder) if isinstance(encoder, PreTrainedModel) else encoder
    enc.eval()
    texts = [t for t in sample_texts if t] or ["A short sentence for the export.", "Another one, a little longer."]
    ids = tokenize(tokenizer, texts, max_len)
    pad = pad_id_of(tokenizer)
    dummy = [torch.from_numpy(a) for a in pad_batch(ids[:2] if len(ids) >= 2 else ids * 2, pad)]
    path = Path(path)
    max_pos = int(getattr(getattr(getattr(enc, "model", None), "config", None), "max_position_embeddings", 512) or 512)
    errors = []
    with atomic_path(path, suffix=".onnx") as tmp:
        exporter = None
        for dynamo in (True, False):
            try:
                with _quiet():
                    if dynamo:
                        batch = torch.export.Dim("batch", max=4096)
                        seq = torch.export.Dim("seq", max=max_pos)
                        torch.onnx.export(enc, tuple(dummy), str(tmp), dynamo=True, external_data=False,
                                          opset_version=OPSET, input_names=["input_ids", "attention_mask"],
                                          output_names=[output_name], optimize=True, verbose=False,
                                          dynamic_shapes={"input_ids": {0: batch, 1: seq},
                                                          "attention_mask": {0: batch, 1: seq}})
                    else:
                        torch.onnx.export(enc, tuple(dummy), str(tmp), dynamo=False, opset_version=OPSET,
                                          input_names=["input_ids", "attention_mask"],
                                          output_names=[output_name],
                                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"},
                                                        "attention_mask": {0: "batch", 1: "seq"},
                                                        output_name: {0: "batch"}})
                exporter = "torch.onnx.export(dynamo=True)" if dynamo else "torch.onnx.export(dynamo=False, legacy)"
                break
            except Exception as e:  # try the other exporter, then give up with both reasons
                errors.append(f"{'dynamo' if dynamo else 'legacy'}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__}")
        if exporter is None:
            raise ExportError(f"ONNX export of {path.name} failed ({'; '.join(errors)}); report the unsupported "
                              "operator or export with optimum's main_export")
        diff = encoder_parity(enc, tmp, ids, pad, atol, rtol, what=f"ONNX export {path.name}")
    return {"exporter": exporter, "opset": OPSET, "max_abs_diff": diff, "parity_texts": len(ids),
            "parity_rule": f"|onnx - torch| <= {atol:g} + {rtol:g}*|torch| on a padded batch and each text alone",
            "fallback_errors": errors}


def encoder_parity(enc, onnx_path, ids: list, pad_id: int, atol: float | None, rtol: float, what: str) -> float:
    """Max |ORT - PyTorch| of the sentence embeddings on a padded batch of ``ids`` and on each one alone."""
    import torch

    from ..evaluate.embedding import pad_batch
    from ..runtimes import get_runtime

    session = get_runtime("ort").load(str(onnx_path), 1)
    worst = 0.0
    for group in [ids] + [[x] for x in ids]:
        a, m = pad_batch(group, pad_id)
        with torch.inference_mode():
            ref = enc(torch.from_numpy(a), torch.from_numpy(m)).numpy().astype(np.float64)
        out = np.asarray(session.run({"input_ids": a, "attention_mask": m})[0], dtype=np.float64)
        if out.shape != ref.shape:
            raise ParityError(f"{what}: output shape {out.shape} != PyTorch {ref.shape}", float("inf"), atol or 0)
        d = np.abs(out - ref)
        worst = max(worst, float(d.max()))
        if atol is not None and np.any(d > atol + rtol * np.abs(ref)):
            raise ParityError(what, float(d.max()), atol)
    return worst
