"""The in-process executor: every unit in this process, in the graph's order."""
from __future__ import annotations

import time

from ...errors import WorkbenchError
from ..family import RunContext
from ..plan import Graph
from .timing import LOCAL_NODE, now, reused, unit_record, write_units


class LocalExecutor:
    """Runs the units in this process, in the graph's order (every node after its dependencies), and
    writes units.json (node "local"; ``cached``: the unit's result says it was reused from the run's cache,
    :func:`.timing.reused`, the rule of the Ray executor too)."""

    def run(self, graph: Graph, ctx: RunContext, progress=None) -> dict:
        """Run every node; a unit's inputs are its dependencies' results. A unit that raises stops the run
        with its error (units cache what they finished, so the next run resumes there). A unit that returns
        Skipped (a conversion its converter refused) is noted; the nodes that need it are Skipped too, and
        a measurement group measures the rest (``Graph.settled`` gives the graph of what ran)."""
        from ..units import run_unit
        from ..units.convert import Skipped

        results: dict = {}
        timings: list = []
        t0, started = time.perf_counter(), set()
        counts = graph.summary()["units"]
        try:
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
                start = now()
                results[node.id] = run_unit(node.unit, ctx, kept.job, {d: results[d] for d in kept.deps}, progress)
                timings.append(unit_record(node.id, node.unit, LOCAL_NODE, start, now(), reused(results[node.id])))
                if isinstance(results[node.id], Skipped) and progress is not None:
                    progress.info(f"[yellow]note: {results[node.id].note}[/yellow]")
        finally:
            if ctx is not None and timings:
                write_units(ctx.root, timings)
        if progress is not None:
            progress.info(f"  {len(graph.nodes)} units done in {time.perf_counter() - t0:.1f} s")
        return results
