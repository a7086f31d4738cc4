"""A rich summary table of a results.json for the terminal (same numbers as the reports)."""
from __future__ import annotations

from workbench.report.analysis import COLUMNS, analyse, table_cells

# (column of analysis.COLUMNS, header shown in the terminal)
_SHOWN = (("variant", "variant"), ("runtime", "runtime"), ("threads", "thr"),
          ("accuracy [95% CI]", "accuracy [95% CI]"), ("median [95% CI]", "median [95% CI]"),
          ("p90 [95% CI]", "p90"), ("speed-up vs teacher fp32 [95% CI]", "speed-up vs teacher fp32"),
          ("size", "size"), ("peak mem Δ", "peak mem Δ"), ("Pareto", "Pareto"))


def print_summary(results: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    rep = analyse(results)
    table = Table(title=Text(rep.title), caption=Text(rep.disclaimer))
    idx = [COLUMNS.index(c) for c, _ in _SHOWN]
    for (_, header), i in zip(_SHOWN, idx):
        table.add_column(header, no_wrap=header in ("variant", "median [95% CI]"),
                         justify="left" if i < 3 else "right")
    for r in rep.rows:
        cells = table_cells(r)
        text = [cells[i][0] if COLUMNS[i] != "p90 [95% CI]" else cells[i][0].split(" [")[0] for i in idx]
        style = "red" if not r.ok else "bold" if r is rep.recommended else None
        table.add_row(*(Text(t) for t in text), style=style)
    console.print(table)
    console.print(Text(rep.answer, style="bold"))
    console.print(Text(f"Rule: {rep.rule}."))
    for r in rep.failed:
        console.print(Text(f"FAILED {r.id}: {r.error}", style="red"))
    if rep.warnings:
        console.print(Text(f"{len(rep.warnings)} stability warning(s); see report.md for what to do.",
                           style="yellow"))
