"""Plotly figures for report.html, drawn from analysis.Report (imported only when rendering HTML)."""
from __future__ import annotations

import math

import plotly.graph_objects as go

from workbench.report.analysis import Report
from workbench.report.format import fmt_ms, fmt_speedup, fmt_threads

MAX_CHART_POINTS = 1001  # odd, so the median and (with quartilemethod="inclusive") the quartiles are exact
SAMPLES_CAPTION = (
    f"Latency distributions: a measurement with more than {MAX_CHART_POINTS:,} timed runs is drawn from "
    f"{MAX_CHART_POINTS:,} evenly spaced quantiles of its sorted samples (minimum, quartiles, median and "
    "maximum are exact; n is the number of samples). Every statistic in the tables uses all samples, "
    "and results.json keeps them all.")

FAMILY_STYLE = {  # family -> (marker symbol, colour)
    "teacher": ("star", "#222222"),
    "quantized-teacher": ("diamond", "#d62728"),
    "distilled": ("circle", "#1f77b4"),
    "labels-only": ("circle-open", "#7f7f7f"),
    "distilled+quantized": ("square", "#2ca02c"),
}
_OTHER = ("x", "#9467bd")
_LAYOUT = dict(template="plotly_white", font=dict(family="system-ui, sans-serif", size=13),
               margin=dict(l=60, r=20, t=50, b=50), legend=dict(orientation="h", y=-0.18))


def _err(v, ci):
    return (max(0.0, ci[1] - v), max(0.0, v - ci[0])) if ci else (0.0, 0.0)


def accuracy_latency_figures(rep: Report) -> list[tuple[int, go.Figure]]:
    """One figure per thread count: the run's metric vs median latency (log x), CI whiskers, Pareto step line."""
    m, figs = rep.metric, []
    for th in sorted({r.threads for r in rep.rows if r.plottable and r.threads is not None}):
        rows = [r for r in rep.rows if r.plottable and r.threads == th]
        fig = go.Figure()
        for fam in [f for f in FAMILY_STYLE if any(r.family == f for r in rows)] + \
                sorted({r.family for r in rows} - set(FAMILY_STYLE)):
            pts = [r for r in rows if r.family == fam]
            symbol, colour = FAMILY_STYLE.get(fam, _OTHER)
            ex = [_err(r.median, r.median_ci) for r in pts]
            ey = [_err(m.chart(r.accuracy), tuple(m.chart(c) for c in r.accuracy_ci) if r.accuracy_ci else None)
                  for r in pts]
            fig.add_trace(go.Scatter(
                x=[r.median for r in pts], y=[m.chart(r.accuracy) for r in pts], mode="markers", name=fam,
                marker=dict(symbol=symbol, color=colour, size=13 if fam == "teacher" else 10,
                            line=dict(width=1.5, color=colour)),
                error_x=dict(type="data", array=[e[0] for e in ex], arrayminus=[e[1] for e in ex], thickness=1),
                error_y=dict(type="data", array=[e[0] for e in ey], arrayminus=[e[1] for e in ey], thickness=1),
                text=[f"{r.variant}@{r.runtime}<br>median {fmt_ms(r.median, r.median_ci)}<br>"
                      f"{m.name} {m.fmt(r.accuracy, r.accuracy_ci)}<br>speed-up "
                      f"{fmt_speedup(r.ratio, r.ratio_ci, r.verdict)}" + ("<br>Pareto front" if r.pareto else "")
                      for r in pts],
                hovertemplate="%{text}<extra></extra>"))
        front = sorted((r for r in rows if r.pareto), key=lambda r: (r.median, r.accuracy))
        fig.add_trace(go.Scatter(x=[r.median for r in front], y=[m.chart(r.accuracy) for r in front],
                                 mode="lines", line=dict(shape="hv", dash="dot", color="#ff7f0e"),
                                 name="Pareto front", hoverinfo="skip"))
        if rep.recommended is not None and rep.recommended.threads == th:
            r = rep.recommended
            fig.add_annotation(x=math.log10(r.median), y=m.chart(r.accuracy), text="recommended",  # log axis: log10(x)
                               showarrow=True, arrowhead=2, ax=40, ay=40)
        fig.update_layout(title=f"{m.title} vs median latency, {fmt_threads(th)}", **_LAYOUT)
        fig.update_xaxes(type="log", title="median latency per inference (ms, log scale)")
        fig.update_yaxes(title=m.axis)
        figs.append((th, fig))
    return figs


