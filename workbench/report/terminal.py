"""A rich summary table of a results.json for the terminal (same numbers as the reports).

Wide consoles (>= WIDE_COLUMNS) get the full table; narrower ones a compact table of the columns
that decide the choice, laid out so that it fits 80 columns without truncating a cell.
"""
from __future__ import annotations

from workbench.report.analysis import Report, analyse
from workbench.report.format import DASH, fmt_mb, fmt_ms
from workbench.report.metric import ACCURACY, MetricStyle
from workbench.report.rows import COLUMNS, PARETO_MARK, table_cells

WIDE_COLUMNS = 150

# (column of rows.COLUMNS, header shown in the terminal)
_SHOWN = (("variant", "variant"), ("runtime", "runtime"), ("threads", "thr"),
          ("accuracy [95% CI]", "accuracy [95% CI]"), ("median [95% CI]", "median [95% CI]"),
          ("p90 [95% CI]", "p90"), ("speed-up vs teacher fp32 [95% CI]", "speed-up vs teacher fp32"),
          ("size", "size"), ("peak mem Δ", "peak mem Δ"), ("Pareto", "Pareto"))


def _wide_table(rep: Report):
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(rep.title), caption=Text(rep.disclaimer))
    idx = [COLUMNS.index(c) for c, _ in _SHOWN]
    for (_, header), i in zip(_SHOWN, idx):
        header = header.replace("accuracy", rep.metric.name, 1) if i == COLUMNS.index("accuracy [95% CI]") else header
        table.add_column(header, no_wrap=header in ("variant", "median [95% CI]"),
                         justify="left" if i < 3 else "right")
    for r in rep.rows:
        cells = table_cells(r, rep.metric)
        text = [cells[i][0] if COLUMNS[i] != "p90 [95% CI]" else cells[i][0].split(" [")[0] for i in idx]
        style = "red" if not r.ok else "bold" if r is rep.recommended else None
        table.add_row(*(Text(t) for t in text), style=style)
    return table


def compact_cells(r, style: MetricStyle = ACCURACY) -> list[str]:
    """variant, thr, the metric / [CI] (as ``style`` writes it), median ms / [CI], speed-up × / verdict,
    size MB, Pareto mark.

    Each interval and verdict goes on a second line of its cell, so the table fits 80 columns.
    """
    thr = DASH if r.threads is None else str(r.threads)
    if not r.ok:
        return [r.variant, thr, "FAILED", DASH, DASH, fmt_mb(r.size_bytes, unit=False), ""]
    acc = style.fmt(r.accuracy, r.accuracy_ci).replace(" [", "\n[", 1)
    med = fmt_ms(r.median, r.median_ci, unit=False).replace(" [", "\n[", 1)
    speed = DASH if not r.ratio or r.ratio <= 0 else f"{1 / r.ratio:.2f}×" + (f"\n{r.verdict}" if r.verdict else "")
    return [r.variant, thr, acc, med, speed, fmt_mb(r.size_bytes, unit=False), PARETO_MARK if r.pareto else ""]


def _split_name(name: str, width: int) -> str:
    """Break a variant name after a '.' so that each line fits `width` (as far as its parts allow)."""
    lines, line = [], ""
    for part in name.replace(".", ".\0").split("\0"):
        if line and len(line) + len(part.rstrip(".")) > width:
            lines.append(line)
            line = ""
        line += part
    return "\n".join(lines + [line])


_COMPACT_HEADERS = ("variant", "thr", "accuracy\n[95% CI]", "median ms\n[95% CI]", "speed-up\nvs teacher",
                    "size\nMB", PARETO_MARK)
_GAP = 2  # columns between two cells: the box's blank divider plus the collapsed padding


def _compact_table(rep: Report, width: int):
    from rich import box
    from rich.table import Table
    from rich.text import Text

    rows = [compact_cells(r, rep.metric) for r in rep.rows]
    headers = (_COMPACT_HEADERS[:2] + (_COMPACT_HEADERS[2].replace("accuracy", rep.metric.name),)
               + _COMPACT_HEADERS[3:])

    def natural(i):
        return max(len(line) for text in [headers[i]] + [c[i] for c in rows] for line in text.split("\n"))

    # the other columns keep their natural width; long variant names break after a '.' to fit
    room = width - sum(natural(i) for i in range(1, len(_COMPACT_HEADERS))) - _GAP * (len(_COMPACT_HEADERS) - 1)
    if rows and natural(0) > room:
        for c in rows:
            c[0] = _split_name(c[0], max(room, 8))
    table = Table(title=Text(rep.title), caption=Text(rep.disclaimer), box=box.SIMPLE_HEAD,
                  show_edge=False, pad_edge=False, padding=(0, 1), collapse_padding=True)
    for i, header in enumerate(headers):  # fold, never cut with "…", if the console is tiny
        table.add_column(header, overflow="fold", justify="left" if i == 0 else "center" if i == 6 else "right")
    for i, (r, cells) in enumerate(zip(rep.rows, rows)):
        style = "red" if not r.ok else "bold" if r is rep.recommended else None
        table.add_row(*(Text(t) for t in cells), style=style,
                      end_section=i + 1 < len(rep.rows) and rep.rows[i + 1].threads != r.threads)
    return table


def print_summary(results, console=None) -> None:
    """The summary table and recommendation of a results.json (a ResultSet or its dict) on ``console``."""
    from rich.console import Console
    from rich.text import Text

    console = console or Console()
    rep = analyse(results)
    wide = console.width >= WIDE_COLUMNS
    console.print(_wide_table(rep) if wide else _compact_table(rep, console.width))
    if not wide:
        console.print(Text(f"{PARETO_MARK} = on the Pareto front of its thread count. Compact table for a "
                           f"narrow terminal: report.md has every column.", style="dim"))
    console.print(Text(rep.answer, style="bold"))
    console.print(Text(f"Rule: {rep.rule}."))
    for a in rep.auto:
        console.print(Text(f"auto ({a.variant}): {a.message}", style="bold red" if a.loud else None))
    for d in rep.diagnostics:
        if d.slower:
            console.print(Text(f"⚠ {d.variant}@{d.runtime} is SLOWER than {(d.against or 'its source').split('@')[0]} "
                               f"(ratio {d.ratio:.2f}): do not ship it for speed.", style="bold red"))
    for r in rep.failed:
        console.print(Text(f"FAILED {r.id}: {r.error}", style="red"))
    if rep.warnings:
        kinds = ", ".join(f"{g.code} ×{g.count}" for g in rep.warning_groups)
        console.print(Text(f"{len(rep.warnings)} stability warning(s) ({kinds}); see report.md for what to do.",
                           style="yellow"))
