"""Runtime adapters: one module per runtime; built-ins registered explicitly.

Importing this package never imports a runtime (adapters import theirs inside methods).
"""
from __future__ import annotations

from ..errors import RuntimeUnavailable
from ..registry import Registry
from .base import InputSpec, Runtime, Session

RUNTIMES: Registry = Registry("runtime")


def _register_builtins() -> None:
    from .executorch import ExecutorchRuntime
    from .litert import LiteRTRuntime
    from .ort import OrtRuntime
    from .ort_mobile import OrtMobileRuntime

    RUNTIMES.register("ort", OrtRuntime())
    RUNTIMES.register("ort-mobile", OrtMobileRuntime())
    RUNTIMES.register("executorch", ExecutorchRuntime())
    RUNTIMES.register("litert", LiteRTRuntime())


_register_builtins()


def get_runtime(name: str) -> Runtime:
    """The adapter registered as ``name``; RecipeError if unknown, RuntimeUnavailable if not installed."""
    runtime = RUNTIMES.get(name)
    if not runtime.available():
        raise RuntimeUnavailable(f"runtime {name!r} is not installed; install it with: {runtime.install_hint}")
    return runtime


__all__ = ["RUNTIMES", "InputSpec", "Runtime", "Session", "get_runtime"]
