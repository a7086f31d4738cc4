"""`workbench run`: a recipe through the pipeline, or with --dry-run the checks and the plan without writing."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click


def run_command(recipe, out, quick, dry_run, wait, quiet, mlflow_uri, mlflow_experiment, backend="local",
                address=None, device=None) -> None:
    """The body of `workbench run`: load the recipe, then print the plan (--dry-run) or run it and summarise.
    ``backend`` (a name in workbench.pipeline.executors.EXECUTORS) and ``address`` choose the executor."""
    from ..pipeline.executors import executor_for
    from ..recipe import load_recipe

    executor = executor_for(backend, address)  # bad --backend / --address, Ray missing: one line before anything loads
    r = load_recipe(recipe)
    if quick:
        r = r.quick()
    r = with_device(r, device, backend)
    out = Path(out) if out else Path("runs") / (r.name + ("-quick" if quick else ""))  # the name is a checked slug
    if dry_run:
        print_plan(r, out)
        return
    from ..pipeline.runner import run as run_pipeline
    from ..progress import Progress
    from ..report import load_results, print_summary

    progress = Progress(quiet=quiet)
    command = "workbench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    results_path = run_pipeline(r, out, command=command, progress=progress, wait=wait, executor=executor)
    if not quiet:
        print_summary(load_results(results_path), console=progress.console)
    click.echo(f"results: {results_path}\nreport:  {results_path.parent / 'report.html'} (and report.md)")
    if mlflow_uri:
        from .report import log_mlflow

        log_mlflow(results_path, mlflow_uri, mlflow_experiment, results_path.parent)


def with_device(r, device: str | None, backend: str = "local"):
    """The recipe with --device (when given) as its [train] device; on the local backend the device is
    resolved here (cuda asked on a machine without one: one line, exit 2), elsewhere where each unit runs."""
    from dataclasses import replace

    from ..recipe.train import parse_device

    if device is not None:
        r = replace(r, train=replace(r.train, device=parse_device(device)))
    if backend == "local":
        from ..distill.device import resolve

        resolve(r.train.device, "--device" if device is not None else "[train] device")
    return r


def print_plan(r, out: Path) -> None:
    """`run --dry-run`: the same checks as a run, then the resolved recipe and the plan; writes nothing."""
    from ..pipeline.runner import graph_of, preflight
    from ..recipe.rules import thread_notes

    pre = preflight(r)  # the same checks as a run (task, teacher, runtimes), before it would write anything
    for note in [f"skipped runtime {s['runtime']}: {s['reason']}" for s in pre.skipped] + thread_notes(r):
        click.echo(f"note: {note}", err=True)
    click.echo(r.to_toml())
    summary = graph_of(r, pre).summary()  # the run's plan: pure, from the recipe and the preflight
    plan = summary["artifacts"]
    units = ", ".join(f"{n} {u.replace('_', ' ')}" for u, n in summary["units"].items())
    click.echo(f"# plan: {summary['training_runs']} training runs, {sum(plan.values())} artifacts "
               f"({', '.join(f'{rt} {n}' for rt, n in plan.items())}), {summary['measurements']} measurements -> {out}")
    click.echo(f"# units: {units}")
