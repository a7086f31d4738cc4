"""Fidelity of sentence embeddings to a teacher's, and encoding texts with a PyTorch module or an
ONNX artifact run by ONNX Runtime (through the workbench's runtime adapter, never PyTorch).

Metrics, each with a 95% bootstrap CI over the held-out sentences:
- ``mean_cosine``: mean over sentences of cos(student_i, teacher_i);
- ``knn_agreement@k``: mean over sentences of |top-k neighbours by the student ∩ top-k by the
  teacher| / k, neighbours searched by cosine within the held-out set, the sentence itself excluded.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ArtifactError, RecipeError
from . import bootstrap_mean_ci

CI_METHOD = "bootstrap percentile over held-out sentences (scipy.stats.bootstrap, 2000 resamples)"


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def topk_neighbours(emb: np.ndarray, k: int) -> np.ndarray:
    """(n, k) indices of each row's k nearest rows by cosine, itself excluded (ties: lower index first)."""
    e = _unit(emb)
    sim = e @ e.T
    np.fill_diagonal(sim, -np.inf)
    order = np.argsort(-sim, axis=1, kind="stable")
    return order[:, :k]


def embedding_fidelity(student_emb: np.ndarray, teacher_emb: np.ndarray, k: int = 10, seed: int = 0) -> dict:
    """Cosine and kNN agreement of ``student_emb`` to ``teacher_emb`` (rows = the same sentences)."""
    s, t = np.asarray(student_emb), np.asarray(teacher_emb)
    if s.ndim != 2 or t.ndim != 2 or s.shape[0] != t.shape[0]:
        raise RecipeError(f"embeddings must be (sentences, dims) arrays of the same sentences; got {s.shape} and {t.shape}")
    n = s.shape[0]
    if n < 2:
        raise RecipeError(f"fidelity needs at least 2 held-out sentences, got {n}")
    if not np.all(np.isfinite(s)):
        raise ArtifactError("the student's embeddings contain NaN or inf; the artifact is broken")
    cos = (_unit(s) * _unit(t)).sum(1) if s.shape[1] == t.shape[1] else None
    out = {"n": int(n), "ci_method": CI_METHOD}
    if cos is not None:
        out.update(mean_cosine=float(cos.mean()), mean_cosine_ci95=list(bootstrap_mean_ci(cos, seed=seed)),
                   min_cosine=float(cos.min()), p05_cosine=float(np.percentile(cos, 5)))
    kk = min(k, n - 1)
    agree = np.array([len(set(a) & set(b)) / kk for a, b in zip(topk_neighbours(s, kk), topk_neighbours(t, kk))])
    out.update({"k": int(kk), f"knn_agreement@{k}": float(agree.mean()),
                f"knn_agreement@{k}_ci95": list(bootstrap_mean_ci(agree, seed=seed)),
                "knn_agreement": float(agree.mean()), "knn_agreement_ci95": list(bootstrap_mean_ci(agree, seed=seed))})
    return out


def tokenize(tokenizer, texts, max_len: int) -> list[list[int]]:
    """Token ids of each text (special tokens added, truncated to ``max_len``, no padding)."""
    if not texts:
        return []
    return list(tokenizer(list(texts), truncation=True, max_length=max_len, add_special_tokens=True)["input_ids"])


def pad_batch(ids: list, pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask) int64 arrays, right-padded to the longest sequence."""
    width = max(len(x) for x in ids)
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for i, x in enumerate(ids):
        input_ids[i, :len(x)] = x
        mask[i, :len(x)] = 1
    return input_ids, mask


def encode(model_or_onnx, texts, tokenizer, max_len: int = 128, batch_size: int = 64, *, runtime: str = "ort",
           threads: int = 1, ids: list | None = None) -> np.ndarray:
    """Sentence embeddings (n, dims) float32 of ``texts``.

    ``model_or_onnx``: a path to an ONNX file (run by the workbench's ``runtime`` adapter with
    inputs ``input_ids`` / ``attention_mask`` (+ ``token_type_ids`` zeros if the graph has it), output 0
    = the embedding), a ``SentenceEncoder``, or a transformers model (wrapped in a SentenceEncoder).
    Sentences are batched by length (less padding) and returned in the input order. ``ids``:
    pre-tokenized ids instead of tokenizing ``texts``.
    """
    ids = tokenize(tokenizer, texts, max_len) if ids is None else list(ids)
    if not ids:
        raise RecipeError("nothing to encode: no texts given")
    pad_id = int(getattr(tokenizer, "pad_token_id", 0) or 0) if tokenizer is not None else 0
    run = _onnx_runner(model_or_onnx, runtime, threads) if isinstance(model_or_onnx, (str, Path)) else \
        _torch_runner(model_or_onnx)
    return batched_outputs(run, ids, pad_id, batch_size)


def batched_outputs(run, ids: list, pad_id: int, batch_size: int = 64) -> np.ndarray:
    """Rows of ``run(input_ids, attention_mask)`` (numpy in, numpy out: embeddings or logits) over the
    token-id lists ``ids``, in length-sorted padded batches (less padding); rows in the order of ``ids``."""
    order = np.argsort([len(x) for x in ids], kind="stable")
    out: np.ndarray | None = None
    for s in range(0, len(order), batch_size):
        sel = order[s:s + batch_size]
        input_ids, mask = pad_batch([ids[i] for i in sel], pad_id)
        rows = np.asarray(run(input_ids, mask), dtype=np.float32)
        if out is None:
            out = np.empty((len(ids), rows.shape[1]), dtype=np.float32)
        out[sel] = rows
    return out


def _onnx_runner(path, runtime: str, threads: int):
    from ..runtimes import get_runtime

    session = get_runtime(runtime).load(str(path), threads)
    names = [s.name for s in session.input_specs()]
    known = {"input_ids", "attention_mask", "token_type_ids"}
    if "input_ids" not in names or set(names) - known:
        raise ArtifactError(f"{Path(path).name} has inputs {names}; a sentence encoder needs input_ids and "
                            "attention_mask (export it with workbench.distill.transformer.export_encoder)")

    def run(input_ids, mask):
        feeds = {"input_ids": input_ids}
        if "attention_mask" in names:
            feeds["attention_mask"] = mask
        if "token_type_ids" in names:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        return session.run(feeds)[0]

    return run


def _torch_runner(model):
    import torch

    from ..zoo.hf import SentenceEncoder

    enc = model if isinstance(model, SentenceEncoder) else SentenceEncoder(model)
    enc.eval()  # the engine puts the modules back into train mode for the next epoch

    def run(input_ids, mask):
        with torch.inference_mode():
            return enc(torch.from_numpy(input_ids), torch.from_numpy(mask)).float().numpy()

    return run
