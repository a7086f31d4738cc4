"""Reports: results.json -> report.md / report.html / a terminal summary.

Reports read ONLY results.json. Importing this package pulls in no torch, onnxruntime, plotly
or rich: plotly loads only when HTML is rendered, rich only when the summary is printed.
"""
from __future__ import annotations

from pathlib import Path

from workbench.errors import OutputError
from workbench.fileio import write_text
from workbench.pipeline.results import ResultSet
from workbench.report.load import as_result_set, load_results
from workbench.report.markdown import render_markdown

__all__ = ["load_results", "as_result_set", "apply_budget", "ResultSet", "render_markdown", "render_html", "print_summary", "write_reports"]


def render_html(results) -> str:
    """One self-contained HTML file (plotly.js inline, no network references)."""
    from workbench.report.html import render_html as _render

    return _render(results)


def print_summary(results, console=None) -> None:
    """A rich table of every measurement plus the recommendation, on `console` (default: stdout)."""
    from workbench.report.terminal import print_summary as _print

    _print(results, console)


def apply_budget(results, budget: dict | None) -> ResultSet:
    """``results`` (a ResultSet or its parsed dict) with ``budget`` (see
    :func:`workbench.report.budget.parse_budget`) as the one the report uses; results.json is not changed."""
    from dataclasses import replace

    results = as_result_set(results)
    if not budget:
        return results
    recipe = {**results.run.recipe, "budget": {**budget, "source": "budget given to workbench report"}}
    keys = results.run.keys if "recipe" in results.run.keys else results.run.keys + ("recipe",)
    return replace(results, run=replace(results.run, recipe=recipe, keys=keys))


def write_reports(results_path, out_dir=None, budget: dict | None = None) -> dict[str, Path]:
    """Write report.md and report.html next to results.json (or into out_dir); return their paths.

    ``budget``: a budget dict (see :func:`workbench.report.budget.parse_budget`) that replaces the recipe's
    for this rendering. Both reports are rendered before anything is written, so a renderer failure changes nothing.
    Each file is then replaced atomically by workbench.fileio.write_text (temp file + rename, normal
    permissions), so neither is ever half-written; should the second write fail, report.md is
    already the new one and the OutputError says which file could not be written.
    """
    src = Path(results_path)
    if src.is_dir():
        src = src / "results.json"
    results = apply_budget(load_results(src), budget)
    texts = {"md": render_markdown(results), "html": render_html(results)}
    out = Path(out_dir) if out_dir is not None else src.parent
    paths = {"md": out / "report.md", "html": out / "report.html"}
    for key, path in paths.items():
        try:
            write_text(path, texts[key])
        except OSError as e:  # write_text raises OutputError itself only when it cannot start
            raise OutputError(f"{path}: cannot write the report ({e.strerror or e})") from e
    return paths