def distillation_figure(rep: Report) -> go.Figure | None:
    """KD minus the twin (labels-only for accuracy) per regime/student in the run's metric, with the CI over seeds."""
    m = rep.metric
    studies = [s for s in rep.studies if s.diff is not None]
    if not studies:
        return None
    labels = [f"{s.student} · {s.regime_label}" for s in studies]
    colours = {"KD helps": "#2ca02c", "KD hurts": "#d62728"}
    fig = go.Figure(go.Scatter(
        x=[m.chart(s.diff) for s in studies], y=labels, mode="markers",
        marker=dict(size=11, color=[colours.get(s.verdict, "#7f7f7f") for s in studies]),
        error_x=dict(type="data", array=[m.chart(s.diff_ci[1] - s.diff) if s.diff_ci else 0 for s in studies],
                     arrayminus=[m.chart(s.diff - s.diff_ci[0]) if s.diff_ci else 0 for s in studies],
                     color="#444"),  # a single colour: the markers carry the verdict colours
        text=[f"{m.diff(s.diff, s.diff_ci)}: {s.verdict}" for s in studies],
        hovertemplate="%{y}<br>%{text}<extra></extra>", showlegend=False))
    fig.add_vline(x=0, line=dict(color="#444", width=1))
    units = "points, " if m.percent else ""
    fig.update_layout(title=f"What distillation bought: KD − {m.twin} {m.name} ({units}95% CI)",
                      height=120 + 45 * len(studies), **_LAYOUT)
    fig.update_xaxes(title=m.diff_axis)
    fig.update_yaxes(autorange="reversed")
    return fig


def chart_points(samples, k: int = MAX_CHART_POINTS) -> list[float]:
    """At most k values standing for `samples` in a chart: the samples themselves when there are
    at most k, else k evenly spaced quantiles (numpy 'linear', i.e. type 7) of the sorted samples.

    The first and last points are the minimum and maximum; with k odd the middle one is the median
    and points (k-1)/4 and 3(k-1)/4 are the quartiles, as results.json computes them.
    """
    xs = sorted(float(v) for v in samples)
    n = len(xs)
    if n <= k:
        return xs
    out = []
    for i in range(k):
        pos = i * (n - 1) / (k - 1)
        lo = int(pos)
        hi = min(lo + 1, n - 1)
        out.append(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))
    return out


def latency_distribution_figure(rep: Report) -> go.Figure | None:
    """Latency samples per variant at the answer's thread count (box plots, log x), downsampled."""
    rows = [r for r in rep.rows if r.ok and r.samples and r.threads == rep.threads]
    if not rows:
        return None
    fig = go.Figure()
    for r in rows:
        colour = FAMILY_STYLE.get(r.family, _OTHER)[1]
        points = chart_points(r.samples)
        extra = {"quartilemethod": "inclusive"} if len(points) < len(r.samples) else {}  # see chart_points
        fig.add_trace(go.Box(x=points, name=f"{r.variant}@{r.runtime} (n={len(r.samples):,})",
                             marker_color=colour, boxpoints="outliers", showlegend=False, **extra))
    fig.update_layout(title=f"Latency distribution, {fmt_threads(rep.threads)} "
                            f"(at most {MAX_CHART_POINTS:,} quantiles per measurement)",
                      height=120 + 40 * len(rows), **_LAYOUT)
    fig.update_xaxes(type="log", title="latency (ms, log scale)")
    return fig


