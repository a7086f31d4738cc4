"""The training engine every distillation path uses: epochs over example indices, optimiser and
schedule from the recipe, early stopping on a validation metric, a checkpoint after every epoch
and resume after a kill, deterministic shuffling, and a progress bar with loss and metric.

The engine knows nothing about models or losses: callers give it the trainable modules (student
plus any adapters), a ``step(idx, epoch) -> loss`` function and an ``evaluate() -> float``
(higher is better).
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import RecipeError

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "linear", "constant")


@dataclass(frozen=True)
class FitConfig:
    epochs: int = 20
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 5e-4
    optimizer: str = "adamw"  # "adamw" | "sgd" (momentum 0.9, nesterov)
    schedule: str = "cosine"  # after a linear warm-up: "cosine" | "linear" | "constant"
    warmup_frac: float = 0.05
    patience: int = 0  # early stopping after this many epochs without improvement; 0 = off
    min_delta: float = 0.0
    seed: int = 0
    max_grad_norm: float | None = None

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise RecipeError(f"unknown optimizer {self.optimizer!r}; use one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise RecipeError(f"unknown schedule {self.schedule!r}; use one of {', '.join(SCHEDULES)}")
        if self.epochs < 1 or self.batch_size < 1:
            raise RecipeError(f"epochs and batch_size must be >= 1 (got {self.epochs}, {self.batch_size})")
        if self.lr <= 0 or not 0 <= self.warmup_frac < 1 or self.patience < 0:
            raise RecipeError("lr must be > 0, warmup_frac in [0, 1) and patience >= 0")

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class FitResult:
    epochs_run: int
    best_epoch: int
    best_metric: float
    stopped_early: bool
    resumed_from: int | None
    history: list[dict] = field(default_factory=list)  # per epoch: epoch, loss, metric, lr, seconds
    seconds: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based)."""
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    if schedule == "linear":
        return max(0.0, 1.0 - t)
    return 1.0


