"""The one ``[distill]`` schema: every key a recipe's ``[distill]`` table or a ``workbench distill``
job (``--config FILE`` and the command's options) may set, with its type, default and allowed range,
checked by ONE function, :func:`check_distill`, that both paths call.

A key means the same thing wherever it is accepted. Some keys only make sense in one place: a
recipe trains several seeds in several data regimes (``seeds``, ``regimes``, ``few_steps``), the
command trains one student (``seed``, ``few``, ``teacher``/``student``/``task``, feature losses,
``epochs`` and the optimiser settings); a key given where it does not apply is refused in one line
that says what to use there instead. Old names stay accepted with a deprecation note (``ALIASES``).

The recipe's ``DistillSection`` and the command's ``DistillJob`` take their defaults from here
(:func:`default`), so the two cannot drift apart (a test checks the field lists too).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..errors import RecipeError
from .rules import POSITIVE_INT, Num, check_value

RECIPE = "recipe"  # a recipe's [distill] table (workbench run)
COMMAND = "command"  # a workbench distill job (--config FILE and the command's options)
BOTH = frozenset({RECIPE, COMMAND})
SEED = Num(0, 2 ** 31 - 1, integer=True, hint="a random seed")
NON_NEGATIVE = Num(0, hint="a loss weight; 0 = off")
OPTIMIZERS = ("adamw", "sgd")  # the training engine's choices (distill/engine.py)
SCHEDULES = ("cosine", "linear", "constant")
# standard: a teacher into a smaller student; reverse: a smaller (or equal) teacher teaching a larger student;
# self: the student has the teacher's architecture (born-again networks: ``generations`` > 1 chains them)
MODES = ("standard", "reverse", "self")
_TYPE_WORDS = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
               "ints": "a list", "strs": "a list", "pairs": "STUDENT_LAYER:TEACHER_LAYER pairs"}


@dataclass(frozen=True)
class DistillKey:
    """One key of the ``[distill]`` schema: its value type (``int``, ``float``, ``str``, ``bool``, or
    the list kinds ``ints``/``strs``/``pairs``), default, range (``rule``, applied to each element of
    a list), allowed ``choices``, where it applies (``scope``), and ``instead``: what to use in the
    place where it does not apply (shown in the error)."""

    name: str
    kind: str
    default: Any
    scope: frozenset = BOTH
    rule: Num | None = None
    choices: tuple = ()
    instead: str = ""
    check: Callable | None = None  # extra check of the whole (normalised) value: check(label, value)
    command_default: Any = "same"  # the command's default where it differs from the recipe's

    def default_for(self, scope: str):
        """The default in ``scope``: the command's own where it differs (a budget in steps is unset there)."""
        return self.default if scope == RECIPE or self.command_default == "same" else self.command_default


def _check_regimes(label: str, regimes: tuple) -> None:
    for reg in regimes:
        if reg != "full" and not (reg.startswith("few-") and reg[4:].isdigit() and int(reg[4:]) > 0):
            raise RecipeError(f"{label}: regime {reg!r} is not valid; use \"full\" or \"few-N\" (N labelled "
                              "examples per class)")
    if "full" not in regimes:
        raise RecipeError(f"{label} must include \"full\": the deployed students are trained on the full split")


def _non_empty(label: str, values: tuple) -> None:
    if not values:
        raise RecipeError(f"{label} must not be empty, e.g. [0, 1, 2]")


