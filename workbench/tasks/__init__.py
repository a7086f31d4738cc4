"""Tasks: data splits + metric + input spec. Built-ins are registered explicitly."""
from __future__ import annotations

from ..registry import Registry
from .base import Task

TASKS: Registry = Registry("task")


def _register_builtins() -> None:
    from . import digits

    TASKS.register("digits", digits.load_digits_task)


_register_builtins()


def get_task(name: str, **options) -> Task:
    return TASKS.get(name)(**options)


__all__ = ["TASKS", "Task", "get_task"]
