"""The one training engine: every path that trains a model (``workbench run``'s students,
``workbench train``, ``workbench distill``, QAT, transformers) calls :func:`fit`.

A budget in epochs or in optimiser steps (exactly one decides; the learning-rate schedule follows
the step count), optimiser and schedule from the recipe, early stopping on a validation metric, a
checkpoint after every pass over the data and resume after a kill, deterministic shuffling, and a
progress bar with loss and metric.

Where: on the device of the job's context (workbench.distill.device: ``--device``; the modules move
there for the run and back to the CPU after it), and, under torchrun, in several processes
(workbench.distill.ddp): every rank trains on its share of every globally shuffled batch, gradients
are summed over the ranks before each step, rank 0 alone validates (the others get its metric, so
every rank keeps the same best pass and stops at the same time), checkpoints and shows progress.

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
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import RecipeError

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "linear", "constant")
MAX_EVALS = 20  # with a budget in steps: validation runs at most about this many times


@dataclass(frozen=True)
class FitConfig:
    """How to train: the budget (``epochs`` passes over the data, or ``steps`` optimiser steps; give
    one, epochs=20 when neither), batch, optimiser, schedule, early stopping (``patience`` in
    validations: epochs for a budget in epochs) and seed. Where it runs (device, processes) is no part
    of it: the same config gives the same content keys and checkpoint fingerprint on any device."""

    epochs: int | None = None  # passes over the training examples (20 when steps is not given either)
    steps: int | None = None  # optimiser steps instead: the last pass over the data may be partial
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 5e-4
    optimizer: str = "adamw"  # "adamw" | "sgd" (momentum 0.9, nesterov)
    schedule: str = "cosine"  # after a linear warm-up: "cosine" | "linear" | "constant"
    warmup_frac: float = 0.05
    # early stopping after this many validations without improvement (0 = off): with a budget in epochs a
    # validation follows every epoch, so it counts epochs; with a budget in steps validation runs about
    # MAX_EVALS times in all, so it counts those validations
    patience: int = 0
    min_delta: float = 0.0
    seed: int = 0
    max_grad_norm: float | None = None

    def __post_init__(self):
        if self.epochs is not None and self.steps is not None:
            raise RecipeError(f"give the training budget as epochs or as steps, not both "
                              f"(got epochs={self.epochs}, steps={self.steps})")
        if self.epochs is None and self.steps is None:
            object.__setattr__(self, "epochs", 20)
        if self.optimizer not in OPTIMIZERS:
            raise RecipeError(f"unknown optimizer {self.optimizer!r}; use one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise RecipeError(f"unknown schedule {self.schedule!r}; use one of {', '.join(SCHEDULES)}")
        budget = ("steps", self.steps) if self.steps is not None else ("epochs", self.epochs)
        if not isinstance(budget[1], int) or budget[1] < 1 or self.batch_size < 1:
            raise RecipeError(f"{budget[0]} and batch_size must be >= 1, whole numbers (got {budget[1]}, {self.batch_size})")
        if self.lr <= 0 or not 0 <= self.warmup_frac < 1 or self.patience < 0:
            raise RecipeError("lr must be > 0, warmup_frac in [0, 1) and patience >= 0")

    def to_json(self) -> dict:
        """The config as JSON-ready data (cards, content keys, checkpoint fingerprints)."""
        return asdict(self)

    def patience_unit(self) -> str:
        """What ``patience`` counts: "epochs" (budget in epochs) or "validations" (budget in steps)."""
        return "epochs" if self.steps is None else "validations"

    def schedule_for(self, n_train: int) -> "Budget":
        """The budget over ``n_train`` examples: batch, steps per pass, total steps and passes."""
        batch = min(self.batch_size, n_train)
        per_epoch = math.ceil(n_train / batch)
        if n_train % batch == 1 and per_epoch > 1:  # a last batch of one breaks BatchNorm in training: drop it
            per_epoch -= 1
        total = self.steps if self.steps is not None else per_epoch * self.epochs
        epochs = math.ceil(total / per_epoch)
        # a budget in steps over a small set makes many short passes: validate about MAX_EVALS times, not after each
        every = 1 if self.steps is None else max(1, math.ceil(epochs / MAX_EVALS))
        return Budget(batch, per_epoch, total, epochs, every)


@dataclass(frozen=True)
class Budget:
    """A FitConfig's budget resolved for one training set: what :func:`fit` runs."""

    batch: int
    steps_per_epoch: int
    total_steps: int
    epochs: int  # passes over the data; with a budget in steps the last one may be partial
    eval_every: int = 1  # validate after every this many passes (and after the last)

    def evaluates_after(self, epoch: int) -> bool:
        """Whether validation (and the best-weights bookkeeping) runs after pass ``epoch`` (0-based)."""
        return (epoch + 1) % self.eval_every == 0 or epoch + 1 == self.epochs

    def steps_in(self, epoch: int) -> int:
        """Optimiser steps in pass ``epoch`` (0-based)."""
        return max(0, min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch))


