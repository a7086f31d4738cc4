"""The allowed values of every recipe key, checked before anything is loaded, trained or written.

One table (RULES) gives each numeric key its type and range (the ``[distill]`` keys have their own
schema, shared with `workbench distill`: workbench.recipe.distill_keys); ``check_value`` turns a value outside it
into ONE line naming the key, the value and what is allowed. Thread counts (1 .. 4 x this machine's
cores, ``"all"``) and the checks that need the loaded task (few-label counts within the training
split) live here too, so ``workbench run``, ``--dry-run`` and ``workbench bench`` share them.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

from ..errors import RecipeError

THREADS_PER_CORE_MAX = 4  # more threads than 4 x the cores only measures contention (and 100000 hangs a runtime)


@dataclass(frozen=True)
class Num:
    """A numeric range: ``lo``/``hi`` bounds (None = open-ended), exclusive when ``*_open``; ``integer``
    demands a whole number. ``hint`` explains the unit in the message."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False
    hint: str = ""

    def describe(self) -> str:
        """'an integer >= 1', 'a number > 0', 'a number in [0, 1]' ..."""
        kind = "an integer" if self.integer else "a number"
        lo, hi = _fmt(self.lo), _fmt(self.hi)
        if self.lo is not None and self.hi is not None:
            text = f"{kind} in {'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"
        elif self.lo is not None:
            text = f"{kind} {'>' if self.lo_open else '>='} {lo}"
        elif self.hi is not None:
            text = f"{kind} {'<' if self.hi_open else '<='} {hi}"
        else:
            text = f"a finite {kind[2:] if kind.startswith('a ') else kind[3:]}"
        return text + (f" ({self.hint})" if self.hint else "")

    def ok(self, v) -> bool:
        """Whether ``v`` is of the right type and inside the range."""
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        if self.integer and not isinstance(v, int):
            return False
        if isinstance(v, float) and not math.isfinite(v):
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return not (self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi))


def _fmt(x) -> str:
    return "" if x is None else f"{x:g}"


POSITIVE_INT = Num(1, integer=True)
RULES: dict[str, dict[str, Num]] = {
    "task": {"image_size": Num(8, 1024, integer=True, hint="pixels")},
    "quantize": {"calib_samples": POSITIVE_INT,
                 "max_drop": Num(0, 100, hint="accuracy points, 0.5 = half a point; for a cosine metric 100 x "
                                                   "the allowed cosine drop, 0.5 = 0.005")},
    "export": {"parity_atol": Num(0), "parity_rtol": Num(0), "parity_samples": POSITIVE_INT,
               "accuracy_tolerance": Num(0, hint="accuracy points: 0.5 = half a point")},
    "measure": {"warmup_runs": Num(0, integer=True), "warmup_s": Num(0, hint="seconds"), "min_runs": POSITIVE_INT,
                "min_s": Num(0, hint="seconds"), "max_s": Num(0, lo_open=True, hint="seconds"),
                "target_ci": Num(0, 1, lo_open=True, hi_open=True, hint="a fraction such as 0.02"),
                "memory_runs": POSITIVE_INT, "timeout_s": Num(0, lo_open=True, hint="seconds"),
                "rounds": Num(1, 50, integer=True)},
}


def check_value(what: str, value, rule: Num):
    """Return ``value`` if ``rule`` allows it; else a RecipeError: '<what> = <value> is not allowed; use ...'."""
    if not rule.ok(value):
        raise RecipeError(f"{what} = {value!r} is not allowed; use {rule.describe()}")
    return value


def check_section(name: str, section) -> None:
    """Check every key of a recipe section that has a rule in RULES."""
    for key, rule in RULES.get(name, {}).items():
        check_value(f"[{name}] {key}", getattr(section, key), rule)
    if hasattr(section, "threads"):
        check_threads(section.threads, f"[{name}] threads")


def max_threads() -> int:
    """The most threads a measurement may ask for: 4 x this machine's cores."""
    return THREADS_PER_CORE_MAX * (os.cpu_count() or 1)


def check_group_size(size):
    """``[measure] group_size``: None (one group per runtime and thread count) or a whole number >= 2."""
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 2):
        raise RecipeError(f"[measure] group_size must be a whole number >= 2 (the reference artifacts plus at least "
                          f"one other per sub-group), got {size!r}; leave it out to measure each runtime in one group")
    return size


