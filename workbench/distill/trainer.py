"""Training a model from labels only or with Hinton KD, with a fixed step budget."""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 400
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 5e-4
    warmup_steps: int = 20
    augment_shift: int = 1
    seed: int = 0
    method: str = "labels"  # "labels" or "kd"
    temperature: float = 4.0
    alpha: float = 0.9

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TrainResult:
    seconds: float
    final_loss: float
    val_accuracy: float | None
    history: tuple[tuple[int, float], ...]  # (step, mean loss since the previous entry)


def train(model, views, y, cfg: TrainConfig, subset: np.ndarray | None = None, teacher_logits=None,
          val: tuple[np.ndarray, np.ndarray] | None = None, progress=None) -> TrainResult:
    """Train ``model`` in place for ``cfg.steps`` optimiser steps (AdamW, linear warm-up + cosine decay).

    ``views`` yields augmented training images; ``subset`` restricts training to those example
    indices (few-label regime); ``teacher_logits`` (n_views, n, classes) enables the KD loss.
    ``progress(step, loss)`` is called every few steps.
    """
    import torch
    import torch.nn.functional as F

    from .losses import hinton_kd_loss

    if cfg.method == "kd" and teacher_logits is None:
        raise ValueError("KD training needs teacher logits")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    pool = torch.from_numpy(np.asarray(subset if subset is not None else np.arange(len(y)), dtype=np.int64))
    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
    batch = min(cfg.batch_size, len(pool))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def lr_at(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    start, running, history, order, pos = time.perf_counter(), 0.0, [], torch.empty(0, dtype=torch.long), 0
    report_every = max(1, cfg.steps // 20)
    for step in range(cfg.steps):
        if pos + batch > len(order):  # epoch boundary: reshuffle the pool
            order, pos = pool[torch.randperm(len(pool), generator=gen)], 0
        idx = order[pos:pos + batch]
        pos += batch
        view = torch.randint(0, views.n_views, (len(idx),), generator=gen)
        xb = views.get(idx, view)
        logits = model(xb)
        if cfg.method == "kd":
            tl = torch.from_numpy(np.ascontiguousarray(teacher_logits[view.numpy(), idx.numpy()]))
            loss = hinton_kd_loss(logits, tl, labels[idx], cfg.temperature, cfg.alpha)
        else:
            loss = F.cross_entropy(logits, labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running += loss.item()
        if (step + 1) % report_every == 0 or step + 1 == cfg.steps:
            n = (step % report_every) + 1
            history.append((step + 1, running / n))
            running = 0.0
            if progress:
                progress(step + 1, history[-1][1])
    model.eval()
    val_acc = accuracy(model, *val) if val is not None else None
    return TrainResult(time.perf_counter() - start, history[-1][1] if history else float("nan"), val_acc, tuple(history))


def predict(model, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    import torch

    model.eval()
    outs = []
    with torch.inference_mode():
        for s in range(0, len(x), batch_size):
            outs.append(model(torch.from_numpy(np.ascontiguousarray(x[s:s + batch_size]))).numpy())
    return np.concatenate(outs)


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    return float((predict(model, x).argmax(1) == y).mean())
