"""Per-runtime views of a results.json: the same model across runtimes, per-runtime Pareto fronts, the
ORT-mobile operator configs, ExecuTorch's delegated share, the runtimes skipped, metric gaps vs PyTorch.

Every number of the run's metric is written in that metric's words and units (workbench.report.metric: accuracy
as a percentage with gaps in points; cosine as a plain number with gaps in cosine). results.json stores the gap
to PyTorch and its tolerance as 100 x the difference of the metric ("gap_points", "tolerance_points"); a
plain-number metric reads them divided by 100.

Built only when a run measured more than one runtime (or skipped one); report.md and report.html lay out
the same RuntimeView. Pure Python except ``runtime_figure`` (plotly, imported when HTML is rendered).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from workbench.pipeline.result_parts import finite, mapping, objects
from workbench.pipeline.results import Result, ResultSet
from workbench.report.format import DASH, finite_pair, fmt_mb, fmt_ms, fmt_threads
from workbench.report.metric import ACCURACY, MetricStyle, metric_of
from workbench.report.rows import pareto_front


def runtime_columns(style: MetricStyle = ACCURACY) -> tuple:
    """The runtimes table's header in the run's metric ("accuracy [95% CI]", "Δ vs PyTorch (pts)" / "(cosine)")."""
    return ("model", "variant", "runtime", "precision", "median [95% CI]",
            "ratio to ort fp32 of the same model [95% CI]", "verdict", f"{style.name} [95% CI]",
            f"Δ vs PyTorch ({'pts' if style.percent else style.name})", "size", "Pareto (runtime)")


def ratio_note(style: MetricStyle = ACCURACY) -> str:
    """The note under the runtimes table, naming the run's metric."""
    return ("Ratio = median of the row / median of the same model's fp32 artifact on ort at the same thread "
            "count (< 1 is faster). Cross-runtime ratios compare separate interleaved runs (the harness "
            "interleaves the artifacts of one runtime at a time): unpaired two-level bootstrap over processes "
            "and samples, so drift between runs is not cancelled; ratios within ort are paired by round. "
            f"Δ vs PyTorch = {style.name} through the runtime minus the PyTorch model's (fp32 source for "
            "quantized rows); ⚠ = beyond the tolerance. ★ = on that runtime's Pareto front.")


def gap_text(points: float, style: MetricStyle = ACCURACY) -> str:
    """A stored gap to PyTorch (100 x the metric difference) in the metric's units: "-1.4" points or "-0.0188"."""
    return f"{points:+.1f}" if style.percent else style.diff(points / 100 + 0.0)  # + 0.0: no "-0.0000"


def tolerance_text(points: float, style: MetricStyle = ACCURACY) -> str:
    """A stored tolerance (100 x the metric difference) in the metric's units: "0.5" points or "0.01"."""
    return f"{points:g}" if style.percent else f"{points / 100:g}"


RUNTIME_COLUMNS = runtime_columns(ACCURACY)
RATIO_NOTE = ratio_note(ACCURACY)
GAP_MARK = "⚠"
PAD_MARK = "‡"  # a latency of a fixed-length (padded) token artifact, not comparable with real-length rows
ORDER = ("ort", "ort-mobile", "executorch", "litert")


def _tokens(shape) -> int | None:
    """The sequence length of a [1, L] token input's shape (a list, or {"shape": [...]} as LiteRT records it)."""
    shape = mapping(shape).get("shape", shape)
    if isinstance(shape, list) and len(shape) == 2 and isinstance(shape[1], int):
        return shape[1]
    return None


def padded(rec: Result) -> tuple[int, int] | None:
    """(fixed tokens the artifact runs, real tokens of the measured text) when the artifact was exported at a
    fixed sequence length (ExecuTorch / LiteRT text artifacts: ``export.fixed_inputs``) longer than the
    measured input, which its runtime adapter right-pads; None otherwise (ORT runs the real length)."""
    fixed = _tokens(mapping(mapping(rec.artifact.export).get("fixed_inputs")).get("attention_mask"))
    real = _tokens(mapping(mapping(rec.input).get("shapes")).get("attention_mask"))
    return (fixed, real) if fixed is not None and real is not None and fixed > real else None


