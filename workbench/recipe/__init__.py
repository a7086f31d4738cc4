"""Recipe: everything a run needs. Validated, frozen, versioned; TOML in and out.

Every section is a frozen dataclass; unknown keys and wrong types raise a RecipeError that names
the key and lists the valid ones; values outside their range (workbench.recipe.rules) and names that
could not be file names (workbench.fileio.check_name) are refused the same way, before any work.
"""
from __future__ import annotations

import dataclasses
import inspect
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..errors import RecipeError
from ..fileio import check_name
from .budget import BudgetSection, parse_budget_section
from .train import TrainSection, parse_train_section
from .distill_keys import RECIPE, check_distill, default
from .rules import check_arch_options, check_elements, check_group_size, check_section, check_threads

SCHEMA_VERSION = 1
BUILTIN_DIR = Path(__file__).parent.parent / "recipes"


@dataclass(frozen=True)
class TaskSection:
    """A recipe's ``[task]``: the task spec (``name``: digits, images:DIR, npz:FILE, ...) and the built-in
    image task's size."""

    name: str = "digits"
    image_size: int = 32


@dataclass(frozen=True)
class TeacherSection:
    """A recipe's ``[teacher]``: the teacher's model source spec and, optionally, its weights file."""

    source: str = "zoo:digits-resnet"
    weights: str | None = None  # default: the zoo model's file in models/


@dataclass(frozen=True)
class StudentSpec:
    """One ``[[students]]`` table: the student's name (used in artifact ids and file names), its
    architecture (a registered arch or a model source spec) and the architecture's options."""

    name: str
    arch: str = "cnn"
    options: tuple = ()  # sorted (key, value) pairs passed to the architecture (width, depth, ...)

    def to_toml(self) -> dict:
        """The table as written back into a recipe file."""
        return {"name": self.name, "arch": self.arch, **dict(self.options)}


@dataclass(frozen=True)
class DistillSection:
    """A recipe's ``[distill]`` table: how every student is trained (the KD loss, seeds, data regimes,
    the step budget, the optimiser, augmentation). Keys, defaults and ranges come from the one
    ``[distill]`` schema that `workbench distill` shares (workbench.recipe.distill_keys)."""

    temperature: float = default("temperature")
    alpha: float = default("alpha")  # weight of the soft-target term
    seeds: tuple = default("seeds")
    regimes: tuple = default("regimes")  # full training split; few-N = N labelled images per class
    steps: int = default("steps")  # optimiser steps, full-data regime (same budget for both twins)
    few_steps: int = default("few_steps")  # optimiser steps, few-label regimes
    batch_size: int = default("batch_size")
    lr: float = default("lr")
    weight_decay: float = default("weight_decay")
    augment_shift: int = default("augment_shift")  # random integer shifts of up to N pixels (discrete views -> exact teacher cache)
    mode: str = default("mode")  # standard | reverse (smaller teacher, larger student) | self (born-again)
    generations: int = default("generations")  # self: born-again generations, each taught by the previous one


@dataclass(frozen=True)
class QuantizeSection:
    """A recipe's ``[quantize]``: the methods applied to the teacher and to every KD student (or "auto"),
    the calibration sample count and ``max_drop``: 100 x the largest metric drop vs the fp32 source that ``auto``
    keeps and the report tolerates (accuracy: points; cosine: max_drop / 100, so 0.5 = 0.005; [budget] differs)."""

    # method specs ("static", "static?calibration=entropy", ...) or "auto" (measure candidates, keep the best)
    teacher: tuple = ("static", "dynamic", "fp16")
    students: tuple = ("static",)  # applied to the KD student of every size
    calib_samples: int = 256
    max_drop: float = 0.5  # 100 x the allowed metric drop vs fp32: accuracy POINTS; cosine: max_drop/100


