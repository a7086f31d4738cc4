"""The measurement harness: protocol, worker subprocess, statistics, memory, environment.

Public API (names resolved lazily, so ``import workbench.measure`` imports nothing heavy)::

    Protocol, measure_latency, measure_memory, measure_interleaved, profile_ops, compare,
    collect_environment, LatencyMeasurement, MemoryMeasurement, LatencyStats, Comparison, combine
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "Protocol": "protocol",
    "StabilityWarning": "protocol",
    "LatencyStats": "stats",
    "Comparison": "stats",
    "compare": "stats",
    "measure_latency": "harness",
    "measure_memory": "harness",
    "measure_interleaved": "interleave",
    "profile_ops": "profile",
    "combine": "harness",
    "LatencyMeasurement": "harness",
    "Phases": "harness",
    "Stability": "harness",
    "MemoryMeasurement": "memory",
    "collect_environment": "environment",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from .environment import collect_environment
    from .harness import LatencyMeasurement, Phases, Stability, combine, measure_latency, measure_memory
    from .interleave import measure_interleaved
    from .profile import profile_ops
    from .memory import MemoryMeasurement
    from .protocol import Protocol, StabilityWarning
    from .stats import Comparison, LatencyStats, compare


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
