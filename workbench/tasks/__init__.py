"""Tasks: data splits + metric + input spec, named by spec strings.

    digits                        built-in: scikit-learn's handwritten digits (image_size=32)
    images:DIR?size=64&grey=true  an image folder, one sub-folder per class
    npz:FILE                      numpy arrays (x_train, y_train, ... or x, y): images or flat features
    text:FILE.csv|.jsonl|DIR      text classification (CSV/JSONL, or a datasets.load_from_disk folder);
                                  options text=COLUMN&label=COLUMN
    corpus:pydoc | corpus:FILE    unlabelled text for sentence-embedding distillation
    graph:csbm | graph:FILE.npz  one labelled graph for node classification (workbench.tasks.graph)
    dense:pages | dense:FILE.npz|DIR  images with per-pixel text masks (text detection; workbench.tasks.dense)
    audio:kws | audio:DIR        keyword spotting on 16 kHz clips: the built-in espeak-ng set, or one
                                  sub-folder of .wav files per label (workbench.tasks.audio)

Every command turns a spec into a task with ONE function, :func:`load_task`. Built-in tasks are
registered by name in ``TASKS``; spec kinds (``KIND:TARGET``) in ``SPEC_KINDS``, each declaring
what it provides (``ARRAYS``: fixed-shape float inputs, ``LABELS``: class labels, ``TEXT``: raw
texts) so that a command which needs something a kind lacks says so in one line, before any data
is read, and names what to use instead. What a LOADED task is — image classification, text
classification, sentence embeddings — is looked up in ``TASK_TYPES`` (:func:`task_type`), never
by comparing class names: commands key their own registries by ``task_type(task).name``.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import RecipeError, TaskError
from ..registry import Registry
from ..specs import Spec, check_options, parse_spec
from .base import Task

ARRAYS = "arrays"  # a Task: fixed-shape float32 inputs (images or feature vectors), split into train/val/test
LABELS = "labels"  # integer class labels, accuracy as the metric
TEXT = "text"  # raw texts: a tokenizer (an hf: model) turns them into inputs
GRAPH = "graph"  # one graph: node features + edges (node classification; workbench.tasks.graph)
DENSE = "dense"  # images with per-pixel targets (text masks; workbench.tasks.dense)
_NEEDS_WORDS = {ARRAYS: "array inputs", LABELS: "class labels", TEXT: "texts", GRAPH: "a graph", DENSE: "pixel masks"}


@dataclass(frozen=True)
class TaskKind:
    """One kind of task spec, ``KIND:TARGET?options``: how to load it and what it provides.

    ``load(target, base_dir, **options)`` returns the task; ``options`` lists the option names the
    kind accepts (checked before loading); ``what`` is a short phrase for messages; ``use_with``
    says which command to use it with when a command cannot (shown in that command's error; ``{spec}``
    is replaced by the user's spec).
    """

    name: str
    load: Callable
    provides: frozenset
    options: frozenset
    what: str
    use_with: str = ""
    example: str = ""


@dataclass(frozen=True)
class TaskType:
    """What a loaded task is: ``name`` (the same names as the pipeline's task families), the task class
    as ``module:QualName`` (matched along the loaded task's class hierarchy, so no task module is
    imported to look one up), what it ``provides`` (ARRAYS / LABELS / TEXT) and a phrase for messages."""

    name: str
    cls: str
    provides: frozenset
    what: str


SPEC_KINDS: Registry = Registry("task spec kind")
TASKS: Registry = Registry("task")  # built-in tasks by name: loader(**options) -> Task
TASK_TYPES: Registry = Registry("task type")  # loaded task classes by type name: TaskType
CORPORA: Registry = Registry("built-in corpus")  # corpus:NAME without a file: loader(**options) -> TextCorpus


def _resolve(target: str, base_dir: Path | None) -> str:
    """A relative path as given when it exists, else relative to the recipe's folder."""
    p = Path(target).expanduser()
    if not p.is_absolute() and not p.exists() and base_dir is not None and (base_dir / p).exists():
        return str(base_dir / p)
    return str(p)


def _load_images(target: str, base_dir, **options):
    from .arrays import load_image_folder_task

    return load_image_folder_task(_resolve(target, base_dir), **options)


def _load_npz(target: str, base_dir, **options):
    from .arrays import load_npz_task

    return load_npz_task(_resolve(target, base_dir), **options)


def _load_text(target: str, base_dir, **options):
    from .text_classification import load_text_classification

    return load_text_classification(_resolve(target, base_dir), **options)


def _load_graph(target: str, base_dir, **options):
    from .graph import GRAPHS, load_graph

    return load_graph(target if target in GRAPHS else _resolve(target, base_dir), **options)


def _load_dense(target: str, base_dir, **options):
    from .dense import BUILTIN, load_dense

    return load_dense(target if target in BUILTIN else _resolve(target, base_dir), **options)


def _load_audio(target: str, base_dir, **options):
    from .audio import load_audio_task
    from .audio_kws import BUILTIN, load_kws_task

    return load_kws_task(**options) if target == BUILTIN else load_audio_task(_resolve(target, base_dir), **options)


def _pydoc_corpus(**options):
    from .text import pydoc_corpus

    return pydoc_corpus(**options)


def _load_corpus(target: str, base_dir, **options):
    from .text import load_text_corpus

    if target in CORPORA:
        return CORPORA.get(target)(**options)
    if "extra_train" in options:
        raise RecipeError(f"corpus: option extra_train applies to the built-in corpora ({', '.join(CORPORA.names())}) "
                          "only; leave it out for a file corpus")
    return load_text_corpus(_resolve(target, base_dir), **options)


_CORPUS_OPTIONS = {"seed", "val_frac", "test_frac", "min_words", "max_words", "max_train", "max_val", "max_test",
                   "extra_train"}
_HF_TEXT = "workbench distill --teacher \"hf:DIR?task=classification\" --student drop:every-other --task"


def _register_builtins() -> None:
    from . import digits

    TASKS.register("digits", digits.load_digits_task)
    CORPORA.register("pydoc", _pydoc_corpus)
    for t in (TaskType("image-classification", "workbench.tasks.base:Task", frozenset({ARRAYS, LABELS}),
                       "labelled fixed-shape arrays (images or feature vectors)"),
              TaskType("text-classification", "workbench.tasks.text_classification:TextClassificationTask",
                       frozenset({TEXT, LABELS}), "labelled texts"),
              TaskType("sentence-embedding", "workbench.tasks.text:TextCorpus", frozenset({TEXT}),
                       "unlabelled text for sentence embeddings"),
              TaskType("node-classification", "workbench.tasks.graph:GraphTask", frozenset({GRAPH, LABELS}),
                       "a labelled graph (node classification)"),
              TaskType("dense-text", "workbench.tasks.dense:DenseTask", frozenset({DENSE}),
                       "images with per-pixel text masks (dense prediction)"),
              TaskType("audio-classification", "workbench.tasks.audio:AudioTask", frozenset({ARRAYS, LABELS}),
                       "labelled 16 kHz audio clips (keyword spotting)")):
        TASK_TYPES.register(t.name, t)
    for kind in (
        TaskKind("images", _load_images, frozenset({ARRAYS, LABELS}), frozenset({"size", "grey"}),
                 "an image folder (image classification)", example="images:DIR?size=64&grey=true"),
        TaskKind("npz", _load_npz, frozenset({ARRAYS, LABELS}), frozenset(),
                 "numpy arrays with labels (image or feature classification)", example="npz:FILE.npz"),
        TaskKind("text", _load_text, frozenset({TEXT, LABELS}), frozenset({"text", "label", "split", "seed", "fractions"}),
                 "labelled texts (text classification, token inputs)",
                 use_with=f"fine-tune or distil a transformers classifier on it: {_HF_TEXT} '{{spec}}'",
                 example="text:FILE.csv?text=COL&label=COL"),
        TaskKind("corpus", _load_corpus, frozenset({TEXT}), frozenset(_CORPUS_OPTIONS),
                 "unlabelled text (no classes)",
                 use_with="use it for sentence-embedding distillation: workbench distill --teacher hf:DIR "
                          "--student drop:every-other --task '{spec}'",
                 example="corpus:pydoc or corpus:FILE.txt"),
        TaskKind("graph", _load_graph, frozenset({GRAPH, LABELS}),
                 frozenset({"nodes", "classes", "features", "signal", "degree", "homophily", "train_per_class",
                            "val_per_class", "seed"}),
                 "a labelled graph (node classification)",
                 use_with="distil a GNN into an MLP with a recipe: workbench run workbench/recipes/graph.toml",
                 example="graph:csbm or graph:FILE.npz"),
        TaskKind("dense", _load_dense, frozenset({DENSE}), frozenset({"size", "n_train", "n_val", "n_test", "seed"}),
                 "images with per-pixel text masks (dense prediction)",
                 use_with="distil a segmentation net with a recipe: workbench run workbench/recipes/dense.toml",
                 example="dense:pages or dense:FILE.npz|DIR"),
        TaskKind("audio", _load_audio, frozenset({ARRAYS, LABELS}),
                 frozenset({"words", "voices", "clips", "seed", "seconds", "resample"}),
                 "labelled 16 kHz audio clips (keyword spotting)",
                 use_with="train a keyword spotter with a recipe: workbench run workbench/recipes/kws.toml",
                 example="audio:kws or audio:DIR"),
    ):
        SPEC_KINDS.register(kind.name, kind)


_register_builtins()


def task_type(task) -> TaskType:
    """The registered TaskType of a loaded task (the most specific class registered wins); a one-line
    TaskError for an object no task type covers."""
    by_class = {TASK_TYPES.get(n).cls: TASK_TYPES.get(n) for n in TASK_TYPES}
    for klass in type(task).__mro__:
        found = by_class.get(f"{klass.__module__}:{klass.__qualname__}")
        if found is not None:
            return found
    raise TaskError(f"{type(task).__name__} is not a registered task type; registered: {', '.join(TASK_TYPES.names())}")


def get_task(name: str, **options) -> Task:
    """The built-in task registered as ``name`` (e.g. ``digits``), built with ``options``."""
    return TASKS.get(name)(**options)


def spec_help() -> str:
    """The task specs every command accepts, for help texts and error messages."""
    return ", ".join([*TASKS.names(), *(SPEC_KINDS.get(k).example or f"{k}:..." for k in SPEC_KINDS)])


def check_task_spec(text: str, *, command: str | None = None, needs=(), hint: str | None = None) -> Spec:
    """Parse a task spec and check, without reading any data, that its kind exists, its options are
    valid and it provides what ``command`` ``needs`` (a set of ARRAYS / LABELS / TEXT).

    ``hint`` replaces the kind's own advice in the error when the kind lacks something."""
    spec = parse_spec(text, "task")
    if not spec.target:
        if spec.kind not in TASKS:
            raise RecipeError(f"unknown task {spec.kind!r}; built-in: {', '.join(TASKS.names())}; or a spec: "
                              + ", ".join(SPEC_KINDS.get(k).example or f"{k}:..." for k in SPEC_KINDS))
        return spec
    if spec.kind not in SPEC_KINDS:
        raise RecipeError(f"unknown task kind {spec.kind!r} in {text!r}; use one of: {spec_help()}")
    kind = SPEC_KINDS.get(spec.kind)
    check_options(spec, set(kind.options), f"{spec.kind} task")
    missing = [n for n in needs if n not in kind.provides]
    if missing:
        raise TaskError(_cannot_use(command, needs, f"{text} is {kind.what}", hint or kind.use_with.format(spec=text)))
    return spec


def _cannot_use(command: str | None, needs, what: str, instead: str) -> str:
    who = f"workbench {command}" if command else "this command"
    wants = " and ".join(_NEEDS_WORDS.get(n, n) for n in sorted(needs))
    return f"{who} needs a task with {wants}; {what}" + (f": {instead}" if instead else "")


def load_task(text: str, base_dir: Path | None = None, *, command: str | None = None, needs=(),
              hint: str | None = None, builtin_options: dict | None = None):
    """The task named by a spec string (see the module docstring): the one way every command
    (run, train, distill, quantize, bench) turns ``--task`` / ``[task] name`` into a task.

    ``base_dir`` resolves relative paths (a recipe's folder); ``command`` and ``needs`` make a
    kind the command cannot use fail with one line saying what to use instead (``hint`` overrides
    the kind's advice); ``builtin_options`` are defaults for a built-in task's options that its
    loader accepts and the spec does not set (a recipe's ``image_size``)."""
    spec = check_task_spec(text, command=command, needs=needs, hint=hint)
    if not spec.target:
        loader = TASKS.get(spec.kind)
        options = {**_accepted(loader, builtin_options or {}), **spec.options}
        task = _call(loader, spec, options)
        kind = task_type(task)
        if set(needs) - kind.provides:
            raise TaskError(_cannot_use(command, needs, f"built-in task {spec.kind} is {kind.what}", hint or ""))
        return task
    return _call(SPEC_KINDS.get(spec.kind).load, spec, spec.options, spec.target, base_dir)


def _accepted(fn, options: dict) -> dict:
    """The subset of ``options`` that ``fn`` takes as keyword arguments."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return dict(options)
    return {k: v for k, v in options.items() if k in params}


def _call(loader, spec: Spec, options: dict, *args):
    try:
        return loader(*args, **options)
    except TypeError as e:  # a wrong option name or type reached the loader
        if "unexpected keyword argument" not in str(e):
            raise
        valid = [n for n, p in inspect.signature(loader).parameters.items() if p.kind is p.KEYWORD_ONLY
                 or (p.kind is p.POSITIONAL_OR_KEYWORD and p.default is not p.empty)]
        raise RecipeError(f"task {spec}: {str(e).split(') ')[-1]}; valid options: {', '.join(valid) or '(none)'}") from None


__all__ = ["ARRAYS", "DENSE", "GRAPH", "LABELS", "SPEC_KINDS", "TASKS", "TASK_TYPES", "TEXT", "Task", "TaskKind", "TaskType",
           "check_task_spec", "get_task", "load_task", "spec_help", "task_type"]
