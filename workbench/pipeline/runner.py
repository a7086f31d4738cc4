"""run(recipe) -> results.json: the only orchestrator.

    plan(recipe) -> Graph of units -> LocalExecutor.run(graph) -> records built once -> results.json -> reports

The plan (workbench.pipeline.plan) derives every unit: the teacher exported; students trained labels-only
and with KD over seeds and regimes; deployed students exported; teacher and students quantized; each
runtime of the recipe gets its artifacts; every artifact evaluated through its runtime and measured through
the one harness. The executor (workbench.pipeline.executor) runs the units; workbench.pipeline.assemble
builds each record once with its comparisons (workbench.pipeline.compare) and diagnostics in it.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..fileio import write_json, write_text
from ..recipe import Recipe
from .results import document
from .rundir import RunDir
from .study import paired_difference


@dataclass(frozen=True)
class Preflight:
    """What every check before a run found: the runtimes to run and those skipped, the loaded task, the
    loaded teacher (zoo.sources.Loaded) and the task family that runs it."""

    runtimes: list
    skipped: list
    task: object
    teacher: object
    family: object


def run(recipe: Recipe, out: str | Path, command: str = "workbench run", progress=None, wait: bool = False,
        executor=None) -> Path:
    """Run ``recipe`` into the run directory ``out`` (reusing finished units); returns results.json's path.

    Everything is checked before the directory is created; then the directory is locked for this run
    (another run into it: OutputError naming its pid, or with ``wait`` a wait for it to finish).
    ``executor`` runs the graph (workbench.pipeline.executors; default: LocalExecutor, in this process)."""
    with contextlib.ExitStack() as hold:
        return _run(recipe, out, command, progress, wait, hold, executor)


def preflight(recipe: Recipe) -> Preflight:
    """Every check a run makes before it writes anything (``--dry-run`` makes the same): runtimes, the
    task (and what the recipe asks of it), its family, the teacher."""
    from ..recipe.rules import check_task_fit
    from ..tasks import load_task
    from .families import family_of
    from .generations import check_mode
    from .mobile import plan_runtimes, runtime_fits

    runtimes, skipped = plan_runtimes(recipe)  # a missing runtime: error (user recipe) or skipped (built-in demo)
    base = Path(recipe.base_dir) if recipe.base_dir else None
    task = load_task(recipe.task.name, base, command="run", builtin_options={"image_size": recipe.task.image_size})
    fam = family_of(task)
    check_task_fit(recipe, task)  # what the recipe asks of the task (few-label counts within the split)
    loaded = fam.load_teacher(recipe, task, base)
    check_mode(recipe, task, fam, loaded.module, base)  # [distill] mode: reverse / self students fit the teacher
    runtimes, skipped = runtime_fits(runtimes, skipped, fam.name, fam.inputs(task, "test", 1))  # e.g. text: no .pte
    return Preflight(runtimes, skipped, task, loaded, fam)


def context_of(recipe: Recipe, root: Path, pre: Preflight):
    """The RunContext of a run of ``recipe`` into ``root`` (what every unit receives)."""
    from .family import RunContext

    return RunContext(root=str(root), recipe_toml=recipe.to_toml(),
                      base_dir=str(recipe.base_dir) if recipe.base_dir else None, teacher_sha=pre.teacher.sha256,
                      task_fp=pre.task.fingerprint(), family=pre.family.name)


def graph_of(recipe: Recipe, pre: Preflight, isa: dict | None = None):
    """The plan of a run of ``recipe`` after its preflight (runtimes with a profiler get operator profiles)."""
    from ..runtimes import RUNTIMES, Runtime
    from .plan import plan

    profiled = frozenset(rt for rt in pre.runtimes if type(RUNTIMES.get(rt)).profile is not Runtime.profile)
    return plan(recipe, pre.runtimes, teacher_sha=pre.teacher.sha256, task_fp=pre.task.fingerprint(),
                family=pre.family.name, isa=isa, profiled=profiled)


def _run(recipe: Recipe, out, command: str, progress, wait: bool, hold: contextlib.ExitStack, executor=None) -> Path:
    from ..measure import collect_environment
    from ..progress import Progress
    from ..recipe.rules import thread_notes
    from .assemble import records
    from .executor import LocalExecutor
    from .family import remember
    from .generations import mode_studies

    progress = progress or Progress()
    t_start = time.perf_counter()
    if not wait:  # another run writing there: say so now, not after loading the task and the teacher
        from .runlock import check_free

        check_free(out)
    # check every input before writing anything: a bad recipe leaves no half-made run directory
    pre = preflight(recipe)
    task = pre.task
    rd = RunDir(out, notify=_note(progress))  # from here on the directory is this run's alone
    hold.enter_context(rd.lock(command, wait=wait, note=lambda m: progress.info(f"[yellow]note: {m}[/yellow]")))
    write_text(rd.root / "recipe.toml", recipe.to_toml())
    progress.info(f"[bold]workbench run[/bold] {recipe.name} -> {rd.root}")
    notes = [f"skipped runtime {s['runtime']}: {s['reason']}" for s in pre.skipped] + thread_notes(recipe)
    if recipe.quick_mode and recipe.quick_skipped:
        notes.append(f"quick: measured on ort only; run without --quick to measure every variant on "
                     f"{', '.join(recipe.quick_skipped)} too")
    for n in notes:
        progress.info(f"[yellow]note: {n}[/yellow]")
    ctx = context_of(recipe, rd.root, pre)
    remember(ctx, task=task, teacher=pre.teacher.module, rundir=rd)  # in-process units reuse what is loaded
    np.savez(rd.root / "inputs.npz", **pre.family.inputs(task, "test", 1))
    env = collect_environment(list(recipe.measure.runtimes))
    graph = graph_of(recipe, pre, env.get("isa", {}))
    progress.info(f"[bold]units[/bold]: {len(graph.nodes)} (train, export, quantize, convert, evaluate, measure)")
    results = (executor or LocalExecutor()).run(graph, ctx, progress)
    graph, dropped = graph.settled(results)  # conversions a converter could not make: skipped, with a note
    notes += dropped

    recs = records(recipe, rd, graph, results, env.get("isa", {}), env.get("description"),
                   f"{task.name} " + getattr(pre.family, "measure_input", "test split (first example, batch 1)"))
    trained = {n.job.job.name: results[n.id].row for n in graph.of_unit("train_student")}
    studies = {"distillation": _study(recipe, trained, pre.family),  # reverse / self mode: + their studies
               **mode_studies(recipe, trained, pre.family, sum(p.numel() for p in pre.teacher.module.parameters()))}
    doc = document(rd.root.name, command, recipe.to_dict(), env, task.summary(), recs, studies,
                   time.perf_counter() - t_start,
                   runtimes={"measured": pre.runtimes, "skipped": pre.skipped, "notes": notes,
                             "threads": {rt: list(recipe.threads_for(rt)) for rt in pre.runtimes}})
    results_path = write_json(rd.root / "results.json", doc)
    from ..report import write_reports

    write_reports(results_path)
    return results_path


def _note(progress):
    """One-line notes of the run directory (a damaged cache entry recomputed, a killed run's temp files
    removed) as progress lines."""
    from rich.markup import escape

    return lambda msg: progress.info(f"[yellow]note: {escape(msg)}[/yellow]")


def _study(recipe: Recipe, trained: dict, fam) -> list[dict]:
    """The distillation study: per regime and student, KD vs its twin (the family's: labels only for
    classifiers) over seeds, paired, in the task's metric."""
    d = recipe.distill
    out = []
    for regime in d.regimes:
        for st in recipe.students:
            rows = {m: [trained[f"{st.name}.{regime}.{m}.s{s}"] for s in d.seeds] for m in ("labels", "kd")}
            labels = [r["test_metric"] for r in rows["labels"]]
            kd = [r["test_metric"] for r in rows["kd"]]
            first = rows["labels"][0]
            label = ("full training split" if regime == "full" else f"{regime[4:]} labelled {fam.examples} per class") + \
                    f" ({first['n_train']} {fam.examples})"
            out.append({"regime": regime, "regime_label": label, "student": st.name, "params": first["params"],
                        "n_train": first["n_train"], "seeds": list(d.seeds), "labels_acc": labels, "kd_acc": kd,
                        **paired_difference(labels, kd), "temperature": d.temperature, "alpha": d.alpha,
                        "steps": first["steps"], "eval": "PyTorch model of each seed on the test split",
                        "train_seconds": {"labels": sum(r["seconds"] for r in rows["labels"]),
                                          "kd": sum(r["seconds"] for r in rows["kd"])},
                        "metric": fam.metric, "twin": fam.twin})
    return out