@dataclass(frozen=True)
class ExportSection:
    """A recipe's ``[export]``: the parity tolerances every export is checked against and the accuracy
    gap (fp32 artifact vs its PyTorch model) the report flags."""

    parity_atol: float = 1e-4
    parity_rtol: float = 1e-3
    parity_samples: int = 64
    # accuracy of an fp32 artifact through its runtime may differ from its PyTorch model's by at most this
    # many points before the report flags the gap (quantized artifacts: [quantize] max_drop)
    accuracy_tolerance: float = 0.5


@dataclass(frozen=True)
class MeasureSection:
    """A recipe's ``[measure]``: runtimes, thread counts and the harness protocol (warm-up, run counts
    and time limits, target CI, memory runs, interleaved rounds)."""

    runtimes: tuple = ("ort",)
    threads: tuple = (1, "all")  # "all" = every core of this machine
    warmup_runs: int = 10
    warmup_s: float = 0.5
    min_runs: int = 50
    min_s: float = 2.0
    max_s: float = 10.0
    target_ci: float = 0.02
    memory_runs: int = 20
    timeout_s: float = 120.0
    rounds: int = 3  # interleaved rounds: every artifact measured once per round, fresh process, shuffled order
    group_size: int | None = None  # split larger groups into sub-groups, each with the references (None: one group)

    def resolved_threads(self) -> tuple[int, ...]:
        """The thread counts as integers ("all" = this machine's cores), without repeats, in order."""
        out = []
        for t in self.threads:
            n = (os.cpu_count() or 1) if t == "all" else int(t)
            if n not in out:
                out.append(n)
        return tuple(out)


MOBILE_RUNTIMES = ("ort-mobile", "executorch", "litert")
LITERT_INT8 = ("dynamic", "full")


@dataclass(frozen=True)
class MobileSection:
    """What the mobile runtimes (ort-mobile, executorch, litert) get: see workbench.pipeline.mobile."""

    threads: tuple = ()  # thread counts for the mobile runtimes; empty = [measure] threads
    students: tuple = ()  # KD students that get mobile artifacts; empty = every student
    int8: bool = True  # also int8: ORT static QDQ as .ort, ExecuTorch PT2E (XNNPACK), LiteRT (litert_int8)
    litert_int8: tuple = ("dynamic",)  # "dynamic" (dynamic-range) and/or "full" (full integer, int8 I/O)