def _fingerprint(cfg: FitConfig, key: str, n_train: int) -> str:
    raw = json.dumps({"cfg": cfg.to_json(), "key": key, "n": n_train}, sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def fit(modules: dict, step, n_train: int, evaluate, cfg: FitConfig, *, checkpoint: Path | None = None,
        key: str = "", progress=None, metric_name: str = "val", describe: str = "training") -> FitResult:
    """Train all parameters of ``modules`` for ``cfg.epochs`` epochs over ``n_train`` example indices.

    ``step(idx, epoch)`` returns the loss of one batch (the engine does zero_grad, backward, clipping,
    the optimiser and the schedule); ``evaluate()`` returns the validation metric (higher is better)
    with the modules in eval mode. With ``checkpoint`` the full state is saved atomically after every
    epoch and a later call with the same ``key`` and config resumes from it; a checkpoint made for
    another key or config is ignored (and overwritten). At the end the best epoch's weights are
    restored into the modules.
    """
    import torch

    if n_train < 1:
        raise RecipeError("nothing to train on: the training split is empty")
    params = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
    if not params:
        raise RecipeError("the student has no trainable parameters")
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    batch = min(cfg.batch_size, n_train)
    steps_per_epoch = math.ceil(n_train / batch)
    if n_train % batch == 1 and steps_per_epoch > 1:  # a last batch of one breaks BatchNorm in training: drop it
        steps_per_epoch -= 1
    total = steps_per_epoch * cfg.epochs
    warmup = int(round(cfg.warmup_frac * total))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warmup, cfg.schedule))
    fp = _fingerprint(cfg, key, n_train)

    state = {"epoch": 0, "history": [], "best_metric": -math.inf, "best_epoch": 0, "best_state": None, "bad_epochs": 0}
    resumed_from = None
    if checkpoint is not None and Path(checkpoint).is_file():
        try:
            ck = torch.load(str(checkpoint), map_location="cpu", weights_only=True)
        except Exception:  # a torn or foreign file: start over
            ck = None
        if isinstance(ck, dict) and ck.get("fingerprint") == fp:
            for name, m in modules.items():
                m.load_state_dict(ck["modules"][name])
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            state = ck["state"]
            resumed_from = state["epoch"]
            torch.set_rng_state(ck["torch_rng"])
            if progress is not None:
                progress.info(f"  resuming {describe} after epoch {resumed_from}/{cfg.epochs} ({checkpoint})")
        elif progress is not None:
            progress.info(f"  ignoring checkpoint {checkpoint}: it belongs to another configuration")

    def snapshot():
        return {name: copy.deepcopy({k: v.detach().clone() for k, v in m.state_dict().items()})
                for name, m in modules.items()}

    def save_checkpoint():
        from ..fileio import atomic_path

        ck = {"fingerprint": fp, "modules": {n: m.state_dict() for n, m in modules.items()},
              "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "state": state,
              "torch_rng": torch.get_rng_state()}
        with atomic_path(checkpoint, suffix=".pt") as tmp:
            torch.save(ck, str(tmp))

    def run_eval() -> float:
        for m in modules.values():
            m.eval()
        with torch.no_grad():
            value = float(evaluate())
        return value

    start = time.perf_counter()
    stopped_early = state.get("stopped_early", False)
    if not stopped_early and state["epoch"] < cfg.epochs:
        bar = progress.bar(f"{describe} ({cfg.epochs} epochs x {steps_per_epoch} steps)", total) if progress else None
        update = bar.__enter__() if bar is not None else None
        try:
            if update:
                update(state["epoch"] * steps_per_epoch, f"epoch {state['epoch']}/{cfg.epochs}")
            for epoch in range(state["epoch"], cfg.epochs):
                t0 = time.perf_counter()
                for m in modules.values():
                    m.train()
                gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
                order = torch.randperm(n_train, generator=gen)
                running, count = 0.0, 0
                for s in range(steps_per_epoch):
                    idx = order[s * batch:(s + 1) * batch]
                    if len(idx) == 0:
                        continue
                    loss = step(idx, epoch)
                    if not torch.isfinite(loss):
                        raise RecipeError(f"{describe}: the loss became {loss.item()} at epoch {epoch + 1}; "
                                          "lower the learning rate (lr) or the loss weights")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.max_grad_norm:
                        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                    opt.step()
                    sched.step()
                    running += float(loss.item())
                    count += 1
                    if update and (s + 1) % max(1, steps_per_epoch // 10) == 0:
                        update(epoch * steps_per_epoch + s + 1,
                               f"epoch {epoch + 1}/{cfg.epochs} loss {running / count:.4f}")
                metric = run_eval()
                improved = metric > state["best_metric"] + cfg.min_delta
                if improved or state["best_state"] is None:
                    state["best_metric"], state["best_epoch"], state["best_state"] = metric, epoch + 1, snapshot()
                    state["bad_epochs"] = 0
                else:
                    state["bad_epochs"] += 1
                state["history"].append({"epoch": epoch + 1, "loss": running / max(1, count), metric_name: metric,
                                         "lr": opt.param_groups[0]["lr"], "seconds": round(time.perf_counter() - t0, 3)})
                state["epoch"] = epoch + 1
                stop = cfg.patience > 0 and state["bad_epochs"] >= cfg.patience
                state["stopped_early"] = stop and state["epoch"] < cfg.epochs
                if update:
                    update((epoch + 1) * steps_per_epoch,
                           f"epoch {epoch + 1}/{cfg.epochs} loss {running / max(1, count):.4f} {metric_name} {metric:.4f}"
                           f" (best {state['best_metric']:.4f} @ {state['best_epoch']})")
                if checkpoint is not None:
                    save_checkpoint()
                if stop:
                    if progress is not None:
                        progress.info(f"  early stop after epoch {epoch + 1}: no {metric_name} improvement in "
                                      f"{cfg.patience} epochs (best {state['best_metric']:.4f} at epoch {state['best_epoch']})")
                    break
        finally:
            if bar is not None:
                bar.__exit__(None, None, None)
    for name, m in modules.items():
        if state["best_state"] is not None:
            m.load_state_dict(state["best_state"][name])
        m.eval()
    return FitResult(epochs_run=state["epoch"], best_epoch=state["best_epoch"], best_metric=state["best_metric"],
                     stopped_early=bool(state.get("stopped_early")), resumed_from=resumed_from,
                     history=list(state["history"]), seconds=round(time.perf_counter() - start, 3))
