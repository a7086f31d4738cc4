"""The Ray executor: every unit of the graph a Ray task, submitted as soon as its dependencies are done
(ready-set scheduling with ``ray.wait``; Ray places the tasks).

Training, export, quantization, conversion and evaluation units are CPU tasks (``num_cpus=1``). Units that
time something (.timing.BENCH_UNITS: an interleaved measurement group — one task, never split —, a memory
profile, ``auto``'s candidate search) ask for ``num_cpus=0, resources={"bench": 1}``: they run only on
nodes declaring a ``bench`` resource, one at a time per node, and a bench node started with ``--num-cpus=0``
gets nothing else. Workers write under the run directory themselves, so it must be on storage every node
sees at the same path; after each unit the driver checks that the unit's files are visible to it.

A unit that fails is reported with its node and error, the nodes that need it are skipped, the rest of the
graph goes on, and the run ends with :class:`~.timing.UnitsFailed` summarising the failures (what finished
is cached: the next run resumes). ``units.json`` records where and when each unit ran.
"""
from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

from ...errors import OutputError, RuntimeUnavailable, WorkbenchError
from ..family import RunContext
from ..plan import Graph
from .timing import (NODE_ENV, Failed, UnitsFailed, failure_line, failure_summary, kind_of, now, reused, short,
                     unit_record, write_units)

INSTALL = "pip install -e '.[cluster]'"
BENCH_START = "ray start --address={address} --num-cpus=0 --resources='{{\"bench\": 1}}'"


def import_ray():
    """The ``ray`` module; RuntimeUnavailable with the install command when the cluster extra is missing."""
    try:
        import ray
    except ImportError:
        raise RuntimeUnavailable(f"--backend ray needs Ray, which is not installed; install it with: {INSTALL}") from None
    return ray


def run_on_node(name: str, ctx: RunContext, job, inputs: dict, torch_threads: int | None = None):
    """The body of every Ray task: run unit ``name`` on this node; returns (result or Failed, node id,
    start, end). The node id is exported to the unit (``WORKBENCH_NODE``) so a measurement records where it
    was taken. ``torch_threads``: PyTorch's intra-op threads as in the driver (Ray workers start at 1), so
    training does the same arithmetic as the local executor and makes the same weights on the same machine."""
    import ray

    from ..units import run_unit

    node = ray.get_runtime_context().get_node_id()
    os.environ[NODE_ENV] = node
    if torch_threads and kind_of(name) == "cpu":
        import torch

        torch.set_num_threads(torch_threads)
    start = now()
    try:
        result = run_unit(name, ctx, job, inputs, None)
    except Exception as e:  # reported by the driver with the node; the rest of the graph goes on
        result = Failed("", node, failure_line(e))
    return result, node, start, now()


def task_options(unit: str) -> dict:
    """Ray resources of a unit: measurement units alone on a bench node, every other unit one CPU."""
    if kind_of(unit) == "bench":
        return {"num_cpus": 0, "resources": {"bench": 1}, "max_retries": 0}
    return {"num_cpus": 1, "max_retries": 0}


def bench_nodes(nodes: list[dict]) -> list[dict]:
    """The live nodes (``ray.nodes()`` entries) that declare a ``bench`` resource."""
    return [n for n in nodes if n.get("Alive") and (n.get("Resources") or {}).get("bench", 0) >= 1]


