"""Interleaved measurement: several models, several rounds, one fresh worker per model per round.

Why: the machine drifts (frequency, other load, thermal state) and each process has its own
latency (memory layout, thread placement). Measuring A then B lets drift masquerade as a
difference; measuring A B in shuffled order, round after round, spreads drift over all models
alike, and pooling several processes per model lets the CI (two-level bootstrap, see
:mod:`.pooled`) include the process-to-process variation.

Time budget: each worker gets ``min_s / rounds`` and ``max_s / rounds`` of timed runs (still at
least ``min_runs`` runs, and the full warm-up), so a model's total timed budget matches one
``measure_latency`` call; more rounds buy more processes, not more time. The target CI still
applies inside each worker, which stops early when it is met. Adaptive rounds (``max_rounds``)
keep that per-worker budget (``rounds`` is the minimum), so each added round costs about as much
as one of the first ones; ``max_rounds`` and ``max_wall_s`` bound the total.
"""
from __future__ import annotations

import dataclasses
import os
import random
import time
import uuid
from typing import Callable, Sequence

from ..errors import RecipeError
from .harness import LatencyMeasurement, _job, combine, latency_from_job
from .protocol import Protocol
from .stats import EQUIVALENCE_MARGIN
from .verdict import STOP_RULE, VETO_CODES, RoundController

MAX_ROUNDS_LIMIT = 100
InterleaveProgress = Callable[[float, str], None]  # (fraction of the whole run in [0, 1], message)

BUDGET_RULE = ("each worker: min_s/rounds and max_s/rounds of timed runs, at least min_runs runs, full warm-up; "
               "models measured once per round in a seeded shuffled order")


def display_names(models: Sequence[str]) -> list[str]:
    """Short unique names for the recorded order: basenames, else paths; repeats get '#2', '#3' ..."""
    base = [os.path.basename(m) for m in models]
    names = base if len(set(base)) == len(set(models)) else list(models)
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


def worker_protocol(protocol: Protocol, rounds: int) -> Protocol:
    """The protocol each worker of an interleaved run uses (see the module docstring)."""
    return dataclasses.replace(protocol, min_s=protocol.min_s / rounds, max_s=protocol.max_s / rounds)