_ONE_RUN = "workbench distill trains one student"
_RECIPE_ONLY = "a recipe names it elsewhere"
KEYS: tuple[DistillKey, ...] = (
    # what to distil (the command; a recipe has [teacher], [[students]] and [task])
    DistillKey("teacher", "str", "", frozenset({COMMAND}), instead="a recipe names its teacher in [teacher] source"),
    DistillKey("student", "str", "", frozenset({COMMAND}), instead="a recipe lists its students as [[students]] tables"),
    DistillKey("task", "str", "", frozenset({COMMAND}), instead="a recipe names its task in [task] name"),
    DistillKey("out", "str", "", frozenset({COMMAND}), instead="give `workbench run --out DIR`"),
    # the KD loss (both)
    DistillKey("temperature", "float", 4.0, rule=Num(0, lo_open=True)),
    DistillKey("alpha", "float", 0.9, rule=Num(0, 1, hint="weight of the KD term; 0 = labels only")),
    # what kind of distillation (both): see MODES
    DistillKey("mode", "str", "standard", choices=MODES),
    DistillKey("generations", "int", 1, frozenset({RECIPE}), Num(1, 10, integer=True, hint="born-again generations"),
               instead=f"{_ONE_RUN}: for the next born-again generation distil again with the trained student "
                       "as --teacher"),
    # feature and transformer losses (the command)
    DistillKey("hint", "float", 0.0, frozenset({COMMAND}), NON_NEGATIVE,
               instead="recipes distil with the output-level KD loss (temperature, alpha)"),
    DistillKey("hint_layers", "pairs", (), frozenset({COMMAND}), instead="recipes use no feature losses"),
    DistillKey("attention", "float", 0.0, frozenset({COMMAND}), NON_NEGATIVE,
               instead="recipes distil with the output-level KD loss (temperature, alpha)"),
    DistillKey("attention_layers", "pairs", (), frozenset({COMMAND}), instead="recipes use no feature losses"),
    DistillKey("embedding_cosine", "float", 1.0, frozenset({COMMAND}), NON_NEGATIVE,
               instead="sentence-embedding recipes take the text family's losses"),
    DistillKey("hidden_mse", "float", 1.0, frozenset({COMMAND}), NON_NEGATIVE,
               instead="transformer recipes take the text family's losses"),
    DistillKey("max_len", "int", 128, frozenset({COMMAND}), Num(8, integer=True, hint="tokens per text"),
               instead="transformer recipes take the text family's settings"),
    # runs and data
    DistillKey("seeds", "ints", (0, 1, 2), frozenset({RECIPE}), SEED, check=_non_empty,
               instead=f"{_ONE_RUN}: seed = N"),
    DistillKey("seed", "int", 0, frozenset({COMMAND}), SEED, instead="a recipe lists its seeds: seeds = [0, 1, 2]"),
    DistillKey("regimes", "strs", ("full", "few-5", "few-10"), frozenset({RECIPE}), check=_check_regimes,
               instead=f"{_ONE_RUN}: few = N (N labelled examples per class)"),
    DistillKey("few", "int", 0, frozenset({COMMAND}), Num(0, integer=True, hint="labelled examples per class; 0 = all"),
               instead='a recipe lists its data regimes: regimes = ["full", "few-N"]'),
    DistillKey("augment_shift", "int", 1, rule=Num(0, 4, integer=True, hint="pixels")),
    # the training budget: a recipe counts optimiser steps; the command epochs or steps (20 epochs when neither)
    DistillKey("steps", "int", 300, rule=POSITIVE_INT, command_default=None),
    DistillKey("few_steps", "int", 150, frozenset({RECIPE}), POSITIVE_INT,
               instead=f"{_ONE_RUN}: give its budget as epochs or steps"),
    DistillKey("epochs", "int", None, frozenset({COMMAND}), POSITIVE_INT,
               instead="a recipe's budget is in optimiser steps: steps, few_steps"),
    # the optimiser
    DistillKey("batch_size", "int", 64, rule=POSITIVE_INT),
    DistillKey("lr", "float", 3e-3, rule=Num(0, lo_open=True, hint="learning rate, e.g. 0.003")),
    DistillKey("weight_decay", "float", 5e-4, rule=Num(0)),
    DistillKey("optimizer", "str", "adamw", frozenset({COMMAND}), choices=OPTIMIZERS,
               instead="recipes train with adamw"),
    DistillKey("schedule", "str", "cosine", frozenset({COMMAND}), choices=SCHEDULES,
               instead="recipes train with a cosine schedule"),
    DistillKey("warmup_frac", "float", 0.05, frozenset({COMMAND}),
               Num(0, 1, hi_open=True, hint="share of the steps spent warming up"),
               instead="recipes train with the engine's default warm-up"),
    DistillKey("patience", "int", 5, frozenset({COMMAND}),
               Num(0, integer=True, hint="validations without gain (epochs with an epoch budget); 0 = no early stopping"),
               instead="recipes train for their full step budget"),
    # the command's files and extras
    DistillKey("cache", "str", "", frozenset({COMMAND}), instead="a run keeps its teacher cache in its run directory"),
    DistillKey("feature_cache_mb", "float", 1024.0, frozenset({COMMAND}), Num(0, hint="megabytes"),
               instead="recipes use no feature losses"),
    DistillKey("qat", "str", "", frozenset({COMMAND}),
               instead='a recipe quantizes its students with [quantize] students = ["static"]'),
    DistillKey("measure", "bool", True, frozenset({COMMAND}), instead="a recipe measures in [measure]"),
)
BY_NAME = {k.name: k for k in KEYS}
ALIASES = {"shift": "augment_shift"}  # old name -> key: accepted with a deprecation note


def default(name: str, scope: str = RECIPE):
    """The schema's default of key ``name`` in ``scope`` (the dataclasses of both paths take theirs from
    here). The command's budget keys default to None: the training engine then trains 20 epochs."""
    return BY_NAME[name].default_for(scope)