def check_cluster(nodes: list[dict], address: str) -> list[str]:
    """Refuse a cluster that cannot run the graph (no node declaring ``bench``, no CPU for the other units)
    with one line saying how to fix it; return notes (bench nodes that also offer CPUs to other units)."""
    bench = bench_nodes(nodes)
    # the driver runs with RAY_AUTH_MODE=token when the cluster uses token auth (ray.init sets it); Ray 2.60's
    # `ray start --address` joins such a cluster only with that variable set
    auth = "RAY_AUTH_MODE=token " if os.environ.get("RAY_AUTH_MODE", "").lower() == "token" else ""
    if not bench:
        raise WorkbenchError("the Ray cluster has no node declaring a `bench` resource, so nothing can be measured; "
                             "start one (nothing else is scheduled there) with: " + auth + BENCH_START.format(address=address))
    if not sum((n.get("Resources") or {}).get("CPU", 0) for n in nodes if n.get("Alive")):
        raise WorkbenchError("the Ray cluster offers no CPUs for training and export units; add a worker with "
                             f"`{auth}ray start --address={address}` (without --num-cpus=0)")
    return [f"bench node {short(n.get('NodeID'))} also offers {n['Resources']['CPU']:g} CPU(s): other units may run "
            f"there while it measures; start bench nodes with --num-cpus=0" for n in bench
            if (n.get("Resources") or {}).get("CPU", 0) > 0]


def invisible(root: str, result) -> list[str]:
    """Files a unit reported (an artifact, trained weights) that this machine cannot see under ``root``."""
    paths = [getattr(getattr(result, "artifact", None), "path", None), getattr(result, "weights", None)]
    return [p for p in paths if isinstance(p, str) and not (Path(root) / p).is_file()]