def padding_note(rows) -> str | None:
    """The note on rows marked ``PAD_MARK``: their runtime ran a padded fixed-length sequence, ORT the real
    length, so their latencies and ratios to ort fp32 measure different work; None when no row is padded."""
    pads = sorted({(r.runtime, r.padded) for r in rows if r.padded}, key=lambda p: _rt_key(p[0]))
    if not pads:
        return None
    lengths = "; ".join(f"{rt}: {fixed} tokens for a {real}-token text" for rt, (fixed, real) in pads)
    return (f"{PAD_MARK} these text artifacts were exported at a fixed sequence length and ran the measured text "
            f"right-padded to it ({lengths}), while ort and ort-mobile ran the text's real length: their latencies "
            "and ratios to ort fp32 include the padding's work (an app on that runtime pays it too, unless it "
            "exports at a shorter length) and do not compare the runtimes on equal work.")


@dataclass(frozen=True)
class RuntimeRow:
    """One record in the runtimes section: latency vs the ort fp32 baseline, the metric and its gap to PyTorch."""
    model: str
    variant: str
    runtime: str
    precision: str | None
    median: float | None
    median_ci: tuple | None
    ratio: float | None
    ratio_ci: tuple | None
    verdict: str | None
    paired: bool | None
    accuracy: float | None
    accuracy_ci: tuple | None
    gap_points: float | None
    tolerance_points: float | None
    within: bool | None
    size_bytes: float | None
    top1: float | None  # parity: share of check inputs keeping PyTorch's top-1 class
    pareto: bool = False
    padded: tuple | None = None  # (fixed tokens run, real tokens measured): see padded()

    def cells(self, style: MetricStyle = ACCURACY) -> list[str]:
        """The row's table cells, its metric and gap to PyTorch in ``style``'s words and units."""
        if self.ratio is None:
            ratio = DASH
        elif self.verdict == "baseline":
            ratio = "1.00 (baseline)"
        else:
            ratio = f"{self.ratio:.2f}" + (f" [{self.ratio_ci[0]:.2f}, {self.ratio_ci[1]:.2f}]" if self.ratio_ci else "")
        verdict = DASH if self.verdict in (None, "baseline") else self.verdict + ("" if self.paired else " (unpaired)")
        gap = DASH if self.gap_points is None else (f"{GAP_MARK} " if self.within is False else "") + \
            gap_text(self.gap_points, style) + (f" (tol {tolerance_text(self.tolerance_points, style)})"
                                                if self.tolerance_points is not None else "")
        median = fmt_ms(self.median, self.median_ci) + (f" {PAD_MARK}" if self.padded and self.median else "")
        return [self.model, self.variant, self.runtime, self.precision or DASH, median,
                ratio + (f" {PAD_MARK}" if self.padded and self.ratio is not None else ""), verdict, style.fmt(self.accuracy, self.accuracy_ci), gap, fmt_mb(self.size_bytes),
                "★" if self.pareto else ""]


@dataclass(frozen=True)
class RuntimeView:
    """The runtimes section: runtimes measured / skipped, rows, per-runtime Pareto fronts, mobile export details."""
    threads: int
    runtimes: tuple  # measured, in display order
    skipped: tuple  # (runtime, reason)
    notes: tuple
    rows: tuple  # RuntimeRow at `threads`, grouped by model
    fronts: tuple  # (runtime, tuple of RuntimeRow, fastest first)
    ort_mobile: tuple  # (variant, config path, operator count)
    executorch: tuple  # (variant, precision, delegated share, delegated nodes, nodes left, ops left)
    gaps: tuple  # RuntimeRow beyond tolerance, every thread count folded (the metric does not depend on threads)
    machine_line: str
    metric: MetricStyle = ACCURACY  # the run's metric, which every cell and sentence speaks

    def headline(self) -> str:
        return (f"Runtimes measured: {', '.join(self.runtimes)} ({fmt_threads(self.threads)} shown)"
                + (f"; skipped: {', '.join(r for r, _ in self.skipped)}" if self.skipped else "") + ".")


def _rt_key(name: str) -> tuple:
    return (ORDER.index(name) if name in ORDER else len(ORDER), name)


def _cross(rec: Result):
    """The record's cross-runtime comparison vs the fp32 of the same model on ort, None when it has none."""
    return next((c for c in rec.cross_runtime if c.kind == "fp32 of the same model on ort"), None)


def _model(rec: Result) -> str:
    """The PyTorch model a record's artifact came from (older files: the variant's stem)."""
    return str(rec.model or str(rec.variant or "?").rsplit(".", 1)[0])