def measure_interleaved(models: Sequence[str], runtime, threads: int, inputs_path: str | None,
                        protocol: Protocol = Protocol(), rounds: int = 5, seed: int = 0,
                        on_progress: InterleaveProgress | None = None,
                        inputs_paths: dict | None = None, *, max_rounds: int | None = None,
                        max_wall_s: float | None = None,
                        margin: float = EQUIVALENCE_MARGIN) -> list[LatencyMeasurement]:
    """Measure ``models`` interleaved: ``rounds`` rounds, each model once per round in its own fresh
    worker, the order shuffled per round (``random.Random(seed)``). Returns one pooled measurement
    per model, in the order of ``models`` (a path given twice is measured twice, as two entries).

    Adaptive rounds: with ``max_rounds`` > ``rounds``, ``rounds`` is the minimum and rounds are
    added until every model's paired CI against the first model is tight, ``max_rounds`` rounds
    were run, or the next round would end after ``max_wall_s`` seconds (see
    :data:`.verdict.STOP_RULE`); a round in which a worker's guards fired (sentinel drift, busy
    machine) is dropped and replaced while the cap allows.

    Each result has ``processes`` (the rounds pooled), ``process_rounds`` (the round of each
    process) and ``interleave`` = {id, rounds (pooled), min_rounds, max_rounds, rounds_run,
    dropped_rounds [{round, why}], stop, wall_s, seed, models, label, order (list of lists of labels,
    every round run), worker_min_s, worker_max_s, budget}; ``protocol`` is the one passed in.
    ``inputs_paths`` maps a model path to its own inputs file (others use ``inputs_path``).
    ``on_progress(fraction, message)``. A failing worker raises MeasurementError (the run stops: a
    partial interleave is not comparable).
    """
    if isinstance(models, str) or not models or not all(isinstance(m, str) for m in models):
        raise RecipeError("models must be a non-empty list of model paths, e.g. ['a.onnx', 'b.onnx']")
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise RecipeError(f"rounds must be a whole number >= 1, got {rounds!r}; 5 or more is advised")
    max_rounds = rounds if max_rounds is None else max_rounds
    if not isinstance(max_rounds, int) or isinstance(max_rounds, bool) or not rounds <= max_rounds <= MAX_ROUNDS_LIMIT:
        raise RecipeError(f"max_rounds must be a whole number from rounds ({rounds}) to {MAX_ROUNDS_LIMIT}, "
                          f"got {max_rounds!r}; e.g. 10")
    if max_wall_s is not None and (isinstance(max_wall_s, bool) or not isinstance(max_wall_s, (int, float))
                                   or not 0 < max_wall_s < 1e6):
        raise RecipeError(f"max_wall_s must be a number of seconds > 0, got {max_wall_s!r}")
    if inputs_paths is not None and not isinstance(inputs_paths, dict):
        raise RecipeError("inputs_paths must map model paths to .npz inputs files")
    if not isinstance(protocol, Protocol):
        raise RecipeError(f"protocol must be a workbench.measure.Protocol, not {type(protocol).__name__}")
    wproto = worker_protocol(protocol, rounds)
    paths = inputs_paths or {}
    jobs = [_job("latency", m, runtime, threads, paths.get(m, inputs_path), wproto) for m in models]  # checks all first
    labels = display_names(models)
    rng = random.Random(seed)
    per_model: list[list[LatencyMeasurement]] = [[] for _ in models]
    order: list[list[str]] = []
    ctl = RoundController(rounds, max_rounds, margin, max_wall_s)
    total, done, t0 = max_rounds * len(models), 0, time.monotonic()
    r, stop = 0, None
    while stop is None:
        idx = list(range(len(models)))
        rng.shuffle(idx)
        order.append([labels[i] for i in idx])
        t_round = time.monotonic()
        for i in idx:
            what = f"round {r + 1}/{max_rounds}: {labels[i]}"

            def progress(x, _done=done, _what=what):
                if on_progress is None:
                    return
                if isinstance(x, str):
                    on_progress(_done / total, f"{_what} ({x})")
                else:
                    on_progress((_done + min(max(float(x), 0.0), 1.0)) / total, _what)

            m = latency_from_job(jobs[i], models[i], wproto, progress)
            per_model[i].append(dataclasses.replace(m, process_rounds=(r,)))
            done += 1
        ctl.add(r, [ms[-1].stats.median for ms in per_model], _disturbed(per_model, labels, r),
                time.monotonic() - t_round)
        r += 1
        stop = ctl.stop(time.monotonic() - t0)
    if on_progress is not None:
        on_progress(1.0, "done")
    keep = ctl.rounds_to_pool()
    info = {"id": uuid.uuid4().hex[:12], "rounds": len(keep), "min_rounds": rounds, "max_rounds": max_rounds,
            "rounds_run": r, "dropped_rounds": [d for d in ctl.dropped if d["round"] not in keep], "stop": stop,
            "wall_s": round(time.monotonic() - t0, 3), "seed": seed, "models": labels, "order": order,
            "worker_min_s": wproto.min_s, "worker_max_s": wproto.max_s, "budget": BUDGET_RULE,
            **({"stop_rule": STOP_RULE} if max_rounds > rounds else {})}
    out = []
    for i, ms in enumerate(per_model):
        pooled = combine([m for m in ms if m.process_rounds[0] in keep])
        out.append(dataclasses.replace(pooled, protocol=protocol, interleave={**info, "label": labels[i]}))
    return out


def _disturbed(per_model: list[list[LatencyMeasurement]], labels: list[str], r: int) -> str | None:
    """Why round ``r`` is disturbed (a worker's sentinel drift or busy-machine guard fired), or None."""
    why = [f"{labels[i]}: {w.message}" for i, ms in enumerate(per_model) for w in ms[-1].stability.warnings
           if w.code in VETO_CODES and ms[-1].process_rounds == (r,)]  # ms[-1]: this model's process of round r
    return "; ".join(why) or None
