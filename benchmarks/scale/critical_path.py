"""Critical-path model: measured unit times -> predicted wall time of the demo and of a generated 50-student
sweep on 1, 4, 16 and 64 worker nodes (with 1 and 4 bench nodes), and the serial fraction that bounds it.

Input: the ``units.json`` an executor writes into a run directory (every unit's seconds), with the run's
``recipe.toml`` beside it (default: the committed copy of a demo --quick run, results/demo-quick-steps10/).
The run's graph is re-planned with ``workbench.pipeline.runner.preflight`` / ``graph_of`` (pure: nothing
trains); the sweep is the same recipe with 50 generated CNN students (widths 6..30, depths 1 and 2; every
student also on the mobile runtimes the recipe measures), planned the same way. Each sweep unit takes the
measured time of the run's unit of the same kind and role (regime, method, seed, variant, runtime, threads)
whose student is nearest in parameter count; an interleaved measurement group takes the run's group time
per artifact times its number of artifacts. The teacher-output cache fill (inside the first KD training
unit) is split out as one unit that every KD training waits for. ``--quick-steps``: a what-if that scales a
step-capped run's training units to the demo --quick budget.

Model (schedule.py): a worker node runs one unit at a time; a bench node runs one measurement unit at a
time and nothing else; list scheduling by longest remaining path. Speed-up is against the serial sum of
the unit times (what the local executor does).

    .venv/bin/python benchmarks/scale/critical_path.py [--units RUN_DIR/units.json] [--students 50] [--quick-steps]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import statistics
import sys
from collections import defaultdict
from dataclasses import fields, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from schedule import critical_path, list_schedule  # noqa: E402  (this folder's own module)

HERE = Path(__file__).resolve().parent
CACHE_NODE = "teacher-cache"  # the teacher-output cache fill, modelled as one unit before every KD training
WORKERS = (1, 4, 16, 64)
BENCH_NODES = (1, 4)
# The units the Ray executor sends only to bench nodes (they time things: an interleaved group, the memory
# pass with its per-operator profile, auto's candidate measurement); workbench's own list when it has one.
DEFAULT_BENCH_UNITS = ("measure_group", "memory_profile", "auto_quantize")
NEXT_STEP = {
    "measure_group": "split the interleaved groups: `[measure] group_size` sub-groups (each with the reference "
                     "artifacts) run on several bench nodes at once; one group is one unit and cannot spread",
    "memory_profile": "more bench nodes, or a memory pass without the fresh-process start-up per artifact",
    "auto_quantize": "auto's candidate measurement: reuse the fixed methods' measurements instead of re-timing",
    "train_student": "the longest training chain: fewer steps for the sweep, GPUs (`--device cuda`) or "
                     "`--nproc-per-node` for the biggest students",
    "export_fp32": "the teacher's export heads every chain: cache it across runs (its key does not change)",
    "teacher_cache_fill": "the teacher-output cache fill: make it a unit of its own (once, before the KD units) "
                          "or share it across runs; today concurrent KD units would each compute it",
}


def bench_units() -> tuple:
    """The unit kinds that run only on bench nodes: the Ray executor's own list when it declares one."""
    try:
        from workbench.pipeline.executors.timing import BENCH_UNITS
    except ImportError:
        return DEFAULT_BENCH_UNITS
    return tuple(sorted(BENCH_UNITS))


def load_times(path: Path) -> tuple[dict, dict, object]:
    """(node id -> seconds, what the run says about its command, machine and duration, the run's recipe) from
    an executor's units.json; recipe.toml and results.json (or a copy of its "run" part, run.json) lie beside it."""
    from workbench.recipe import load_recipe

    if not path.is_file():
        sys.exit(f"error: {path} not found; give the units.json of a run directory (workbench run writes one)")
    rows = json.loads(path.read_text())
    recipe_path = path.parent / "recipe.toml"
    if not isinstance(rows, list) or not recipe_path.is_file():
        sys.exit(f"error: {path} is not a run directory's units.json with its recipe.toml beside it")
    recipe = replace(load_recipe(recipe_path), builtin=True)
    meta = {"source": os.path.relpath(path)}
    for name in ("results.json", "run.json"):  # the run's own record of its command, machine and duration
        if (path.parent / name).is_file():
            run = json.loads((path.parent / name).read_text())["run"]
            env = run.get("environment") or {}
            meta.update(command=run.get("command"), machine=env.get("description"), wall_s=run.get("duration_s"),
                        loadavg=env.get("loadavg"))
            break
    cached = [r["id"] for r in rows if r.get("cached")]
    if cached:
        sys.exit(f"error: {len(cached)} units in {path} were reused from an earlier run (e.g. {cached[0]}); "
                 "time a run into a fresh directory")
    times: dict = defaultdict(float)
    for r in rows:
        times[r["id"]] += float(r["seconds"])
    return dict(times), meta, recipe


