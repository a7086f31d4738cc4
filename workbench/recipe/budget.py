"""A recipe's ``[budget]``: what the report's recommendation must meet, in the task metric's own units.

``max_drop`` is how far below the fp32 teacher a variant may be: accuracy points for accuracy (0.5 =
half a point), plain metric units otherwise (cosine: 0.05 means cosine >= the teacher's - 0.05).
``min_metric`` is an absolute minimum of the metric (accuracy as a fraction, 0.97; cosine 0.95);
``latency_ms`` and ``size_mb`` are absolute limits. Every key is optional: the report then uses the
metric's default drop (workbench.report.metric) and no absolute limit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

from ..errors import RecipeError

BUDGET_HELP = {"max_drop": "the most the metric may fall below the fp32 teacher's (accuracy: points; cosine: "
                           "cosine units, e.g. 0.05)",
               "min_metric": "the metric's minimum (accuracy as a fraction, e.g. 0.97; cosine e.g. 0.95)",
               "latency_ms": "the most median latency in ms", "size_mb": "the largest artifact size in MB"}


@dataclass(frozen=True)
class BudgetSection:
    """A recipe's ``[budget]``: limits the recommended variant must meet (None = not given; see the module)."""

    max_drop: float | None = None
    min_metric: float | None = None
    latency_ms: float | None = None
    size_mb: float | None = None


def parse_budget_section(name: str, cls, values: dict) -> BudgetSection:
    """The recipe's [budget] table: known keys, finite numbers >= 0; one-line RecipeError otherwise."""
    valid = [f.name for f in fields(cls)]
    out = {}
    for key, value in values.items():
        if key not in valid:
            raise RecipeError(f"unknown key {key!r} in [{name}]; valid keys: "
                              + "; ".join(f"{k} ({BUDGET_HELP[k]})" for k in valid))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise RecipeError(f"[{name}] {key} must be a number >= 0 ({BUDGET_HELP[key]}), got {value!r}")
        out[key] = float(value)
    return cls(**out)