class RayExecutor:
    """Runs the graph on a Ray cluster: at ``address`` ("auto" or HOST:PORT), or on a Ray instance started
    here (one node declaring bench: 1, so measurements share this machine with training) when None. A
    connection made by the caller (``ray.is_initialized()``) is used as it is."""

    def __init__(self, address: str | None = None):
        import_ray()  # not installed: the install command before anything runs
        self.address = address

    def connect(self, ray, progress) -> bool:
        """Connect (or start a local instance); True when this executor made the connection (and closes it)."""
        if ray.is_initialized():
            own = False
        elif self.address is None:
            ray.init(resources={"bench": 1}, include_dashboard=False, logging_level=logging.WARNING,
                     log_to_driver=False)
            own = True
            if progress is not None:
                progress.info("[yellow]note: a local Ray instance on this machine: its one node declares bench, so "
                              "measurements share the machine with training units (use --address for a cluster "
                              "with a dedicated bench node)[/yellow]")
        else:
            try:
                ray.init(address=self.address, logging_level=logging.WARNING, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise WorkbenchError(f"cannot connect to a Ray cluster at {self.address} ({' '.join(str(e).split())[:200]}); "
                                     "start one with `ray start --head` and pass its HOST:PORT") from None
            except ray.exceptions.AuthenticationError as e:  # a RayError, not a RuntimeError
                raise WorkbenchError(f"the Ray cluster at {self.address} uses token authentication and this process has "
                                     f"no usable token ({' '.join(str(e).split())[:120]}); put the cluster's token in "
                                     "~/.ray/auth_token (or set RAY_AUTH_TOKEN) and re-run") from None
            own = True
        try:
            gcs = ray.get_runtime_context().gcs_address
            notes = check_cluster(ray.nodes(), gcs or self.address or "HOST:PORT")
            for note in notes if (self.address is not None or not own) else ():  # local: said above
                if progress is not None:
                    progress.info(f"[yellow]note: {note}[/yellow]")
        except BaseException:
            if own:
                ray.shutdown()
            raise
        return own

    def run(self, graph: Graph, ctx: RunContext, progress=None) -> dict:
        """Run every node as a Ray task once its dependencies are done; return the results by node id.
        Raises UnitsFailed (after running everything that did not need a failed unit) when units failed."""
        ray = import_ray()
        ctx = replace(ctx, root=str(Path(ctx.root).resolve()))  # workers do not share the driver's cwd
        own = self.connect(ray, progress)
        try:
            return _schedule(ray, graph, ctx, progress, _torch_threads())
        finally:
            if own:
                ray.shutdown()


def _torch_threads() -> int | None:
    """The driver's PyTorch intra-op thread count (None when torch is not imported here)."""
    import sys

    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def _schedule(ray, graph: Graph, ctx: RunContext, progress, torch_threads: int | None = None) -> dict:
    """Ready-set scheduling: submit every node whose dependencies are done, wait for any task, repeat."""
    from ..units.convert import Skipped

    task = ray.remote(run_on_node)
    results: dict = {}
    timings, failed = [], []
    waiting = list(graph.nodes)  # not yet submitted, in graph order
    inflight: dict = {}  # ObjectRef -> node
    total = len(graph.nodes)

    def say(msg: str) -> None:
        if progress is not None:
            progress.info(msg)

    def counts() -> str:
        run = [inflight[r].unit for r in inflight]
        q = [n.unit for n in waiting]
        by = lambda units, k: sum(kind_of(u) == k for u in units)  # noqa: E731
        return (f"{len(results)}/{total} done; with Ray (running, or queued for a free node) {len(run)} "
                f"(cpu {by(run, 'cpu')}, bench {by(run, 'bench')}); waiting for inputs {len(q)} "
                f"(cpu {by(q, 'cpu')}, bench {by(q, 'bench')})")

    def release() -> None:
        """Settle or submit every waiting node whose dependencies are all done (repeats: settling cascades)."""
        progressed = True
        while progressed:
            progressed = False
            for node in list(waiting):
                if not all(d in results for d in node.deps):
                    continue
                waiting.remove(node)
                progressed = True
                bad = [d for d in node.deps if isinstance(results[d], Failed)]
                if bad:
                    results[node.id] = Failed(node.id, None, f"not run: {bad[0]} failed", cause=bad[0])
                    failed.append(results[node.id])
                    continue
                gone = {d for d in node.deps if isinstance(results[d], Skipped)}
                kept = node.without(gone)
                if kept is None:
                    results[node.id] = Skipped(f"skipped {node.id}", cause=next(iter(sorted(gone))))
                    continue
                ref = task.options(**task_options(node.unit)).remote(node.unit, ctx, kept.job,
                                                                     {d: results[d] for d in kept.deps},
                                                                     torch_threads)
                inflight[ref] = node

    say(f"  ray: {total} units; cpu units on CPU workers, {sum(kind_of(n.unit) == 'bench' for n in graph.nodes)} "
        "measurement units on bench nodes, one at a time per node")
    try:
        release()
        while inflight:
            done, _ = ray.wait(list(inflight), num_returns=1)
            for ref in done:
                node = inflight.pop(ref)
                try:
                    out, where, start, end = ray.get(ref)
                except ray.exceptions.RayError as e:  # the worker died (killed, out of memory), the node left
                    out, where, start, end = Failed(node.id, None, failure_line(e)), None, now(), now()
                if isinstance(out, Failed):
                    out = replace(out, node_id=node.id)
                    failed.append(out)
                    say(f"[red]failed {node.id} on node {short(where)}: {out.error}[/red]")
                else:
                    lost = invisible(ctx.root, out)
                    if lost:
                        raise OutputError(f"{node.id} ran on node {short(where)} and wrote {lost[0]}, which this "
                                          f"machine cannot see under {ctx.root}: the run directory must be on storage "
                                          "shared by all nodes at the same path (e.g. NFS); pass --out on it")
                results[node.id] = out
                timings.append(unit_record(node.id, node.unit, where, start, end, reused(out)))
                if isinstance(out, Skipped):
                    say(f"[yellow]note: {out.note}[/yellow]")
                elif not isinstance(out, Failed):
                    say(f"  {node.id} on {short(where)} ({end - start:.1f} s) — {counts()}")
            release()
    finally:
        for ref in inflight:  # an error of the driver (a lost file): stop what is still running
            ray.cancel(ref)
        write_units(ctx.root, timings)
    if failed:
        raise UnitsFailed(failure_summary(failed, total))
    return results