def check_threads(values, what: str, allow_all: bool = True) -> list[str]:
    """Check thread counts (whole numbers in 1 .. 4 x cores, or ``"all"``); return notes for counts above
    the core count (allowed, but they measure contention as much as the model)."""
    cores, top = os.cpu_count() or 1, max_threads()
    notes = []
    for t in values:
        if allow_all and t == "all":
            continue
        if isinstance(t, bool) or not isinstance(t, int) or not 1 <= t <= top:
            extra = ' or "all" (every core)' if allow_all else ""
            raise RecipeError(f"{what} must be positive integers up to {top} ({THREADS_PER_CORE_MAX} x this "
                              f"machine's {cores} cores){extra}, got {t!r}")
        if t > cores:
            notes.append(f"{what} {t} is more than this machine's {cores} cores: the threads share cores, so the "
                         "latency measures contention as much as the model")
    return notes


def check_elements(what: str, values, types, example: str) -> None:
    """Every element of a list key has one of ``types`` (bools are not integers)."""
    for v in values:
        if isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            raise RecipeError(f"{what} must list {example}, got {v!r}")
        if not isinstance(v, types):
            raise RecipeError(f"{what} must list {example}, got {v!r}")


def check_option(owner: str, key: str, value, default, also_int: bool = False) -> None:
    """An architecture option against its default's type: integer options (width, depth, stages, ...) are
    whole numbers >= 1, list options non-empty lists of them (or one such number when ``also_int``: the
    signature says ``tuple[int, ...] | int``), floats finite numbers, flags true/false. ``owner`` names
    where the option came from (\"student 's'\", \"cnn\")."""
    what = f"{owner} {key}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise RecipeError(f"{what} = {value!r} is not allowed; use true or false")
    elif isinstance(default, int):
        check_value(what, value, POSITIVE_INT)
    elif isinstance(default, float):
        check_value(what, value, Num())
    elif isinstance(default, (tuple, list)):
        if also_int and POSITIVE_INT.ok(value):
            return
        if not isinstance(value, (list, tuple)) or not value or not all(POSITIVE_INT.ok(v) for v in value):
            raise RecipeError(f"{what} = {value!r} is not allowed; use a non-empty list of integers >= 1"
                              + (" or one integer >= 1" if also_int else ""))
    elif isinstance(default, str) and not isinstance(value, str):
        raise RecipeError(f"{what} = {value!r} is not allowed; use a string")


def check_arch_options(owner: str, cls, options: dict) -> None:
    """Check each option given to architecture ``cls`` against its constructor's defaults (check_option);
    unknown keys are left to the caller (it knows how to name them)."""
    import inspect

    params = inspect.signature(cls).parameters
    for key, value in options.items():
        p = params.get(key)
        if p is None or p.default is inspect.Parameter.empty:
            continue
        ann = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", repr(p.annotation))
        parts = [part.strip() for part in str(ann).split("|")]
        if p.default is None and "int" in parts and value is not None:  # e.g. in_features: int | None = None
            check_value(f"{owner} {key}", value, POSITIVE_INT)
        else:
            check_option(owner, key, value, p.default, also_int=len(parts) > 1 and "int" in parts)


def check_task_fit(recipe, task) -> None:
    """Checks that need the loaded task, run before the run directory is created: each few-N regime asks
    for at most as many labelled examples per class as the training split holds for its rarest class."""
    import numpy as np

    if not hasattr(task, "y_train"):  # text tasks: their family checks the regimes (pipeline/families/text_kinds.py)
        return
    y = np.asarray(task.y_train)
    counts = np.bincount(y.astype(int), minlength=task.num_classes) if y.size else np.zeros(1, int)
    rarest = int(counts.min())
    for reg in recipe.distill.regimes:
        if reg.startswith("few-") and int(reg[4:]) > rarest:
            raise RecipeError(f"[distill] regime {reg!r} asks for {reg[4:]} labelled examples per class, but the "
                              f"training split of {task.name} has only {rarest} of class {int(counts.argmin())}; "
                              f"use few-N with N <= {rarest}")


def thread_notes(recipe) -> list[str]:
    """Notes for thread counts above this machine's cores (the values were checked at load)."""
    notes = check_threads(recipe.measure.threads, "[measure] threads")
    notes += check_threads(recipe.mobile.threads, "[mobile] threads")
    return notes
