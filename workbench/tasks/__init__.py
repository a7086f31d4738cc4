"""Tasks: data splits + metric + input spec, named by spec strings.

    digits                        built-in: scikit-learn's handwritten digits (image_size=32)
    images:DIR?size=64&grey=true  an image folder, one sub-folder per class
    npz:FILE                      numpy arrays (x_train, y_train, ... or x, y)
    text:FILE.csv|.jsonl|DIR      text classification (CSV/JSONL, or a datasets.load_from_disk folder);
                                  options text=COLUMN&label=COLUMN
    corpus:pydoc | corpus:FILE    unlabelled text for sentence-embedding distillation
"""
from __future__ import annotations

from pathlib import Path

from ..errors import RecipeError
from ..registry import Registry
from ..specs import check_options, parse_spec
from .base import Task

TASKS: Registry = Registry("task")
SPEC_KINDS = ("images", "npz", "text", "corpus")


def _register_builtins() -> None:
    from . import digits

    TASKS.register("digits", digits.load_digits_task)


_register_builtins()


def get_task(name: str, **options) -> Task:
    return TASKS.get(name)(**options)


def _resolve(target: str, base_dir: Path | None) -> str:
    p = Path(target).expanduser()
    if not p.is_absolute() and not p.exists() and base_dir is not None and (base_dir / p).exists():
        return str(base_dir / p)
    return str(p)


def load_task(text: str, base_dir: Path | None = None):
    """The task named by a spec string (see the module docstring)."""
    spec = parse_spec(text, "task")
    if not spec.target:
        if spec.kind in TASKS:
            return get_task(spec.kind, **spec.options)
        raise RecipeError(f"unknown task {spec.kind!r}; built-in: {', '.join(TASKS.names())}; or a spec "
                          + ", ".join(f"{k}:..." for k in SPEC_KINDS))
    target = _resolve(spec.target, base_dir)
    if spec.kind == "images":
        from .arrays import load_image_folder_task

        check_options(spec, {"size", "grey"}, "images task")
        return load_image_folder_task(target, **spec.options)
    if spec.kind == "npz":
        from .arrays import load_npz_task

        check_options(spec, set(), "npz task")
        return load_npz_task(target)
    if spec.kind == "text":
        from .text_classification import load_text_classification

        return load_text_classification(target, **spec.options)
    if spec.kind == "corpus":
        from .text import load_text_corpus, pydoc_corpus

        if spec.target == "pydoc":
            return pydoc_corpus(**spec.options)
        return load_text_corpus(target, **spec.options)
    raise RecipeError(f"unknown task kind {spec.kind!r} in {text!r}; use one of: {', '.join(SPEC_KINDS)} "
                      f"or a built-in ({', '.join(TASKS.names())})")


__all__ = ["TASKS", "Task", "get_task", "load_task"]
