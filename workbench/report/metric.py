"""How a report speaks the run's metric: its name, how a value, a difference and a budget read.

Accuracy is a fraction shown as a percentage, compared in percentage points; a similarity such as the
cosine of a student's embeddings to the teacher's is shown as a plain number and compared in its own
units. One `MetricStyle` per metric, registered by the metric's name (results.json's quality.metric /
task.metric); a metric with no registered style reads as a plain number. Pure Python.
"""
from __future__ import annotations

from dataclasses import dataclass

from workbench.report.format import DASH, fmt_acc, fmt_pts


@dataclass(frozen=True)
class MetricStyle:
    """One metric as the reports write it: ``name`` (the word in headers and sentences), ``percent``
    (values are fractions shown as percentages, differences in points) and ``default_max_drop`` (the
    recommendation's budget below the fp32 teacher, in the metric's own units: points for a percentage)."""

    name: str
    percent: bool
    default_max_drop: float
    decimals: int = 4  # plain-number metrics: digits after the point
    twin: str = "labels-only"  # the distillation study's baseline, as a column header
    twin_training: str = "labels-only training"  # ... and in a sentence ("KD ... vs <twin_training>")

    @property
    def scale(self) -> float:
        """Factor from a stored difference (a fraction) to the budget's units: 100 for points, else 1."""
        return 100.0 if self.percent else 1.0

    @property
    def unit(self) -> str:
        """The word after a difference in the budget's units: "points" or "" (plain numbers)."""
        return "points" if self.percent else ""

    @property
    def title(self) -> str:
        """The name at the start of a heading: first letter upper-cased, the rest as written ("Mean IoU")."""
        return self.name[:1].upper() + self.name[1:]

    @property
    def axis(self) -> str:
        """A chart axis title for the metric's values."""
        return f"{self.name} (%)" if self.percent else self.name

    @property
    def diff_axis(self) -> str:
        """A chart axis title for a difference of two values."""
        return f"{self.name} difference (percentage points)" if self.percent else f"{self.name} difference"

    def chart(self, v: float) -> float:
        """A value as plotted: percent for a percentage metric, else itself."""
        return v * self.scale

    def fmt(self, v, ci=None) -> str:
        """A value with its CI when given ("97.1% [96.0, 98.0]" or "0.9712 [0.9680, 0.9740]"); a dash when missing."""
        if self.percent:
            return fmt_acc(v, ci)
        if v is None:
            return DASH
        d = self.decimals
        return f"{v:.{d}f}" + (f" [{ci[0]:.{d}f}, {ci[1]:.{d}f}]" if ci else "")

    def diff(self, d, ci=None) -> str:
        """A difference of two values ("+0.4 pts [..]" or "-0.0123 [..]"); a dash when missing."""
        if self.percent:
            return fmt_pts(d, ci)
        if d is None:
            return DASH
        k = self.decimals
        return f"{d:+.{k}f}" + (f" [{ci[0]:+.{k}f}, {ci[1]:+.{k}f}]" if ci else "")

    def drop_text(self, drop: float) -> str:
        """A budget in words: "0.5 points" or "0.05 (cosine)"."""
        return f"{drop:g} points" if self.percent else f"{drop:g} ({self.name})"

    def minimum_text(self, v: float) -> str:
        """An absolute minimum in words: "accuracy >= 97%" or "cosine >= 0.95"."""
        return f"{self.name} >= {100 * v:g}%" if self.percent else f"{self.name} >= {v:g}"


METRICS: dict[str, MetricStyle] = {}


def register_metric(style: MetricStyle) -> MetricStyle:
    """Add a metric's style (a duplicate name is an error)."""
    if style.name in METRICS:
        raise ValueError(f"metric style {style.name!r} is registered twice")
    METRICS[style.name] = style
    return style


ACCURACY = register_metric(MetricStyle("accuracy", percent=True, default_max_drop=0.5))
COSINE = register_metric(MetricStyle(
    "cosine", percent=False, default_max_drop=0.05, twin="no hidden states",
    twin_training="the twin trained without the teacher's hidden states"))


def metric_style(name) -> MetricStyle:
    """The style of metric ``name`` (accuracy when none is recorded; a plain number when unregistered)."""
    name = str(name or "accuracy")
    return METRICS.get(name) or MetricStyle(name, percent=False, default_max_drop=COSINE.default_max_drop)


def metric_of(results) -> MetricStyle:
    """The run's metric: the records' quality.metric (the first ok record that has one), else task.metric."""
    for r in results.results:
        m = getattr(r.quality, "metric", None) if r.quality is not None else None
        if r.ok and m:
            return metric_style(m)
    return metric_style(results.run.task.get("metric"))
