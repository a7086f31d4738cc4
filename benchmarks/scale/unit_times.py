"""Measured unit times of a real demo run: the input of the critical-path model (critical_path.py).

Runs the demo recipe (``--quick`` or full) into a fresh run directory through the pipeline's own runner
and local executor, with a timing wrapper around ``workbench.pipeline.units.run_unit`` (the executor is
not edited: the wrapper replaces the module attribute the executor looks up when it runs). Writes a JSON
file with one row per unit in the shape of the executors' ``units.json`` (id, unit, node, start, end,
seconds, cached), the machine and the load average before and after.

    .venv/bin/python benchmarks/scale/unit_times.py [--quick] [--out runs/scale-demo] \
        [--json benchmarks/scale/results/demo-unit-times.json]

A run directory that already holds units.json (written by ``workbench run`` itself) is read by
critical_path.py directly (``--units RUN_DIR/units.json``); this script is for when it is not there.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import socket
import sys
import time
from pathlib import Path


def time_demo(quick: bool, out: Path, progress=None) -> dict:
    """Run the demo recipe (``quick``: its --quick variant) into the fresh directory ``out``; return the
    time of every unit, the run's wall time and where it ran (a dict ready for JSON)."""
    import workbench.pipeline.units as units_mod
    from workbench.measure import collect_environment
    from workbench.pipeline import runner
    from workbench.recipe import load_recipe

    recipe = load_recipe(None)
    if quick:
        recipe = recipe.quick()
    shutil.rmtree(out, ignore_errors=True)
    rows: list[dict] = []
    real = units_mod.run_unit
    real_graph_of = runner.graph_of
    ids: dict[int, str] = {}  # id(job) -> node id, from the graph the run plans

    def graph_of(*a, **kw):
        graph = real_graph_of(*a, **kw)
        ids.update({id(n.job): n.id for n in graph.nodes})
        return graph
    node = socket.gethostname()
    t_origin = time.time()

    def timed(name, ctx, job, inputs, progress=None):
        start = time.time()
        t0 = time.perf_counter()
        result = real(name, ctx, job, inputs, progress)
        seconds = time.perf_counter() - t0
        node_id = ids.get(id(job)) or (  # a measurement group less a skipped artifact runs a new job
            f"measure:{job.runtime}/t{job.threads}" if name == "measure_group" else f"{name}:?")
        rows.append({"id": node_id, "unit": name, "node": node, "start": start - t_origin,
                     "end": start - t_origin + seconds, "seconds": seconds,
                     "cached": bool(getattr(result, "reused", False))})
        if progress is not None:
            progress.info(f"    {seconds:7.2f} s  {node_id}")
        return result

    load_before = list(os.getloadavg())
    units_mod.run_unit, runner.graph_of = timed, graph_of
    t0 = time.perf_counter()
    try:
        runner.run(recipe, out, command="benchmarks/scale/unit_times.py", progress=progress)
    finally:
        units_mod.run_unit, runner.graph_of = real, real_graph_of
    wall = time.perf_counter() - t0
    env = collect_environment()
    return {"recipe": "demo --quick" if quick else "demo (full)", "run_dir": str(out), "wall_s": wall,
            "machine": env["description"], "load_before": load_before, "load_after": list(os.getloadavg()),
            "units": rows}


def main() -> int:
    """Command line: time the demo's units and write them as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the demo's --quick variant (ort only, fewer steps)")
    ap.add_argument("--out", default="runs/scale-demo", help="fresh run directory (deleted first)")
    ap.add_argument("--json", default="benchmarks/scale/results/demo-unit-times.json")
    args = ap.parse_args()
    from workbench.progress import Progress

    doc = time_demo(args.quick, Path(args.out), Progress())
    doc["command"] = " ".join(shlex.quote(a) for a in [".venv/bin/python", *sys.argv])
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{len(doc['units'])} units in {doc['wall_s']:.0f} s -> {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