@dataclass(frozen=True)
class FitResult:
    """What one :func:`fit` did: passes and steps run, the best pass by the validation metric (the
    weights the modules hold), early stop, resume, per-pass history and the time it took."""

    epochs_run: int
    best_epoch: int
    best_metric: float  # nan when fit had no evaluate()
    stopped_early: bool
    resumed_from: int | None
    history: tuple = ()  # per pass: {epoch, steps, loss, metric, lr, seconds}
    seconds: float = 0.0
    steps_run: int = 0

    @property
    def final_loss(self) -> float:
        """Mean training loss over the last pass (nan before any)."""
        return self.history[-1]["loss"] if self.history else float("nan")

    def to_json(self) -> dict:
        """JSON-ready form for cards and unit results."""
        d = asdict(self)
        d["history"] = [dict(h) for h in self.history]
        return d


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
        key: str = "", progress=None, metric_name: str = "val", describe: str = "training",
        on_step=None, device: str | None = None) -> FitResult:
    """Train all parameters of ``modules`` for ``cfg.epochs`` passes or ``cfg.steps`` optimiser steps
    over ``n_train`` example indices.

    ``step(idx, epoch)`` returns the loss of one batch (the engine does zero_grad, backward, clipping,
    the optimiser and the schedule); ``evaluate()`` returns the validation metric (higher is better)
    with the modules in eval mode, after every pass (with a budget in steps: about MAX_EVALS times in
    all, after the passes :meth:`Budget.evaluates_after` names); at the end the best pass's weights are restored
    into the modules. With ``evaluate=None`` nothing is validated and the modules keep their final
    weights. With ``checkpoint`` the full state is saved atomically after every pass and a later call
    with the same ``key`` and config resumes from it; a checkpoint made for another key or config is
    ignored (and overwritten). ``progress`` is a :class:`~workbench.progress.Progress` (bar and
    notes); ``on_step(steps_done, mean_loss)`` hears about the loss about 20 times per run.

    ``device`` (default: the context's, workbench.distill.device.current) is where the modules train;
    they are back on the CPU when fit returns. Under torchrun (workbench.distill.ddp) a ``step`` that
    takes a ``share`` keyword gets the global batch and the slice that is this rank's (it draws any
    per-example randomness over the whole batch, then keeps its share); any other ``step`` gets its share
    of the indices. Each rank's loss is the mean over its share.
    """
    from .device import current, placed

    device = device or current()
    with placed(modules, device):
        return _fit(modules, step, n_train, evaluate, cfg, checkpoint, key, progress, metric_name, describe,
                    on_step, device)