@dataclass(frozen=True)
class Recipe:
    """Everything a `workbench run` needs, validated: name, task, teacher, students and every section;
    plus where it was loaded from (relative paths resolve against ``base_dir``)."""

    name: str = "digits-demo"
    schema_version: int = SCHEMA_VERSION
    task: TaskSection = field(default_factory=TaskSection)
    teacher: TeacherSection = field(default_factory=TeacherSection)
    students: tuple = ()
    distill: DistillSection = field(default_factory=DistillSection)
    quantize: QuantizeSection = field(default_factory=QuantizeSection)
    export: ExportSection = field(default_factory=ExportSection)
    measure: MeasureSection = field(default_factory=MeasureSection)
    mobile: MobileSection = field(default_factory=MobileSection)
    budget: BudgetSection = field(default_factory=BudgetSection)  # the report's recommendation
    train: TrainSection = field(default_factory=TrainSection)  # where students train (no content key sees it)
    base_dir: str | None = field(default=None, compare=False)  # folder of the recipe file (resolves relative paths)
    builtin: bool = field(default=False, compare=False)  # the built-in demo: missing runtimes are skipped, not errors
    quick_mode: bool = field(default=False, compare=False)  # made by quick()
    quick_skipped: tuple = field(default=(), compare=False)  # runtimes quick() left out

    def threads_for(self, runtime: str) -> tuple[int, ...]:
        """Resolved thread counts a runtime is measured at ([mobile] threads for the mobile runtimes)."""
        if runtime in MOBILE_RUNTIMES and self.mobile.threads:
            return replace(self.measure, threads=self.mobile.threads).resolved_threads()
        return self.measure.resolved_threads()

    def mobile_students(self) -> tuple:
        """The students that get mobile-runtime artifacts ([mobile] students; empty = all)."""
        return tuple(s for s in self.students if not self.mobile.students or s.name in self.mobile.students)

    def to_dict(self) -> dict:
        """The recipe as TOML-ready data (loads back into an equal recipe)."""
        d: dict[str, Any] = {"schema_version": self.schema_version, "name": self.name}
        for sec in ("task", "teacher", "distill", "quantize", "export", "measure", "mobile", "budget"):
            d[sec] = {k: (list(v) if isinstance(v, tuple) else v)
                      for k, v in dataclasses.asdict(getattr(self, sec)).items() if v is not None}
        d["students"] = [s.to_toml() for s in self.students]
        if self.train != TrainSection():  # written only when set: a default recipe's files stay as they were
            d["train"] = dataclasses.asdict(self.train)
        return d

    def to_toml(self) -> str:
        """The recipe as TOML text (the run directory keeps it; units reload it from there)."""
        import tomli_w

        return tomli_w.dumps(self.to_dict())

    def quick(self) -> "Recipe":
        """A smaller budget for a fast look (`--quick`, under 2 minutes): 2 seeds, fewer steps, 1 thread,
        shorter measurements, ONNX Runtime only (the mobile runtimes' exports and fresh-process start-up,
        ExecuTorch's ~5 s each, would double it); the full run measures every runtime."""
        return replace(
            self, quick_mode=True, quick_skipped=tuple(rt for rt in self.measure.runtimes if rt != "ort"),
            mobile=replace(self.mobile, threads=(1,), students=tuple(s.name for s in self.mobile_students()[:1]),
                           int8=False),
            distill=replace(self.distill, seeds=tuple(self.distill.seeds[:2]) or (0, 1),
                            regimes=tuple(r for r in self.distill.regimes if r in ("full", "few-5")) or ("full",),
                            steps=min(self.distill.steps, 150), few_steps=min(self.distill.few_steps, 100)),
            quantize=replace(self.quantize, calib_samples=min(self.quantize.calib_samples, 64)),
            measure=replace(self.measure, runtimes=("ort",), threads=(1,), warmup_s=min(self.measure.warmup_s, 0.2),
                            min_runs=min(self.measure.min_runs, 30), min_s=min(self.measure.min_s, 0.5), rounds=min(self.measure.rounds, 2),
                            max_s=min(self.measure.max_s, 2.0), memory_runs=min(self.measure.memory_runs, 10)),
        )


SECTIONS = {"task": TaskSection, "teacher": TeacherSection, "distill": DistillSection,
            "quantize": QuantizeSection, "export": ExportSection, "measure": MeasureSection,
            "mobile": MobileSection, "budget": BudgetSection, "train": TrainSection}


def load_recipe(path: str | Path | None = None) -> Recipe:
    """Load and validate a recipe file; None gives the built-in demo recipe."""
    path = Path(path) if path is not None else BUILTIN_DIR / "demo.toml"
    if not path.is_file():
        raise RecipeError(f"recipe file {path} not found; give a path to a .toml recipe or omit it for the demo")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise RecipeError(f"recipe {path.name} is not valid TOML: {e}") from None
    recipe = recipe_from_dict(data, base_dir=path.resolve().parent)
    return replace(recipe, builtin=path.resolve().parent == BUILTIN_DIR.resolve())


