"""Executors run a plan's graph of units: ``run(graph, ctx, progress) -> {node id: result}``.

``LocalExecutor`` runs every unit in this process, in dependency order, with one progress line per
unit. A distributed executor (units as Ray tasks, measurement groups alone on benchmark nodes) plugs in
behind the same small interface: it gets the same picklable (ctx, job, inputs) per node and calls
``workbench.pipeline.units.run_unit`` wherever the unit runs.
"""
from __future__ import annotations

import time
from typing import Protocol

from ..errors import WorkbenchError
from .family import RunContext
from .plan import Graph


class Executor(Protocol):
    """Runs every node of a graph after its dependencies; returns each node's result by node id."""

    def run(self, graph: Graph, ctx: RunContext, progress=None) -> dict: ...


class LocalExecutor:
    """Runs the units in this process, in the graph's order (every node after its dependencies)."""

    def run(self, graph: Graph, ctx: RunContext, progress=None) -> dict:
        """Run every node; a unit's inputs are its dependencies' results. A unit that raises stops the run
        with its error (units cache what they finished, so the next run resumes there). A unit that returns
        Skipped (a conversion its converter cannot make) is noted; the nodes that need it are Skipped too, and
        a measurement group measures the rest (``Graph.settled`` gives the graph of what ran)."""
        from .units import run_unit
        from .units.convert import Skipped

        results: dict = {}
        t0, started = time.perf_counter(), set()
        counts = graph.summary()["units"]
        for node in graph.nodes:
            missing = [d for d in node.deps if d not in results]
            if missing:
                raise WorkbenchError(f"plan error: {node.id} runs before {', '.join(missing)}")
            if progress is not None and node.unit not in started:  # one line as each kind of unit first runs
                progress.info(f"  {node.unit.replace('_', ' ')}: {counts[node.unit]} unit(s) in the plan")
                started.add(node.unit)
            gone = {d for d in node.deps if isinstance(results[d], Skipped)}  # a conversion its converter refused
            kept = node.without(gone)
            if kept is None:
                results[node.id] = Skipped(f"skipped {node.id}", cause=next(iter(sorted(gone))))
                continue
            results[node.id] = run_unit(node.unit, ctx, kept.job, {d: results[d] for d in kept.deps}, progress)
            if isinstance(results[node.id], Skipped) and progress is not None:
                progress.info(f"[yellow]note: {results[node.id].note}[/yellow]")
        if progress is not None:
            progress.info(f"  {len(graph.nodes)} units done in {time.perf_counter() - t0:.1f} s")
        return results