def _row(rec: Result) -> RuntimeRow:
    """The runtime view of one record: its latency vs the ort fp32 baseline and its gap to PyTorch."""
    art, lat, q, ok = rec.artifact, rec.latency, rec.quality, rec.ok
    vp = mapping(q.vs_pytorch) if q else {}
    c = _cross(rec)
    rt = str(rec.runtime.name or "?")
    is_base = rt == "ort" and art.precision == "fp32" and str(rec.variant or "").endswith(".fp32")
    ratio, ci, verdict, paired = (1.0, None, "baseline", True) if is_base and ok else (
        (finite(c.ratio_median), finite_pair(c.ci95), c.verdict, bool(c.get("paired"))) if c
        else (None, None, None, None))
    exp = mapping(art.export)
    return RuntimeRow(
        model=_model(rec), variant=str(rec.variant), runtime=rt,
        precision=None if art.precision is None else str(art.precision),
        median=finite(lat.median) if ok and lat else None,
        median_ci=finite_pair(lat.ci95_median) if ok and lat else None,
        ratio=ratio, ratio_ci=ci, verdict=verdict, paired=paired,
        accuracy=finite(q.value) if q else None, accuracy_ci=finite_pair(q.ci95) if q else None,
        gap_points=finite(vp.get("gap_points")), tolerance_points=finite(vp.get("tolerance_points")),
        within=vp.get("within") if isinstance(vp.get("within"), bool) else None, size_bytes=finite(art.size_bytes),
        top1=finite(mapping(exp.get("parity")).get("top1_agreement")), padded=padded(rec))


def build_runtime_view(results: ResultSet, threads: int, machine: str,
                       style: MetricStyle | None = None) -> RuntimeView | None:
    """The runtimes section (None when one runtime was measured and none skipped): per-runtime rows of the
    models measured on several runtimes at ``threads``, Pareto fronts, mobile export details, PyTorch gaps;
    ``style``: the run's metric (default: read from ``results``)."""
    info = results.run.runtimes
    recs = list(results.results)
    measured = sorted({str(r.runtime.name) for r in recs}, key=_rt_key)
    skipped = tuple((str(s.get("runtime")), str(s.get("reason") or "")) for s in objects(info.get("skipped")))
    if len(measured) < 2 and not skipped:
        return None
    at = [r for r in recs if r.runtime.threads == threads]
    models = list(dict.fromkeys(_model(r) for r in recs))
    shared = {m for m in models if len({str(r.runtime.name) for r in at if _model(r) == m}) > 1}
    rows = [_row(r) for r in at if _model(r) in shared]
    # per-runtime Pareto fronts over every variant measured on that runtime at `threads`
    fronts, marked = [], set()
    for rt in measured:
        pts = [_row(r) for r in at if r.runtime.name == rt]
        pts = [p for p in pts if p.median is not None and p.accuracy is not None]
        front = sorted((pts[i] for i in pareto_front([(p.median, p.accuracy) for p in pts])),
                       key=lambda p: (p.median, p.variant))
        marked |= {(p.variant, p.runtime) for p in front}
        if front:
            fronts.append((rt, tuple(front)))
    prec = {"fp32": 0}
    rows = sorted((replace(r, pareto=(r.variant, r.runtime) in marked) for r in rows),
                  key=lambda r: (models.index(r.model), prec.get(r.precision or "", 1), r.variant, _rt_key(r.runtime)))
    firsts = {}
    for r in recs:  # one entry per artifact (its first record)
        firsts.setdefault((str(r.variant), str(r.runtime.name)), r)
    ort_mobile, et = [], []
    for (variant, rt), r in firsts.items():
        exp = mapping(r.artifact.export)
        if rt == "ort-mobile" and exp.get("required_operators_config"):
            ort_mobile.append((variant, str(exp["required_operators_config"]), exp.get("operator_count")))
        if rt == "executorch" and finite(exp.get("delegated_share")) is not None:
            et.append((variant, str(r.artifact.precision or DASH), float(exp["delegated_share"]),
                       exp.get("delegated_nodes"), exp.get("non_delegated_nodes"),
                       ", ".join(f"{k} ×{v}" for k, v in mapping(exp.get("non_delegated_ops")).items()) or DASH))
    gaps = tuple(_row(r) for (variant, rt), r in firsts.items()
                 if r.quality is not None and mapping(r.quality.vs_pytorch).get("within") is False)
    machine_line = (f"All numbers are from this machine's CPU ({machine}) running the mobile runtimes' CPU kernels "
                    "(ORT's CPU execution provider for ort-mobile, XNNPACK for ExecuTorch and LiteRT), not a phone: "
                    "they rank runtimes and variants on this CPU; re-measure on the target device.")
    notes = [str(n) for n in (info.get("notes") if isinstance(info.get("notes"), list) else [])
             if not str(n).startswith("skipped runtime")]
    pad = padding_note(rows)
    return RuntimeView(threads=threads, runtimes=tuple(measured), skipped=skipped,
                       notes=tuple(notes + ([pad] if pad else [])),
                       rows=tuple(rows), fronts=tuple(fronts), ort_mobile=tuple(ort_mobile), executorch=tuple(et),
                       gaps=gaps, machine_line=machine_line, metric=style or metric_of(results))


