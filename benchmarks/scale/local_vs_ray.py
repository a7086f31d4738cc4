"""Local executor vs a local 2-node Ray cluster on this machine: same records, wall time, per-unit overhead.

Runs the demo recipe (its ``--quick`` variant by default; ``--full`` for the whole demo) twice into fresh
run directories: ``workbench run --backend local``, then ``workbench run --backend ray --address HOST:PORT``
on a Ray cluster this script starts on loopback with ``ray.cluster_utils.Cluster`` (a head offering 1 CPU
to training/export/evaluation units and a second node with ``num_cpus=0`` and ``resources={"bench": 1}``,
which gets only the measurement units, one at a time) and shuts down at the end. Then it prints:

- the records: same (variant, runtime, threads) rows, same artifact sha256, same metric values; the
  latencies were measured in separate runs, so only their ratio is shown;
- the wall time of both commands (this machine has 2 cores: the cluster cannot be faster, so this reports
  overhead, not a speed-up);
- per-unit overhead from both runs' ``units.json``: (a) the unit's own seconds on Ray minus the same unit's
  seconds in the local run (a Ray worker is a separate process: it reloads the task, the teacher and the
  libraries a unit needs), (b) the dispatch gap: how long a unit waited after it could have started (its
  last dependency done and its node free) — Ray's scheduling and result hand-back; median and p90 of each.

``--steps N`` caps the students' training steps (a derived recipe written into the output folder) for a
loaded machine: the overheads are per unit and do not depend on the step budget; say so when you use it.

    .venv/bin/python benchmarks/scale/local_vs_ray.py [--full] [--steps N] [--out runs/scale-local-vs-ray]
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np


def recipe_args(full: bool, steps: int | None, out: Path) -> list[str]:
    """The recipe arguments of ``workbench run``: the built-in demo (with --quick unless ``full``), or with
    ``steps`` a derived recipe file (the same, students' training steps capped) written under ``out``."""
    if steps is None:
        return [] if full else ["--quick"]
    from workbench.recipe import load_recipe

    r = load_recipe(None)
    r = r if full else r.quick()
    r = replace(r, name=r.name + f"-steps{steps}",
                distill=replace(r.distill, steps=min(r.distill.steps, steps), few_steps=min(r.distill.few_steps, steps)))
    path = out / "recipe.toml"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(r.to_toml())
    return [str(path)]


def run_timed(args: list[str], log: Path) -> float:
    """Run ``workbench`` with ``args`` (its progress into ``log``); the wall time in seconds. Exits with the
    log's tail when the command fails."""
    cmd = [sys.executable, "-m", "workbench.cli", *args]
    t0 = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    if rc != 0:
        tail = log.read_text().splitlines()[-15:]
        sys.exit(f"error: `workbench {' '.join(args)}` failed (exit {rc}); last lines of {log}:\n" + "\n".join(tail))
    return wall


def start_cluster():
    """A Ray cluster on loopback: head with 1 CPU, bench node with 0 CPUs and ``bench: 1``."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 200 * 2**20,
                                                            "include_dashboard": False})
    cluster.add_node(num_cpus=0, resources={"bench": 1}, object_store_memory=100 * 2**20)
    cluster.wait_for_nodes()
    return cluster


def records(run_dir: Path) -> dict:
    """(variant, runtime, threads) -> the record of results.json."""
    doc = json.loads((run_dir / "results.json").read_text())
    return {(r["variant"], r["runtime"]["name"], r["runtime"]["options"]["threads"]): r for r in doc["results"]}


def compare_records(local: dict, ray: dict) -> list[str]:
    """Lines saying whether the two runs made the same records: keys, artifact sha256, metric values,
    and where each Ray record was measured; latencies compared only as a ratio (separate runs)."""
    out = [f"records: local {len(local)}, ray {len(ray)}; same (variant, runtime, threads): {set(local) == set(ray)}"]
    common = sorted(set(local) & set(ray))
    sha = [k for k in common if local[k]["artifact"].get("sha256") != ray[k]["artifact"].get("sha256")]
    qual = [k for k in common if (local[k].get("quality") or {}).get("value") != (ray[k].get("quality") or {}).get("value")]
    status = [k for k in common if local[k].get("status") != ray[k].get("status")]
    out.append(f"artifact sha256 equal: {len(common) - len(sha)}/{len(common)}"
               + (f" (differ: {', '.join(k[0] for k in sha[:5])})" if sha else ""))
    out.append(f"metric values equal: {len(common) - len(qual)}/{len(common)}"
               + (f" (differ: {', '.join(k[0] for k in qual[:5])})" if qual else ""))
    out.append(f"status equal: {len(common) - len(status)}/{len(common)}")
    ratios = [ray[k]["latency"]["median"] / local[k]["latency"]["median"] for k in common
              if (ray[k].get("latency") or {}).get("median") and (local[k].get("latency") or {}).get("median")]
    if ratios:
        out.append(f"latency median ray/local (separate runs, not a paired comparison): median {np.median(ratios):.3f}, "
                   f"range {min(ratios):.3f}-{max(ratios):.3f} over {len(ratios)} records")
    nodes = sorted({str(ray[k].get("node")) for k in common})
    out.append(f"nodes named in the Ray run's records: {', '.join(n[:8] for n in nodes)}")
    return out


def units(run_dir: Path) -> dict:
    """node id -> the unit's row of units.json."""
    return {u["id"]: u for u in json.loads((run_dir / "units.json").read_text())}


def dispatch_gaps(rows: dict, deps: dict) -> dict:
    """Node id -> seconds between the moment the unit could have started on its node (its last dependency
    done, the previous unit on that node done) and its start."""
    by_node: dict = {}
    for u in sorted(rows.values(), key=lambda u: u["start"]):
        by_node.setdefault(u["node"], []).append(u)
    origin = min(u["start"] for u in rows.values())
    gaps = {}
    for seq in by_node.values():
        prev_end = origin
        for u in seq:
            ready = max([prev_end] + [rows[d]["end"] for d in deps.get(u["id"], ()) if d in rows])
            gaps[u["id"]] = max(0.0, u["start"] - ready)
            prev_end = max(prev_end, u["end"])
    return gaps


def stats(values) -> str:
    """median and p90 of ``values`` (seconds)."""
    v = np.asarray(list(values), dtype=float)
    return f"median {np.median(v):.3f} s, p90 {np.percentile(v, 90):.3f} s, n={len(v)}"


def plan_deps(recipe_argv: list[str]) -> dict:
    """node id -> dependency ids of the run's plan (pure: the same recipe, nothing runs)."""
    from workbench.pipeline.runner import graph_of, preflight
    from workbench.recipe import load_recipe

    r = load_recipe(next((a for a in recipe_argv if a.endswith(".toml")), None))
    if "--quick" in recipe_argv:
        r = r.quick()
    g = graph_of(r, preflight(r))
    return {n.id: tuple(n.deps) for n in g.nodes}


def main() -> int:
    """Command line: run local and on the 2-node cluster, then compare."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="the full demo instead of its --quick variant")
    ap.add_argument("--steps", type=int, help="cap the students' training steps (a loaded machine)")
    ap.add_argument("--out", default="runs/scale-local-vs-ray", help="folder for both runs (emptied first)")
    args = ap.parse_args()
    if args.steps is not None and args.steps < 1:
        sys.exit("error: --steps must be at least 1")
    from workbench.measure import collect_environment

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    rec = recipe_args(args.full, args.steps, out)
    env = collect_environment()
    print(f"# command: {' '.join(shlex.quote(a) for a in ['.venv/bin/python', *sys.argv])}")
    print(f"# machine: {env['description']}; load average at start {os.getloadavg()[0]:.1f} "
          "(2 cores shared with other jobs: timings taken under load)")
    print("== local executor vs a 2-node Ray cluster on this machine (head: 1 CPU for training/export/evaluation; "
          "bench node: 0 CPUs, bench: 1, measurement units only)")
    what = ("full demo" if args.full else "demo --quick") + (f", training steps capped at {args.steps}" if args.steps else "")
    print(f"recipe: {what}")
    local_dir, ray_dir = out / "local", out / "ray"
    wall_local = run_timed(["run", *rec, "--out", str(local_dir), "--quiet"], out / "local.log")
    print(f"local run: {wall_local:.0f} s")
    sys.stdout.flush()
    import ray

    cluster = start_cluster()
    try:
        wall_ray = run_timed(["run", *rec, "--out", str(ray_dir), "--backend", "ray", "--address", cluster.address],
                             out / "ray.log")
    finally:
        ray.shutdown()
        cluster.shutdown()
    print(f"ray run (2-node cluster on loopback, started and stopped by this script): {wall_ray:.0f} s "
          f"({wall_ray - wall_local:+.0f} s, x{wall_ray / wall_local:.2f} of the local run)")
    print("\n-- same records?")
    for line in compare_records(records(local_dir), records(ray_dir)):
        print(line)
    lu, ru = units(local_dir), units(ray_dir)
    deps = plan_deps(rec)
    both = sorted(set(lu) & set(ru))
    extra = {i: ru[i]["seconds"] - lu[i]["seconds"] for i in both}
    print("\n-- per-unit overhead on Ray (units.json of both runs)")
    print(f"units: local {len(lu)}, ray {len(ru)}; on the bench node: "
          f"{sorted({u['unit'] for u in ru.values() if u['node'] == _bench_node(ru)})}")
    print(f"(a) unit seconds on Ray minus the same unit's seconds locally: {stats(extra.values())}")
    by_kind: dict = {}
    for i in both:
        by_kind.setdefault(ru[i]["unit"], []).append(extra[i])
    for kind, v in sorted(by_kind.items()):
        print(f"    {kind:<16} {stats(v)}")
    gaps = dispatch_gaps(ru, deps)
    print(f"(b) dispatch gap on Ray (waiting after the unit could start on its node): {stats(gaps.values())}")
    print(f"    the same on the local executor (its own loop between units): {stats(dispatch_gaps(lu, deps).values())}")
    own = sum(u["seconds"] for u in ru.values())
    print(f"sum of Ray unit seconds {own:.0f} s vs local {sum(u['seconds'] for u in lu.values()):.0f} s; "
          f"Ray wall minus the local wall: {wall_ray - wall_local:+.0f} s")
    return 0


def _bench_node(rows: dict) -> str | None:
    """The node that ran the measurement groups (the bench node) in a Ray run's units.json."""
    return next((u["node"] for u in rows.values() if u["unit"] == "measure_group"), None)


if __name__ == "__main__":
    sys.exit(main())
