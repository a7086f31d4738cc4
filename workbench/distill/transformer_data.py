"""The data side of transformer distillation: the teacher-output cache (sentence embeddings or logits of
every split, plus the mapped hidden states of the training split, fp16 and ragged), length-sorted
batching and padding, and the token-level losses (masked hidden-state MSE, attention KL).
Used by workbench.distill.transformer (sentence embeddings) and workbench.distill.text_classifier."""
from __future__ import annotations

from pathlib import Path

import numpy as np

CACHE_FORMAT = 1
MICRO_BATCH = 8  # each batch is cut into length-sorted micro-batches of this many sentences: less padding
TEACHER_PASSES = {"count": 0}  # how often a teacher forward pass over a corpus ran (tests check cache reuse)

# --------------------------------------------------------------------------- teacher outputs (cached)

def cache_root_of(cache_root, out_dir: Path) -> Path:
    """The teacher-output cache folder: ``cache_root`` if given, else ``out_dir/cache``."""
    return Path(cache_root) if cache_root is not None else Path(out_dir) / "cache"


def teacher_outputs(teacher, corpus, max_len: int, layers: list[int], cache_root: Path, progress=None,
                    batch_size: int = 32) -> tuple[dict, str, bool]:
    """(arrays, key, hit): the teacher's sentence embeddings of every split (``{split}_out``) and, for the
    train split, the outputs of teacher ``layers`` (0-based) per real token as float16, ragged
    (``train_hidden`` (tokens, len(layers), hidden) with ``train_offsets`` (n+1,)). Computed once per
    key, then read memory-mapped."""
    from ..zoo.hf import mean_pool

    texts = {s: corpus.texts(s) for s in ("train", "val", "test")}
    parts = {"kind": "sentence-embeddings", "pooling": "mean+l2", "corpus": corpus.fingerprint()}
    return cached_teacher_pass(teacher, texts, max_len, layers, cache_root, parts, int(teacher.config.hidden_size),
                                lambda out, mask: mean_pool(out.last_hidden_state, mask), progress, batch_size)


def cached_teacher_pass(teacher, texts: dict, max_len: int, layers: list[int], cache_root, parts: dict, out_dim: int,
                         head, progress, batch_size: int) -> tuple[dict, str, bool]:
    """The teacher-output cache entry for ``texts`` (split -> texts): ``{split}_out`` = ``head(output, mask)``
    of every text (out_dim wide) and the train split's ``layers`` hidden states (fp16, ragged); computed
    in one teacher pass when missing. Returns (arrays, key, hit)."""
    from ..evaluate.embedding import tokenize
    from .cache import OutputCache

    cache = OutputCache(cache_root)
    parts = {**parts, "format": CACHE_FORMAT, "teacher": teacher.sha256, "tokenizer": teacher.tokenizer_sha256,
             "max_len": int(max_len), "layers": [int(x) for x in layers], "hidden_dtype": "float16"}
    key = cache.key(**parts)
    got = cache.load(key)
    if got is not None:
        return got, key, True
    TEACHER_PASSES["count"] += 1
    ids = {s: tokenize(teacher.tokenizer, t, max_len) for s, t in texts.items()}
    hidden = int(teacher.config.hidden_size)
    offsets = np.zeros(len(ids["train"]) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(x) for x in ids["train"]])
    arrays = {"train_offsets": (offsets.shape, "int64")}
    for s in ids:
        arrays[f"{s}_out"] = ((len(ids[s]), out_dim), "float32")
    if layers:
        arrays["train_hidden"] = ((int(offsets[-1]), len(layers), hidden), "float16")
    total = sum(len(v) for v in ids.values())
    bar = progress.bar("teacher outputs (cached for later runs)", total) if progress else None
    update = bar.__enter__() if bar else None
    from .device import placed

    try:  # the teacher on the job's device (autocast on CUDA; outputs stored fp32 / fp16 as on the CPU)
        with placed(teacher.module, autocast=True), cache.writer(key, arrays, parts=parts) as out:
            out["train_offsets"][:] = offsets
            done = 0
            for s in ids:
                for sel, vec, states in teacher_batches(teacher.module, ids[s], layers if s == "train" else [],
                                                         batch_size, pad_id_of(teacher.tokenizer), head):
                    out[f"{s}_out"][sel] = vec
                    if states is not None:
                        for j, i in enumerate(sel):
                            n = len(ids[s][i])
                            out["train_hidden"][offsets[i]:offsets[i] + n] = states[j, :n]
                    done += len(sel)
                    if update:
                        update(done, s)
    finally:
        if bar:
            bar.__exit__(None, None, None)
    return cache.load(key), key, False


