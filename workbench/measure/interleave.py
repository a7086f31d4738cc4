"""Interleaved measurement: several models, several rounds, one fresh worker per model per round.

Why: the machine drifts (frequency, other load, thermal state) and each process has its own
latency (memory layout, thread placement). Measuring A then B lets drift masquerade as a
difference; measuring A B in shuffled order, round after round, spreads drift over all models
alike, and pooling several processes per model lets the CI (two-level bootstrap, see
:mod:`.pooled`) include the process-to-process variation.

Time budget: each worker gets ``min_s / rounds`` and ``max_s / rounds`` of timed runs (still at
least ``min_runs`` runs, and the full warm-up), so a model's total timed budget matches one
``measure_latency`` call; more rounds buy more processes, not more time. The target CI still
applies inside each worker, which stops early when it is met.
"""
from __future__ import annotations

import dataclasses
import os
import random
import uuid
from typing import Callable, Sequence

from ..errors import RecipeError
from .harness import LatencyMeasurement, _job, combine, latency_from_job
from .protocol import Protocol

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
                        inputs_paths: dict | None = None) -> list[LatencyMeasurement]:
    """Measure ``models`` interleaved: ``rounds`` rounds, each model once per round in its own fresh
    worker, the order shuffled per round (``random.Random(seed)``). Returns one pooled measurement
    per model, in the order of ``models`` (a path given twice is measured twice, as two entries).

    Each result has ``processes == rounds``, ``process_rounds`` (the round of each process) and
    ``interleave`` = {id, rounds, seed, models, label, order (list of lists of labels), worker_min_s,
    worker_max_s, budget}; ``protocol`` is the one passed in. ``inputs_paths`` maps a model path to
    its own inputs file (others use ``inputs_path``). ``on_progress(fraction, message)``.
    A failing worker raises MeasurementError (the run stops: a partial interleave is not comparable).
    """
    if isinstance(models, str) or not models or not all(isinstance(m, str) for m in models):
        raise RecipeError("models must be a non-empty list of model paths, e.g. ['a.onnx', 'b.onnx']")
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise RecipeError(f"rounds must be a whole number >= 1, got {rounds!r}; 5 or more is advised")
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
    total, done = rounds * len(models), 0
    for r in range(rounds):
        idx = list(range(len(models)))
        rng.shuffle(idx)
        order.append([labels[i] for i in idx])
        for i in idx:
            what = f"round {r + 1}/{rounds}: {labels[i]}"

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
    if on_progress is not None:
        on_progress(1.0, "done")
    info = {"id": uuid.uuid4().hex[:12], "rounds": rounds, "seed": seed, "models": labels, "order": order,
            "worker_min_s": wproto.min_s, "worker_max_s": wproto.max_s, "budget": BUDGET_RULE}
    out = []
    for i, ms in enumerate(per_model):
        pooled = combine(ms)
        out.append(dataclasses.replace(pooled, protocol=protocol, interleave={**info, "label": labels[i]}))
    return out