def front_line(rt: str, front, style: MetricStyle = ACCURACY) -> str:
    """One line naming a runtime's Pareto front, fastest first, with each point's metric in ``style``."""
    return f"{rt}: " + " → ".join(f"{p.variant} ({fmt_ms(p.median)}, {style.fmt(p.accuracy)})" for p in front)


def detail_lines(v: RuntimeView) -> list[str]:
    """The plain-text facts below the table (same text in Markdown and HTML)."""
    out = []
    for variant, cfg, n in v.ort_mobile:
        out.append(f"ORT-mobile {variant}: {n if n is not None else '?'} operators in {cfg} "
                   "(build a reduced runtime with --include_ops_by_config)")
    for variant, prec, share, d, left, ops in v.executorch:
        rest = f"{left} left to portable kernels: {ops}" if left else "none left to portable kernels"
        out.append(f"ExecuTorch {variant} ({prec}): {share:.0%} of graph nodes delegated to XNNPACK "
                   f"({d} delegated, {rest})")
    return out


def gap_lines(v: RuntimeView) -> list[str]:
    """Lines for the artifacts whose metric through the runtime is outside the tolerance vs PyTorch."""
    m = v.metric
    if not v.gaps:
        return [f"Every artifact's {m.name} through its runtime is within tolerance of its PyTorch model."]
    unit = " pts" if m.percent else f" {m.name}"
    return [f"{GAP_MARK} {r.variant} on {r.runtime}: {m.fmt(r.accuracy)} is {gap_text(r.gap_points, m)}{unit} "
            f"from the PyTorch model" + ("" if r.tolerance_points is None else
                                          f" (tolerance {tolerance_text(r.tolerance_points, m)}{unit})")
            + (f"; top-1 agreement {r.top1:.0%} on the parity inputs" if r.top1 is not None else "")
            for r in v.gaps]


def runtime_figure(v: RuntimeView, rows):
    """The run's metric vs median latency, one colour per runtime, each runtime's Pareto step line (plotly)."""
    import plotly.graph_objects as go

    m = v.metric
    colours = {"ort": "#1f77b4", "ort-mobile": "#17becf", "executorch": "#d62728", "litert": "#2ca02c"}
    fig = go.Figure()
    for rt in v.runtimes:
        pts = [r for r in rows if r.runtime == rt and r.plottable and r.threads == v.threads]
        if not pts:
            continue
        c = colours.get(rt, "#9467bd")
        fig.add_trace(go.Scatter(x=[r.median for r in pts], y=[m.chart(r.accuracy) for r in pts], mode="markers",
                                 name=rt, marker=dict(color=c, size=9),
                                 text=[f"{r.variant}@{rt}<br>{fmt_ms(r.median, r.median_ci)}<br>"
                                       f"{m.fmt(r.accuracy, r.accuracy_ci)}" for r in pts],
                                 hovertemplate="%{text}<extra></extra>"))
        front = dict(v.fronts).get(rt, ())
        fig.add_trace(go.Scatter(x=[p.median for p in front], y=[m.chart(p.accuracy) for p in front], mode="lines",
                                 line=dict(shape="hv", dash="dot", color=c), name=f"{rt} Pareto front",
                                 hoverinfo="skip", showlegend=False))
    fig.update_layout(template="plotly_white",
                      title=f"{m.title} vs latency per runtime ({fmt_threads(v.threads)})",
                      xaxis=dict(title="median latency (ms, log)", type="log"), yaxis=dict(title=m.axis),
                      margin=dict(l=60, r=20, t=50, b=50), legend=dict(orientation="h", y=-0.18))
    return fig