def pad_id_of(tokenizer) -> int:
    """The tokenizer's padding token id (0 when it has none)."""
    return int(getattr(tokenizer, "pad_token_id", 0) or 0)


def forward(module, input_ids, mask, **kwargs):
    """``module(input_ids, attention_mask, token_type_ids=zeros if it takes them, **kwargs)``."""
    import inspect

    import torch

    if "token_type_ids" in inspect.signature(module.forward).parameters:
        kwargs["token_type_ids"] = torch.zeros_like(input_ids)
    return module(input_ids=input_ids, attention_mask=mask, **kwargs)


def teacher_batches(module, ids: list, layers: list[int], batch_size: int, pad_id: int, head):
    """Yields (indices, head(output, mask) as numpy, (batch, seq, len(layers), hidden) fp16 states or None),
    in length-sorted batches."""
    import torch

    from ..evaluate.embedding import pad_batch

    module.eval()
    order = np.argsort([len(x) for x in ids], kind="stable")
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            sel = order[s:s + batch_size]
            input_ids, mask = (torch.from_numpy(a) for a in pad_batch([ids[i] for i in sel], pad_id))
            out = forward(module, input_ids, mask, output_hidden_states=bool(layers))
            vec = head(out, mask).float().numpy()
            states = None
            if layers:
                states = torch.stack([out.hidden_states[k + 1] for k in layers], dim=2).to(torch.float16).numpy()
            yield sel, vec, states


def micro_batches(idx, lengths: np.ndarray, ids: list, pad: int, micro_batch: int):
    """The batch ``idx`` (a LongTensor) sorted by length and cut into micro-batches (less padding).

    Yields (example indices, input_ids, attention_mask, weight): int64 tensors right-padded to the
    micro-batch's longest text, and the micro-batch's share of the batch (to weight its mean loss)."""
    import torch

    from ..evaluate.embedding import pad_batch

    idx = idx.numpy()
    idx = idx[np.argsort(lengths[idx], kind="stable")]
    for c in range(0, len(idx), micro_batch):
        sel = idx[c:c + micro_batch]
        ids_np, mask_np = pad_batch([ids[i] for i in sel], pad)
        yield sel, torch.from_numpy(ids_np), torch.from_numpy(mask_np), len(sel) / len(idx)


def padded_hidden(flat, offsets, idx, width: int):
    """(batch, width, layers, hidden) float32 tensor of the cached teacher states of sentences ``idx``."""
    import torch

    out = np.zeros((len(idx), width, flat.shape[1], flat.shape[2]), dtype=np.float32)
    for j, i in enumerate(idx):
        a, b = int(offsets[i]), int(offsets[i + 1])
        out[j, :b - a] = flat[a:b]
    return torch.from_numpy(out)


# --------------------------------------------------------------------------- losses

def masked_mse(student_states, teacher_states, mask):
    """Mean squared error over real tokens (mask 1) and hidden dims."""
    m = mask.unsqueeze(-1).to(student_states.dtype)
    return ((student_states - teacher_states) ** 2 * m).sum() / (m.sum() * student_states.shape[-1]).clamp(min=1)


def attention_kl(student_att, teacher_att, mask):
    """KL(teacher || student) of attention rows (batch, heads, q, k), averaged over heads and real queries."""
    import torch

    eps = 1e-8
    kl = (teacher_att * (torch.log(teacher_att + eps) - torch.log(student_att + eps))).sum(-1)  # (b, h, q)
    m = mask[:, None, :].to(kl.dtype)
    return (kl * m).sum() / (m.sum() * kl.shape[1]).clamp(min=1)
