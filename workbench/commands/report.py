"""`workbench report`: re-render, compare or merge reports from results.json files."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from ..errors import RecipeError


@click.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Folder for report.md/report.html (default: beside results.json).")
@click.option("--merge", is_flag=True, help="Several results files of one task -> one run in --out DIR (results.json + "
              "reports); a measurement present in several keeps the last file's.")
@click.option("--compare", is_flag=True, help="Two results files BEFORE AFTER: write compare.md/.html/.json with "
              "each variant's latency ratio after/before (CI, verdict), accuracy and size changes.")
@click.option("--budget", metavar="K=V,...", help="Recommend under this budget instead of the recipe's: "
              "latency_ms (median, at the budget's threads), size_mb, min_accuracy (0.97 or 97), max_drop (points "
              "below the fp32 teacher; default 0.5), threads (default 1). E.g. latency_ms=5,size_mb=1,min_accuracy=0.97")
@click.option("--mlflow", "mlflow_uri", metavar="URI", help="Also log every measurement to MLflow at URI "
              "(http://HOST:PORT or sqlite:///FILE.db): a parent run per workbench run, a child run per "
              "artifact x runtime x threads. Needs the mlflow extra (installed by make).")
@click.option("--mlflow-experiment", metavar="NAME", help="MLflow experiment (default: the recipe's name).")
def report(results, out, budget, compare, merge, mlflow_uri, mlflow_experiment):
    """Re-render report.md and report.html from results.json without recomputing.

    Examples: workbench report runs/digits-demo/results.json;
    workbench report runs/digits-demo/results.json --budget latency_ms=0.1,size_mb=1,min_accuracy=0.97;
    workbench report runs/before/results.json runs/after/results.json --compare --out runs/cmp;
    workbench report runs/a/results.json runs/b/results.json --merge --out runs/ab
    """
    from ..report import apply_budget, load_results, print_summary, write_reports
    from ..report.budget import parse_budget

    try:
        limits = parse_budget(budget) if budget is not None else None
    except ValueError as e:
        raise RecipeError(f"--budget: {e}") from None
    if merge:
        if compare or not out:
            raise RecipeError("--merge writes a new run: give --out DIR (and not --compare)")
        from ..report.merge import write_merged

        command = "workbench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        paths = write_merged(list(results), out, command)
        print_summary(apply_budget(load_results(paths["results"]), limits))
        if limits:
            write_reports(paths["results"], out, budget=limits)
        click.echo("written: " + ", ".join(str(p) for p in paths.values()))
        if mlflow_uri:
            log_mlflow(paths["results"], mlflow_uri, mlflow_experiment, Path(out))
        return
    if compare:
        if len(results) != 2:
            raise RecipeError(f"--compare needs exactly two results files (before, after); got {len(results)}")
        from ..report.compare import write_compare

        paths = write_compare(results[0], results[1], out)
        click.echo(open(paths["md"], encoding="utf-8").read())
        click.echo("written: " + ", ".join(str(p) for p in paths.values()))
        return

    for path in results:
        doc = apply_budget(load_results(path), limits)
        paths = write_reports(path, out, budget=limits)
        print_summary(doc)
        click.echo("written: " + ", ".join(str(p) for p in paths.values()))
        if mlflow_uri:
            log_mlflow(path, mlflow_uri, mlflow_experiment, paths["md"].parent)


def log_mlflow(results_path, uri: str, experiment, reports_dir) -> None:
    """Log one run's results.json (and its reports) to MLflow at ``uri`` and say where they went."""
    from ..report.tracking import log_to_mlflow

    ids = log_to_mlflow(results_path, uri, experiment=experiment, reports_dir=reports_dir)
    click.echo(f"mlflow:  {len(ids) - 1} runs under parent run {ids[0]} at {uri}")
