"""Executors run a plan's graph of units (kept as the import path of earlier code; they live in
workbench.pipeline.executors: the in-process LocalExecutor and the RayExecutor, registered by backend)."""
from __future__ import annotations

from .executors import EXECUTORS, Executor, LocalExecutor, executor_for

__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "executor_for"]