def _fit(modules, step, n_train, evaluate, cfg, checkpoint, key, progress, metric_name, describe, on_step,
         device) -> FitResult:
    import inspect

    import torch

    from . import ddp

    if n_train < 1:
        raise RecipeError("nothing to train on: the training split is empty")
    params = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
    if not params:
        raise RecipeError("the student has no trainable parameters")
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    plan = cfg.schedule_for(n_train)
    batch, per_epoch, total = plan.batch, plan.steps_per_epoch, plan.total_steps
    warmup = int(round(cfg.warmup_frac * total))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warmup, cfg.schedule))
    fp = _fingerprint(cfg, key, n_train)
    rank, ranks = ddp.world()
    main = rank == 0
    if not main:
        progress = None  # progress and notes from rank 0 only
    sharded = "share" in inspect.signature(step).parameters
    budget = f"{total} steps" if cfg.steps is not None else f"{plan.epochs} epochs x {per_epoch} steps"

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
            # best weights and checkpointed tensors onto the training device (they were loaded to the CPU)
            if state.get("best_state") is not None:
                state["best_state"] = {n: {k: v.to(device) for k, v in sd.items()} for n, sd in state["best_state"].items()}
            if progress is not None:
                progress.info(f"  resuming {describe} after epoch {resumed_from}/{plan.epochs} ({checkpoint})")
        elif progress is not None:
            progress.info(f"  ignoring checkpoint {checkpoint}: it belongs to another configuration")

    def snapshot():
        """A copy of every module's weights (the best pass's, kept in memory and in the checkpoint)."""
        return {name: copy.deepcopy({k: v.detach().clone() for k, v in m.state_dict().items()})
                for name, m in modules.items()}

    ddp.broadcast_modules(modules)  # every rank starts from rank 0's weights (fresh or resumed)

    def save_checkpoint():
        """Write the full training state atomically (weights, optimiser, schedule, RNG, history)."""
        from ..fileio import atomic_path

        ck = {"fingerprint": fp, "modules": {n: m.state_dict() for n, m in modules.items()},
              "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "state": state,
              "torch_rng": torch.get_rng_state()}
        with atomic_path(checkpoint, suffix=".pt") as tmp:
            torch.save(ck, str(tmp))

    def run_eval() -> float:
        """The validation metric with every module in eval mode and no gradients (rank 0 validates; every
        rank gets its value)."""
        value = None
        if main:
            for m in modules.values():
                m.eval()
            with torch.no_grad():
                value = float(evaluate())
        return ddp.broadcast_value(value, device)

    def one_step(idx, epoch):
        """The loss of one global batch ``idx``: this process's share (the whole batch in one process),
        backward, and under torchrun the gradients and loss summed over the ranks. Returns the loss tensor
        (one process) or the global mean loss as a float."""
        if ranks == 1:
            loss = step(idx, epoch)
            if not torch.isfinite(loss):
                raise RecipeError(f"{describe}: the loss became {loss.item()} at epoch {epoch + 1}; "
                                  "lower the learning rate (lr) or the loss weights")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            return loss
        part = ddp.share(len(idx))
        loss = step(idx, epoch, share=part) if sharded else step(idx[part], epoch)
        loss = loss * ((part.stop - part.start) / len(idx))  # this rank's mean, weighted by its share of the batch
        opt.zero_grad(set_to_none=True)
        loss.backward()
        total = ddp.all_reduce_(params, loss)
        if not math.isfinite(total):
            raise RecipeError(f"{describe}: the loss became {total} at epoch {epoch + 1}; "
                              "lower the learning rate (lr) or the loss weights")
        return torch.tensor(total)

    start = time.perf_counter()
    stopped_early = state.get("stopped_early", False)
    report_every = max(1, total // 20)
    if not stopped_early and state["epoch"] < plan.epochs:
        bar = progress.bar(f"{describe} ({budget})", total) if progress else None
        update = bar.__enter__() if bar is not None else None
        try:
            if update:
                update(state["epoch"] * per_epoch, f"epoch {state['epoch']}/{plan.epochs}")
            for epoch in range(state["epoch"], plan.epochs):
                t0 = time.perf_counter()
                for m in modules.values():
                    m.train()
                gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
                order = torch.randperm(n_train, generator=gen)
                running, count, since, n_since = 0.0, 0, 0.0, 0
                for s in range(plan.steps_in(epoch)):
                    idx = order[s * batch:(s + 1) * batch]
                    loss = one_step(idx, epoch)
                    if cfg.max_grad_norm:
                        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                    opt.step()
                    sched.step()
                    value = float(loss.item())
                    running, count, since, n_since = running + value, count + 1, since + value, n_since + 1
                    done = epoch * per_epoch + s + 1
                    if on_step is not None and (done % report_every == 0 or done == total):
                        on_step(done, since / n_since)
                        since, n_since = 0.0, 0
                    if update and (s + 1) % max(1, per_epoch // 10) == 0:
                        update(done, f"epoch {epoch + 1}/{plan.epochs} loss {running / count:.4f}")
                metric = run_eval() if evaluate is not None and plan.evaluates_after(epoch) else None
                if evaluate is None:
                    state["best_epoch"], state["best_metric"] = epoch + 1, math.nan
                elif metric is not None and (metric > state["best_metric"] + cfg.min_delta or state["best_state"] is None):
                    state["best_metric"], state["best_epoch"], state["best_state"] = metric, epoch + 1, snapshot()
                    state["bad_epochs"] = 0
                elif metric is not None:
                    state["bad_epochs"] += 1
                state["history"].append({"epoch": epoch + 1, "steps": count, "loss": running / max(1, count),
                                         metric_name: metric, "lr": opt.param_groups[0]["lr"],
                                         "seconds": round(time.perf_counter() - t0, 3)})
                state["epoch"] = epoch + 1
                stop = metric is not None and cfg.patience > 0 and state["bad_epochs"] >= cfg.patience
                state["stopped_early"] = stop and state["epoch"] < plan.epochs
                if update:
                    shown = "" if metric is None else (f" {metric_name} {metric:.4f} (best {state['best_metric']:.4f}"
                                                       f" @ {state['best_epoch']})")
                    update(epoch * per_epoch + count, f"epoch {epoch + 1}/{plan.epochs} loss "
                                                      f"{running / max(1, count):.4f}{shown}")
                if checkpoint is not None and main:
                    save_checkpoint()
                if stop:
                    if progress is not None:
                        progress.info(f"  early stop after epoch {epoch + 1}: no {metric_name} improvement in "
                                      f"{cfg.patience} {cfg.patience_unit()} (patience; best {state['best_metric']:.4f} "
                                      f"at epoch {state['best_epoch']})")
                    break
        finally:
            if bar is not None:
                bar.__exit__(None, None, None)
    for name, m in modules.items():
        if state["best_state"] is not None:
            m.load_state_dict(state["best_state"][name])
        m.eval()
    steps_run = sum(h.get("steps", per_epoch) for h in state["history"])
    return FitResult(epochs_run=state["epoch"], best_epoch=state["best_epoch"], best_metric=state["best_metric"],
                     stopped_early=bool(state.get("stopped_early")), resumed_from=resumed_from,
                     history=tuple(state["history"]), seconds=round(time.perf_counter() - start, 3),
                     steps_run=steps_run)