def sensitivity_figure(rows, variant: str) -> go.Figure:
    """Per-node sensitivity (output error when only that node is quantized), most sensitive on top."""
    rows = list(rows)
    fig = go.Figure(go.Bar(x=[e for _, _, e in rows], y=[f"{n} ({op})" for n, op, _ in rows], orientation="h",
                           marker_color="#d62728", hovertemplate="%{y}: %{x:.4f}<extra></extra>"))
    fig.update_layout(title=f"{variant}: per-node quantization sensitivity (relative L2 error of the outputs)",
                      height=120 + 24 * len(rows), **_LAYOUT)
    fig.update_xaxes(title="relative L2 error vs fp32 when only this node is quantized")
    fig.update_yaxes(autorange="reversed")
    return fig


def _family_scatter(fig, rows, x, y, text):
    for fam in [f for f in FAMILY_STYLE if any(r.family == f for r in rows)] + \
            sorted({r.family for r in rows} - set(FAMILY_STYLE)):
        pts = [r for r in rows if r.family == fam]
        symbol, colour = FAMILY_STYLE.get(fam, _OTHER)
        fig.add_trace(go.Scatter(x=[x(r) for r in pts], y=[y(r) for r in pts], mode="markers", name=fam,
                                 marker=dict(symbol=symbol, color=colour, size=10, line=dict(width=1.5, color=colour)),
                                 text=[text(r) for r in pts], hovertemplate="%{text}<extra></extra>"))


def tradeoff_figures(rep: Report) -> list[tuple[str, go.Figure]]:
    """Accuracy vs size; median latency vs peak memory; load / first-inference phases and the time to
    make each variant (compression cost) — at the report's thread count."""
    rows = [r for r in rep.rows if r.plottable and r.threads == rep.threads]
    m, figs = rep.metric, []
    sized = [r for r in rows if r.size_bytes]
    if sized:
        fig = go.Figure()
        _family_scatter(fig, sized, lambda r: r.size_bytes / 1e6, lambda r: m.chart(r.accuracy),
                        lambda r: f"{r.variant}@{r.runtime}<br>{r.size_bytes / 1e6:.3f} MB<br>{m.fmt(r.accuracy)}")
        fig.update_layout(title=f"{m.title} vs artifact size", **_LAYOUT)
        fig.update_xaxes(type="log", title="artifact size (MB, log scale)")
        fig.update_yaxes(title=m.axis)
        figs.append(("size", fig))
    mem = [r for r in rows if r.peak_delta_mb is not None]
    if mem:
        fig = go.Figure()
        _family_scatter(fig, mem, lambda r: r.peak_delta_mb, lambda r: r.median,
                        lambda r: f"{r.variant}@{r.runtime}<br>peak memory +{r.peak_delta_mb:.1f} MB<br>"
                                  f"median {fmt_ms(r.median, r.median_ci)}")
        fig.update_layout(title=f"Median latency vs peak memory, {fmt_threads(rep.threads)}", **_LAYOUT)
        fig.update_xaxes(title="peak memory above the pre-load baseline (MB)")
        fig.update_yaxes(type="log", title="median latency (ms, log scale)")
        figs.append(("memory", fig))
    ph = sorted([r for r in rows if r.load_ms is not None or r.first_ms is not None or r.made_in_s is not None],
                key=lambda r: (r.runtime, r.variant))
    if ph:
        names = [f"{r.variant}@{r.runtime}" for r in ph]
        fig = go.Figure([go.Bar(name="load (ms)", x=names, y=[r.load_ms for r in ph]),
                         go.Bar(name="first inference (ms)", x=names, y=[r.first_ms for r in ph]),
                         go.Bar(name="time to make (s)", x=names, y=[r.made_in_s for r in ph], yaxis="y2",
                                marker=dict(pattern=dict(shape="/")))])
        fig.update_layout(title="Load and first inference (fresh process) and the cost of making each variant",
                          barmode="group", yaxis=dict(title="ms", type="log"),
                          yaxis2=dict(title="time to make (s)", overlaying="y", side="right", type="log"), **_LAYOUT)
        figs.append(("phases", fig))
    return figs