def sweep_recipe(demo, n: int):
    """The demo's recipe with ``n`` generated CNN students (widths 6.., depths 1 and 2), every student also on
    the mobile runtimes the recipe measures (none in the quick variant: ONNX Runtime only)."""
    from workbench.recipe import StudentSpec

    students = tuple(StudentSpec(f"w{6 + i // 2}d{1 + i % 2}", "cnn", (("depth", 1 + i % 2), ("width", 6 + i // 2)))
                     for i in range(n))
    return replace(demo, name=f"sweep-{n}", students=students, mobile=replace(demo.mobile, students=()))


def params_of(recipe, num_classes: int) -> dict:
    """Student name -> parameter count (the architecture built from its options)."""
    from workbench.zoo.archs import build_arch

    return {s.name: sum(p.numel() for p in build_arch(s.arch, 1, num_classes, **dict(s.options)).parameters())
            for s in recipe.students}


def role(node_id: str, names: list) -> tuple[str, str | None]:
    """(the node id with its student's name replaced by ``<student>``, that student or None)."""
    for name in sorted(names, key=len, reverse=True):
        pat = re.compile(rf"(?<=:){re.escape(name)}(?=\.)")
        if pat.search(node_id):
            return pat.sub("<student>", node_id), name
    return node_id, None


def sweep_times(sweep_graph, sweep_params: dict, demo_graph, demo_params: dict, times: dict) -> tuple[dict, list]:
    """Node id -> predicted seconds for the sweep's graph from the demo's measured units (see the module
    docstring), and the sweep node ids no demo unit matched (they take 0 s)."""
    by_role: dict = defaultdict(list)  # role -> [(params or None, seconds)]
    per_artifact: dict = {}
    for n in demo_graph.nodes:
        if n.id not in times:
            continue
        if n.unit == "measure_group":  # per runtime and threads: measure:<runtime>/t<threads>[/g<i>]
            per_artifact[_group(n.id)] = times[n.id] / max(1, len(n.job.arts))
            continue
        r, st = role(n.id, list(demo_params))
        by_role[r].append((demo_params.get(st), times[n.id]))
    out, unmatched = {}, []
    for n in sweep_graph.nodes:
        if n.unit == "measure_group":
            if _group(n.id) in per_artifact:
                out[n.id] = per_artifact[_group(n.id)] * len(n.job.arts)
            else:
                out[n.id] = 0.0
                unmatched.append(n.id)
            continue
        r, st = role(n.id, list(sweep_params))
        cands = by_role.get(r)
        if not cands:
            out[n.id] = 0.0
            unmatched.append(n.id)
            continue
        if st is None:
            out[n.id] = statistics.fmean(s for _, s in cands)
        else:
            p = sweep_params[st]
            best = min(abs(math.log(q / p)) for q, _ in cands)
            out[n.id] = statistics.fmean(s for q, s in cands if abs(math.log(q / p)) == best)
    return out, unmatched


def _group(node_id: str) -> str:
    """``measure:<runtime>/t<threads>`` of a measurement group's node id (without a sub-group suffix)."""
    return re.sub(r"/g\d+$", "", node_id)


def kind_of(graph) -> dict:
    """Node id -> unit kind."""
    return {n.id: n.unit for n in graph.nodes}


def by_kind(ids, seconds: dict, kinds: dict) -> str:
    """``kind 12.3 s`` for the given nodes, largest first."""
    acc: dict = defaultdict(float)
    for i in ids:
        acc[kinds[i]] += seconds[i]
    return ", ".join(f"{k} {v:.1f} s" for k, v in sorted(acc.items(), key=lambda kv: -kv[1]))


def cache_fill(graph, times: dict) -> tuple[str | None, float]:
    """(the demo's first KD training unit, the seconds of it that filled the run's teacher-output cache):
    its time minus the mean of the same student's KD units of the same regime with other seeds (which read
    the cache); (None, 0) when there is nothing to compare with."""
    kd = [n for n in graph.of_unit("train_student") if n.job.job.method == "kd" and n.id in times]
    if not kd:
        return None, 0.0
    first = kd[0].job.job
    twins = [times[n.id] for n in kd[1:] if n.job.job.student == first.student and n.job.job.regime == first.regime]
    if not twins:
        return None, 0.0
    return kd[0].id, max(0.0, times[kd[0].id] - statistics.fmean(twins))


def scaled_to_quick_steps(demo, graph, times: dict) -> tuple[dict, str]:
    """Training units' times scaled to the built-in demo's --quick step budget from the steps ``demo`` (the
    timed run's recipe) used, regime by regime (time taken as proportional to steps); and a line saying so."""
    from workbench.recipe import load_recipe

    target = load_recipe(None).quick().distill
    factor = {"full": target.steps / demo.distill.steps, "few": target.few_steps / demo.distill.few_steps}
    out = dict(times)
    for n in graph.of_unit("train_student"):
        if n.id in out:
            out[n.id] *= factor["full" if n.job.job.regime == "full" else "few"]
    return out, (f"what-if: training units scaled to the demo --quick budget ({target.steps} full-data, "
                 f"{target.few_steps} few-label steps) from the timed run's ({demo.distill.steps}, "
                 f"{demo.distill.few_steps}): x{factor['full']:g} and x{factor['few']:g}, training time taken as "
                 "proportional to steps (the cache fill is not scaled)")


def model_of(graph, seconds: dict, fill: float) -> tuple[list, dict, dict, dict]:
    """(order, deps, kinds, seconds) of a graph for the scheduler; with ``fill`` > 0 the teacher-output cache
    fill is a unit of its own (CACHE_NODE, ``fill`` seconds) that every KD training unit waits for."""
    order = [n.id for n in graph.nodes]
    deps = {n.id: tuple(n.deps) for n in graph.nodes}
    kinds, secs = kind_of(graph), dict(seconds)
    if fill > 0:
        order.insert(0, CACHE_NODE)
        deps[CACHE_NODE], kinds[CACHE_NODE], secs[CACHE_NODE] = (), "teacher_cache_fill", fill
        for n in graph.of_unit("train_student"):
            if n.job.job.method == "kd":
                deps[n.id] = deps[n.id] + (CACHE_NODE,)
    return order, deps, kinds, secs


def report(title: str, model: tuple, bench_kinds: tuple, measured_wall: float | None = None) -> None:
    """Print the model of one graph: work, serial fraction, the table over node counts, what dominates."""
    order, deps, kinds, seconds = model
    bench = {i for i in order if kinds[i] in bench_kinds}
    total = sum(seconds[i] for i in order)
    bench_work = sum(seconds[i] for i in bench)
    cp = critical_path(seconds, deps, order)
    cp_len = sum(seconds[i] for i in cp)
    print(f"\n-- {title}: {len(order)} units; total work {total:.0f} s "
          f"(worker units {total - bench_work:.0f} s, bench units {bench_work:.0f} s)"
          + (f"; measured wall time of the local run {measured_wall:.0f} s" if measured_wall else ""))
    print(f"serial fraction (critical path / total work): {cp_len:.0f} / {total:.0f} s = {cp_len / total:.3f} "
          f"-> no number of nodes beats {total / cp_len:.1f}x")
    print(f"critical path ({len(cp)} units): {' -> '.join(cp)}")
    print(f"  by unit kind: {by_kind(cp, seconds, kinds)}")
    print(f"{'workers':>8}{'bench':>7}{'wall s':>10}{'speed-up':>10}{'efficiency':>12}   lower bounds: "
          f"critical path / worker work per node / bench work per bench node")
    last = None
    for b in BENCH_NODES:
        for w in WORKERS:
            s = list_schedule(seconds, deps, order, bench, w, b)
            binding = max((s.critical_path, "critical path"), (s.worker_bound, "worker work"),
                          (s.bench_bound, "bench work"))[1]
            print(f"{w:>8}{b:>7}{s.wall:>10.0f}{total / s.wall:>9.1f}x{total / s.wall / (w + b):>11.0%}   "
                  f"{s.critical_path:.0f} / {s.worker_bound:.0f} / {s.bench_bound:.0f} s (bound: {binding})")
            last = (w, b, s, binding)
    w, b, s, binding = last
    tail = _schedule_chain(s, seconds, deps, order, bench)
    lead = max(((kinds[i], seconds[i]) for i in tail), key=lambda kv: kv[1], default=("none", 0.0))
    longest = max(order, key=lambda i: seconds[i])
    dominant_kind = max({kinds[i] for i in tail}, key=lambda k: sum(seconds[i] for i in tail if kinds[i] == k))
    print(f"at {w} workers + {b} bench nodes: wall {s.wall:.0f} s, bound by {binding}; the chain that ends last "
          f"({len(tail)} units) is {by_kind(tail, seconds, kinds)}; its longest unit: {lead[0]} {lead[1]:.1f} s; "
          f"the longest unit of the run: {longest} ({seconds[longest]:.1f} s, {seconds[longest] / s.wall:.0%} of that wall)")
    print(f"next: {NEXT_STEP.get(dominant_kind, 'shorten ' + dominant_kind)}")


def _schedule_chain(s, seconds: dict, deps: dict, order: list, bench: set) -> list:
    """The units that set the schedule's wall time: from the unit that ends last, back through whichever
    held it up (a dependency ending at its start, else the unit that freed its node), to time 0."""
    eps = 1e-6
    node = max(order, key=lambda i: s.end[i])
    chain = [node]
    while s.start[node] > eps:
        prev = [d for d in deps[node] if abs(s.end[d] - s.start[node]) < eps]
        if not prev:
            pool = node in bench
            prev = [i for i in order if (i in bench) == pool and abs(s.end[i] - s.start[node]) < eps]
        if not prev:
            break
        node = max(prev, key=lambda i: seconds[i])
        chain.append(node)
    return chain[::-1]


def main() -> int:
    """Command line: load the measured unit times, plan the demo and the sweep, print the model."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", default=str(HERE / "results" / "demo-quick-steps10" / "units.json"),
                    help="a run directory's units.json (recipe.toml beside it)")
    ap.add_argument("--students", type=int, default=50, help="students in the generated sweep")
    ap.add_argument("--quick-steps", action="store_true",
                    help="what-if for a run timed with capped training steps: scale each training unit's time (the "
                         "cache fill excluded) to the built-in demo's --quick step budget, proportionally to steps")
    args = ap.parse_args()
    if args.students < 1:
        sys.exit("error: --students must be at least 1")
    from workbench.measure import collect_environment
    from workbench.pipeline.runner import graph_of, preflight

    times, meta, demo = load_times(Path(args.units))
    env = collect_environment()
    print(f"# command: {' '.join(shlex.quote(a) for a in ['.venv/bin/python', *sys.argv])}")
    print(f"# machine (this model ran on): {env['description']}")
    print(f"# unit times: {meta['source']}: recipe {demo.name} (training steps: {demo.distill.steps} full-data, "
          f"{demo.distill.few_steps} few-label), run by `{meta.get('command', '?')}` on {meta.get('machine', '?')}"
          + (f"; load average {meta['loadavg'][0]:.1f} when it began (the 2 cores were shared with other jobs: "
             "timings taken under load)" if meta.get("loadavg") else ""))
    pre = preflight(demo)
    bench_kinds = bench_units()
    print("== critical-path model of the unit graph on a cluster")
    print(f"compares: predicted wall time on {', '.join(map(str, WORKERS))} worker nodes x "
          f"{' and '.join(map(str, BENCH_NODES))} bench nodes, by list-scheduling the planned graph with measured unit "
          "times, against the serial sum of those times (the local executor)")
    print(f"model: a worker node runs one unit at a time; bench nodes run only {', '.join(bench_kinds)}, one at a "
          "time; dependencies respected; no transfer or scheduling overhead (see local_vs_ray.py for Ray's)")
    demo_graph = graph_of(demo, pre, env.get("isa", {}))
    missing = [n.id for n in demo_graph.nodes if n.id not in times]
    if missing:
        print(f"note: {len(missing)} planned demo units have no measured time (skipped in that run), taken as 0 s: "
              f"{', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
    first_kd, fill = cache_fill(demo_graph, times)
    if fill > 0:
        times = {**times, first_kd: times[first_kd] - fill}
        print(f"teacher-output cache: the first KD unit ({first_kd}) took {fill:.0f} s more than its other seeds: "
              f"the teacher pass that fills the run's cache. Modelled as one unit ({CACHE_NODE}, {fill:.0f} s) that "
              "every KD training waits for. Today each KD unit that starts before the cache file exists computes "
              "it too (no lock): on a cluster the first wave of KD units would each pay it")
    if args.quick_steps:
        times, line = scaled_to_quick_steps(demo, demo_graph, times)
        print(line)
    seconds = {n.id: times.get(n.id, 0.0) for n in demo_graph.nodes}
    report(f"demo ({demo.name})", model_of(demo_graph, seconds, fill), bench_kinds,
           meta.get("wall_s"))

    sweep = sweep_recipe(demo, args.students)
    sweep_graph = graph_of(sweep, pre, env.get("isa", {}))
    sp, dp = params_of(sweep, pre.task.num_classes), params_of(demo, pre.task.num_classes)
    s_times, unmatched = sweep_times(sweep_graph, sp, demo_graph, dp, times)
    print(f"\nsweep: {args.students} generated CNN students, {min(sp.values()):,}-{max(sp.values()):,} params "
          f"(the demo's: {', '.join(f'{k} {v:,}' for k, v in dp.items())}); {sweep_graph.summary()['training_runs']} "
          f"training runs, {sum(sweep_graph.summary()['artifacts'].values())} artifacts "
          f"({', '.join(f'{k} {v}' for k, v in sweep_graph.summary()['artifacts'].items())})")
    print("assumption: each sweep unit takes the measured time of the demo unit of the same kind and role whose "
          "student is nearest in parameter count (students larger than the demo's get the larger demo student's "
          "time: an underestimate for them); a measurement group takes the demo group's time per artifact times "
          "its number of artifacts")
    if unmatched:
        print(f"note: {len(unmatched)} sweep units match no measured demo unit, taken as 0 s: {', '.join(unmatched[:4])}")
    report(f"generated {args.students}-student sweep", model_of(sweep_graph, s_times, fill), bench_kinds)
    if "group_size" in {f.name for f in fields(sweep.measure)}:
        what_if_group_size(sweep, pre, env, demo_graph, dp, sp, times, fill, bench_kinds)
    return 0


def what_if_group_size(sweep, pre, env, demo_graph, dp: dict, sp: dict, times: dict, fill: float,
                       bench_kinds: tuple, sizes=(None, 40, 20)) -> None:
    """The sweep at 64 workers with 1, 4 and 16 bench nodes when ``[measure] group_size`` splits its
    measurement groups (each sub-group holds the reference artifacts again: more bench work, spread wider)."""
    from workbench.pipeline.runner import graph_of

    print(f"\n-- the sweep with `[measure] group_size` (sub-groups, each with the teacher's artifacts as "
          f"references), {WORKERS[-1]} workers")
    print(f"{'group_size':>11}{'groups':>8}{'bench work s':>14}" + "".join(f"{f'wall, {b} bench':>16}" for b in (1, 4, 16)))
    for g in sizes:
        r = replace(sweep, measure=replace(sweep.measure, group_size=g))
        graph = graph_of(r, pre, env.get("isa", {}))
        order, deps, kinds, t = model_of(graph, sweep_times(graph, sp, demo_graph, dp, times)[0], fill)
        bench = {i for i in order if kinds[i] in bench_kinds}
        walls = [list_schedule(t, deps, order, bench, WORKERS[-1], b).wall for b in (1, 4, 16)]
        print(f"{g or 'none':>11}{len(graph.of_unit('measure_group')):>8}{sum(t[i] for i in bench):>14.0f}"
              + "".join(f"{w:>16.0f}" for w in walls))


if __name__ == "__main__":
    sys.exit(main())
