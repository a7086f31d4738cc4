"""Progress for every long step: rich bars on a terminal, plain milestone lines otherwise (CI, logs)."""
from __future__ import annotations

import contextlib
import sys
import time


class Progress:
    """Progress output on stderr for long commands: info lines and rich bars, silent with --quiet or off a terminal."""

    def __init__(self, quiet: bool = False, console=None):
        from rich.console import Console

        self.quiet = quiet
        self.console = console or Console(stderr=True, highlight=False)
        self.live = self.console.is_terminal and not quiet

    def info(self, msg: str) -> None:
        """Print one line of progress information (nothing with --quiet)."""
        if not self.quiet:
            self.console.print(msg)

    @contextlib.contextmanager
    def bar(self, description: str, total: float):
        """Yields ``update(completed, detail="")``: a rich bar on a terminal, otherwise lines at each quarter."""
        if self.quiet:
            yield lambda completed, detail="": None
            return
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn

            with RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                              TimeElapsedColumn(), TextColumn("{task.fields[detail]}"),
                              console=self.console, transient=False) as p:
                task = p.add_task(description, total=total, detail="")
                yield lambda completed, detail="": p.update(task, completed=completed, detail=detail)
            return
        start, state = time.perf_counter(), {"next": 0.25}

        def update(completed, detail=""):
            frac = completed / total if total else 1.0
            if frac >= state["next"] or completed >= total:
                while state["next"] <= frac:
                    state["next"] += 0.25
                print(f"  {description}: {completed:g}/{total:g} ({frac:.0%}, {time.perf_counter() - start:.0f} s) {detail}",
                      file=sys.stderr, flush=True)

        print(f"  {description} ...", file=sys.stderr, flush=True)
        yield update