def recipe_from_dict(data: dict, base_dir: Path | None = None) -> Recipe:
    """Validate parsed recipe data into a Recipe (one-line RecipeError naming the bad key);
    ``base_dir`` is the folder relative paths in it resolve against."""
    data = dict(data)
    version = data.pop("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise RecipeError(f"recipe schema_version {version!r} is not supported; this workbench reads version {SCHEMA_VERSION}")
    valid = ["schema_version", "name", "students", *SECTIONS]
    for key in data:
        if key not in valid:
            raise RecipeError(f"unknown recipe key {key!r}; valid keys: {', '.join(valid)}")
    kwargs: dict[str, Any] = {"base_dir": str(base_dir) if base_dir else None}
    if "name" in data:  # the default run directory is runs/<name>: never a path of its own
        kwargs["name"] = check_name(_check_type("recipe name", data["name"], str), "recipe name")
    for sec, cls in SECTIONS.items():
        if sec in data:
            if not isinstance(data[sec], dict):
                raise RecipeError(f"[{sec}] must be a table of keys, got {type(data[sec]).__name__}")
            kwargs[sec] = _PARSERS.get(sec, _section)(sec, cls, data[sec])
            check_section(sec, kwargs[sec])  # ranges first: cheap, before the architectures are imported
    students = data.get("students", [])
    if not isinstance(students, list) or not students:
        raise RecipeError("the recipe needs at least one [[students]] table (name, arch, and architecture options)")
    for i, s in enumerate(students):  # names become file names of every student artifact
        if isinstance(s, dict) and "name" in s:
            check_name(_check_type("student name", s["name"], str), "student name")
    kwargs["students"] = tuple(_student(i, s) for i, s in enumerate(students))
    names = [s.name for s in kwargs["students"]]
    if len(set(names)) != len(names):
        raise RecipeError(f"student names must be unique, got {names}")
    recipe = Recipe(**kwargs)
    _check_values(recipe)
    return recipe


def _section(name: str, cls, values: dict):
    valid = {f.name: f for f in fields(cls)}
    out = {}
    for key, value in values.items():
        if key not in valid:
            raise RecipeError(f"unknown key {key!r} in [{name}]; valid keys: {', '.join(valid)}")
        default = valid[key].default
        if isinstance(default, tuple):
            if not isinstance(value, list):
                raise RecipeError(f"[{name}] {key} must be a list, got {value!r}")
            value = tuple(value)
        elif isinstance(default, bool):
            value = _check_type(f"[{name}] {key}", value, bool)
        elif isinstance(default, float):
            value = float(_check_type(f"[{name}] {key}", value, (int, float)))
        elif isinstance(default, int):
            value = _check_type(f"[{name}] {key}", value, int)
        elif isinstance(default, str) or default is None:
            value = _check_type(f"[{name}] {key}", value, str)
        out[key] = value
    return cls(**out)


def _distill_section(name: str, cls, values: dict) -> DistillSection:
    """The recipe's [distill] table through the one [distill] check (deprecated names noted on stderr)."""
    import sys

    checked, notes = check_distill(values, RECIPE)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return cls(**checked)


def _measure_section(name: str, cls, values: dict) -> MeasureSection:
    """The recipe's [measure] table: the generic keys, and ``group_size`` (rules.check_group_size)."""
    rest = {k: v for k, v in values.items() if k != "group_size"}
    return replace(_section(name, cls, rest), group_size=check_group_size(values.get("group_size")))


_PARSERS = {"distill": _distill_section, "budget": parse_budget_section, "measure": _measure_section,
            "train": parse_train_section}  # sections with their own schema; the others: _section


def _student(i: int, s) -> StudentSpec:
    from ..zoo import ARCHS

    if not isinstance(s, dict) or "name" not in s:
        raise RecipeError(f"[[students]] #{i + 1} needs a name, e.g. name = \"cnn-s\"")
    s = dict(s)
    name = _check_type("student name", s.pop("name"), str)
    arch = _check_type(f"student {name} arch", s.pop("arch", "cnn"), str)
    if ":" in arch:  # a model source spec (torchvision:..., py:..., zoo:...): options live in the spec
        if s:
            raise RecipeError(f"student {name!r}: with a source spec as arch ({arch}) put options in the spec "
                              f"(e.g. ?width_mult=0.5), not as keys ({', '.join(s)})")
        from ..specs import parse_spec

        parse_spec(arch, f"student {name} arch")
        return StudentSpec(name=name, arch=arch, options=())
    params = [p for p in inspect.signature(ARCHS.get(arch)).parameters if p not in ("self", "in_channels", "num_classes")]
    for key in s:
        if key not in params:
            raise RecipeError(f"unknown key {key!r} in student {name!r}; valid keys: name, arch, {', '.join(params)}")
    check_arch_options(f"student {name!r}", ARCHS.get(arch), s)
    return StudentSpec(name=name, arch=arch, options=tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                                                                  for k, v in s.items())))


