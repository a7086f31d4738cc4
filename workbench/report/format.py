"""Reading numbers out of results.json and writing them as text: shared by every report module.

Reports read typed fields of a workbench.pipeline.results.ResultSet; ``finite`` / ``finite_pair`` /
``positive`` turn a typed number (which may be NaN or None) into what a report may print, or None. The ``fmt_*``
functions are the one place a number becomes text, so Markdown, HTML and the terminal agree.
Pure Python: no plotly, no rich, no numpy.
"""
from __future__ import annotations

import math

from workbench.pipeline.result_parts import finite

DASH = "—"


# ---------------------------------------------------------------- coercion
def finite_pair(x) -> tuple[float, float] | None:
    """A (low, high) pair of finite numbers (e.g. a typed 95% CI) as floats, else None."""
    if isinstance(x, (list, tuple)) and len(x) == 2 and all(finite(v) is not None for v in x):
        return float(x[0]), float(x[1])
    return None


def positive(x) -> float | None:
    """``x`` as a float when it is a finite number above zero, else None."""
    x = finite(x)
    return x if x is not None and x > 0 else None


# ---------------------------------------------------------------- formatting
def _ms_decimals(v: float) -> int:
    return 0 if v >= 100 else 1 if v >= 10 else 2 if v >= 0.1 else 3


def fmt_ms(v, ci=None, unit=True) -> str:
    """A latency in ms with decimals by magnitude, and its CI when given; a dash when missing."""
    if v is None:
        return DASH
    d = _ms_decimals(v)
    s = f"{v:.{d}f}" + (" ms" if unit else "")
    return s + (f" [{ci[0]:.{d}f}, {ci[1]:.{d}f}]" if ci else "")


def fmt_acc(v, ci=None) -> str:
    """An accuracy (fraction) as a percentage with its CI when given; a dash when missing."""
    if v is None:
        return DASH
    return f"{v * 100:.1f}%" + (f" [{ci[0] * 100:.1f}, {ci[1] * 100:.1f}]" if ci else "")


def fmt_pts(d, ci=None) -> str:
    """A difference of two accuracies (fractions) in percentage points."""
    if d is None:
        return DASH
    s = f"{d * 100:+.1f} pts"
    return s + (f" [{ci[0] * 100:+.1f}, {ci[1] * 100:+.1f}]" if ci else "")


def fmt_speedup(ratio, ci=None, verdict=None) -> str:
    """ratio = variant median / teacher median; shown as a speed-up (teacher / variant)."""
    if ratio is None or ratio <= 0:
        return DASH
    s = f"{1 / ratio:.2f}×"
    if ci and ci[0] > 0:
        s += f" [{1 / ci[1]:.2f}, {1 / ci[0]:.2f}]"
    return s + (f" {verdict}" if verdict else "")


def fmt_mb(nbytes, unit=True) -> str:
    """A byte count in MB; a dash when missing."""
    return DASH if nbytes is None else f"{nbytes / 1e6:.2f}" + (" MB" if unit else "")


def fmt_params(n) -> str:
    """A parameter count as M / k; a dash when missing."""
    if n is None:
        return DASH
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k" if n >= 1e3 else f"{n:.0f}"


def fmt_threads(n, adjective=False) -> str:
    """"1 thread" / "2 threads", or "2-thread" as an adjective."""
    return f"{n}-thread" if adjective else f"{n} thread" + ("" if n == 1 else "s")
