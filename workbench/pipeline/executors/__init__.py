"""Executors run a plan's graph of units: ``run(graph, ctx, progress) -> {node id: result}``.

    local   LocalExecutor: every unit in this process, in the graph's order (the default)
    ray     RayExecutor: every unit a Ray task on a cluster; measurement units only on nodes that declare a
            ``bench`` resource, one at a time per node, nothing else scheduled there

Both get the same picklable (ctx, job, inputs) per node, call ``workbench.pipeline.units.run_unit`` wherever
the unit runs, and write ``units.json`` to the run directory: per unit its node, start, end, seconds and
whether it reused its cached result (see .timing). Backends are registered in :data:`EXECUTORS` by name;
``executor_for(name, address)`` makes one (``--backend`` / ``--address`` of ``workbench run``).
"""
from __future__ import annotations

from typing import Protocol

from ...registry import Registry
from ..family import RunContext
from ..plan import Graph
from .local import LocalExecutor


class Executor(Protocol):
    """Runs every node of a graph after its dependencies; returns each node's result by node id."""

    def run(self, graph: Graph, ctx: RunContext, progress=None) -> dict: ...


def _local(address: str | None) -> LocalExecutor:
    """The in-process executor (``address`` must be None: there is no cluster to reach)."""
    from ...errors import RecipeError

    if address is not None:
        raise RecipeError("--address needs --backend ray (the local backend runs every unit in this process)")
    return LocalExecutor()


def _ray(address: str | None):
    """The Ray executor (imports nothing of Ray until it runs)."""
    from .ray import RayExecutor

    return RayExecutor(address)


EXECUTORS: Registry = Registry("backend")
EXECUTORS.register("local", _local)
EXECUTORS.register("ray", _ray)


def executor_for(backend: str = "local", address: str | None = None) -> Executor:
    """The executor of ``backend`` (a name in :data:`EXECUTORS`), for the cluster at ``address`` (ray only)."""
    return EXECUTORS.get(backend)(address)


__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "executor_for"]
