"""List scheduling of a graph of units on worker nodes and bench nodes: the critical-path model's engine.

Pure functions of plain data (node id -> seconds, node id -> dependencies, the set of bench-only nodes), so
the model can be checked on small hand-made graphs. Model: a worker node runs one unit at a time; a bench
node runs one measurement unit at a time and nothing else (as the Ray executor schedules them); a unit
starts when all its dependencies have finished and a node of its kind is free; among ready units the one
with the longest remaining path (its "bottom level") goes first (HLFET list scheduling).
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    """A predicted run: wall time, when each unit started and ended, and the lower bounds on the wall time
    (critical path, worker work / workers, bench work / bench nodes)."""

    wall: float
    start: dict
    end: dict
    critical_path: float
    worker_bound: float
    bench_bound: float


def bottom_levels(seconds: dict, deps: dict, order: list) -> dict:
    """Each node's longest path to the end of the graph, its own time included (``order``: every node after
    its dependencies)."""
    children: dict = {n: [] for n in order}
    for n in order:
        for d in deps[n]:
            children[d].append(n)
    level: dict = {}
    for n in reversed(order):
        level[n] = seconds[n] + max((level[c] for c in children[n]), default=0.0)
    return level


def critical_path(seconds: dict, deps: dict, order: list) -> list:
    """The node ids on the longest dependency chain, first to last (its length bounds any schedule)."""
    level = bottom_levels(seconds, deps, order)
    children: dict = {n: [] for n in order}
    for n in order:
        for d in deps[n]:
            children[d].append(n)
    roots = [n for n in order if not deps[n]]
    if not roots:
        return []
    node = max(roots, key=lambda n: level[n])
    path = [node]
    while children[node]:
        node = max(children[node], key=lambda c: level[c])
        path.append(node)
    return path


def list_schedule(seconds: dict, deps: dict, order: list, bench: set, workers: int, bench_nodes: int) -> Schedule:
    """Predict the wall time of the graph (``order``: node ids, every node after its dependencies; ``deps``:
    node id -> dependency ids; ``bench``: the node ids that run only on bench nodes) on ``workers`` worker
    nodes and ``bench_nodes`` bench nodes, by list scheduling with bottom-level priority."""
    if workers < 1 or (bench_nodes < 1 and any(n in bench for n in order)):
        raise ValueError(f"need at least one worker node and, for measurement units, one bench node "
                         f"(got {workers} workers, {bench_nodes} bench nodes)")
    level = bottom_levels(seconds, deps, order)
    rank = {n: i for i, n in enumerate(order)}
    children: dict = {n: [] for n in order}
    waiting = {n: len(deps[n]) for n in order}
    for n in order:
        for d in deps[n]:
            children[d].append(n)
    free = {"worker": workers, "bench": bench_nodes}
    ready: dict = {"worker": [], "bench": []}  # heaps of (-bottom level, plan order, node)

    def push(n):
        heapq.heappush(ready["bench" if n in bench else "worker"], (-level[n], rank[n], n))

    for n in order:
        if not waiting[n]:
            push(n)
    running: list = []  # heap of (end time, plan order, node)
    start, end, now = {}, {}, 0.0
    while len(end) < len(order):
        for pool in ("bench", "worker"):
            while free[pool] and ready[pool]:
                _, _, n = heapq.heappop(ready[pool])
                free[pool] -= 1
                start[n] = now
                heapq.heappush(running, (now + seconds[n], rank[n], n))
        t, _, n = heapq.heappop(running)
        now = t
        end[n] = t
        free["bench" if n in bench else "worker"] += 1
        for c in children[n]:
            waiting[c] -= 1
            if not waiting[c]:
                push(c)
    bench_work = sum(seconds[n] for n in order if n in bench)
    worker_work = sum(seconds[n] for n in order if n not in bench)
    return Schedule(max(end.values(), default=0.0), start, end, max(level.values(), default=0.0),
                    worker_work / workers, bench_work / bench_nodes if bench_nodes else 0.0)