def _check_type(what: str, value, types):
    if isinstance(value, bool) and types is not bool and bool not in (types if isinstance(types, tuple) else (types,)):
        raise RecipeError(f"{what} must be {_tname(types)}, got {value!r}")
    if not isinstance(value, types):
        raise RecipeError(f"{what} must be {_tname(types)}, got {value!r}")
    return value


def _tname(types) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join({"str": "a string", "int": "an integer", "float": "a number", "bool": "true/false"}.get(t.__name__, t.__name__) for t in types)


def _check_values(r: Recipe) -> None:
    from ..quantize import parse_method
    from ..quantize.auto import AUTO, quantized_suffix
    from ..runtimes import RUNTIMES
    from ..tasks import check_task_spec

    # kind and options now; the data is read when the run loads it, and the loaded task chooses the task
    # family that runs it (images, text classification, sentence embeddings: workbench.pipeline.family_of)
    check_task_spec(r.task.name, command="run")
    for what, values, types, example in (
            ("[measure] runtimes", r.measure.runtimes, str, 'runtime names such as "ort"'),
            ("[mobile] students", r.mobile.students, str, "student names"),
            ("[mobile] litert_int8", r.mobile.litert_int8, str, '"dynamic" and/or "full"')):
        check_elements(what, values, types, example)
    for what, specs in (("teacher", r.quantize.teacher), ("students", r.quantize.students)):
        seen: dict[str, str] = {}
        for m in specs:
            if not isinstance(m, str):
                raise RecipeError(f"[quantize] {what} must list method specs as strings, e.g. \"static\", "
                                  f"\"static?calibration=entropy\" or \"auto\"; got {m!r}")
            suffix = "auto" if m.strip() == AUTO else quantized_suffix(parse_method(m))
            if suffix in seen:
                raise RecipeError(f"[quantize] {what} lists {seen[suffix]!r} and {m!r}, which are the same method; "
                                  "list it once")
            seen[suffix] = m
    for rt in r.measure.runtimes:
        RUNTIMES.get(rt)
    checks = [(r.quantize.calib_samples > 0, "[quantize] calib_samples must be > 0"),
              (0 <= r.quantize.max_drop <= 100, "[quantize] max_drop is 100 x the allowed metric drop, between 0 "
                                                 "and 100 (accuracy: points, 0.5 = half a point; cosine: 0.5 = a "
                                                 "cosine drop of 0.005)"),
              (r.measure.min_runs > 0 and r.measure.min_s >= 0 and r.measure.max_s >= r.measure.min_s,
               "[measure] needs min_runs > 0 and 0 <= min_s <= max_s"),
              (0 < r.measure.target_ci < 1, "[measure] target_ci must be a fraction such as 0.02"),
              (1 <= r.measure.rounds <= 50, "[measure] rounds must be between 1 and 50")]
    for ok, msg in checks:
        if not ok:
            raise RecipeError(msg)
    if not r.measure.threads:
        raise RecipeError('[measure] threads must list at least one thread count, e.g. [1, "all"]')
    for sec, threads in (("measure", r.measure.threads), ("mobile", r.mobile.threads)):
        check_threads(threads, f"[{sec}] threads")
    names = [s.name for s in r.students]
    for s in r.mobile.students:
        if s not in names:
            raise RecipeError(f"[mobile] students names {s!r}, which is not a student of this recipe; "
                              f"students: {', '.join(names)}")
    for m in r.mobile.litert_int8:
        if m not in LITERT_INT8:
            raise RecipeError(f"[mobile] litert_int8 lists {m!r}; use \"dynamic\" (dynamic-range) and/or \"full\" "
                              "(full integer)")
    if r.export.accuracy_tolerance < 0:
        raise RecipeError("[export] accuracy_tolerance is in accuracy points and must be >= 0 (0.5 = half a point)")