def keys_for(scope: str) -> list[str]:
    """The key names valid in ``scope`` (RECIPE or COMMAND), in schema order."""
    return [k.name for k in KEYS if scope in k.scope]


def section_label(key: str) -> str:
    """How an error names a key of a ``[distill]`` table (recipe or --config file)."""
    return f"[distill] {key}"


def option_label(key: str) -> str:
    """How an error names a key given as a `workbench distill` option."""
    return "--" + ("shift" if key == "augment_shift" else key).replace("_", "-")


def check_distill(values: dict, scope: str, label: Callable[[str], str] = section_label) -> tuple[dict, tuple[str, ...]]:
    """Validate ``[distill]`` values for ``scope`` (RECIPE or COMMAND): the ONE check both a recipe and a
    `workbench distill` job go through. Returns the normalised values (lists as tuples, numbers as
    their key's type, deprecated names renamed) and the deprecation notes to show. Raises a one-line
    RecipeError naming the key (``label(key)``) and what is allowed."""
    out: dict[str, Any] = {}
    notes = []
    for name, value in values.items():
        if name in ALIASES:
            new = ALIASES[name]
            if new in values:
                raise RecipeError(f"{label(name)} and {label(new)} are the same key; give only {new}")
            notes.append(f"{label(name)} is deprecated; call it {new} (same meaning)")
            name = new
        key = BY_NAME.get(name)
        if key is None:
            raise RecipeError(f"unknown key {name!r} in [distill]; valid keys: {', '.join(keys_for(scope))}")
        if scope not in key.scope:
            where = "workbench distill" if scope == RECIPE else "a recipe"
            raise RecipeError(f"{label(name)} applies to {where} only; {key.instead}")
        out[name] = _check_key(key, value, label(name))
    if out.get("generations", 1) > 1 and out.get("mode", "standard") != "self":
        raise RecipeError(f"{label('generations')} = {out['generations']} needs {label('mode')} = \"self\" "
                          "(born-again generations: each learns from the previous one); remove generations or "
                          "set mode = \"self\"")
    return out, tuple(notes)


def _check_key(key: DistillKey, value, what: str):
    if key.kind == "pairs":
        return _pairs(value, what)
    if key.kind in ("ints", "strs"):
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"{what} must be a list, got {value!r}")
        want, example = (int, "whole numbers such as [0, 1, 2]") if key.kind == "ints" else \
            (str, 'strings such as "full" or "few-5"')
        for v in value:
            if isinstance(v, bool) or not isinstance(v, want):
                raise RecipeError(f"{what} must list {example}, got {v!r}")
            if key.rule is not None:
                check_value(f"{what} element", v, key.rule)
        value = tuple(value)
    else:
        value = _scalar(key.kind, value, what)
        if key.rule is not None:
            check_value(what, value, key.rule)
        if key.choices and value not in key.choices:
            raise RecipeError(f"{what} = {value!r} is not allowed; use one of {', '.join(key.choices)}")
    if key.check is not None:
        key.check(what, value)
    return value


def _scalar(kind: str, value, what: str):
    ok = {"bool": isinstance(value, bool),
          "int": isinstance(value, int) and not isinstance(value, bool),
          "float": isinstance(value, (int, float)) and not isinstance(value, bool),
          "str": isinstance(value, str)}[kind]
    if not ok:
        raise RecipeError(f"{what} must be {_TYPE_WORDS[kind]}, got {value!r}")
    return float(value) if kind == "float" else value


def _pairs(value, what: str) -> tuple[tuple[str, str], ...]:
    """'s1:t1,s2:t2', ["s1:t1", ...] or [["s1", "t1"], ...] -> (("s1", "t1"), ...)."""
    if value is None or value == "" or value == ():
        return ()
    if not isinstance(value, (str, list, tuple)):
        raise RecipeError(f"{what} must be STUDENT_LAYER:TEACHER_LAYER pairs such as \"features.2:layer1\", "
                          f"got {value!r}")
    pairs = []
    for it in value.split(",") if isinstance(value, str) else value:
        if isinstance(it, str):
            s, sep, t = it.partition(":")
            if not sep or not s.strip() or not t.strip():
                raise RecipeError(f"{what}: {it!r} is not STUDENT_LAYER:TEACHER_LAYER")
            pairs.append((s.strip(), t.strip()))
        elif isinstance(it, (list, tuple)) and len(it) == 2 and all(isinstance(x, str) for x in it):
            pairs.append((it[0], it[1]))
        else:
            raise RecipeError(f"{what}: {it!r} is not a (student layer, teacher layer) pair")
    return tuple(pairs)
