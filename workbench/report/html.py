"""results.json -> one self-contained report.html (plotly.js inline; no network references).

Same sections and the same text as report.md (both lay out analysis.Report), plus charts and a
sortable table. plotly is imported here, so only when HTML is rendered.
"""
from __future__ import annotations

import html as _html

from workbench.report.analysis import MADE_IN_NOTE, Report, analyse
from workbench.report.format import DASH, fmt_mb, fmt_ms, fmt_params, fmt_speedup, fmt_threads
from workbench.report.modes import modes_html
from workbench.report.quantization import DIAG_COLUMNS, DIAG_NOTE, SLOWER_MARK, auto_note
from workbench.report.rows import columns, table_cells, table_note
from workbench.report.runtimes import detail_lines, front_line, gap_lines, ratio_note, runtime_columns

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1280px;
padding:1rem 2rem;color:#1a1a1a;line-height:1.45}
h1{margin-bottom:.2rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
.disclaimer{background:#fff4e5;border-left:4px solid #f0a020;padding:.4rem .8rem}
.meta,.note{color:#555;font-size:.9rem}
.answer{background:#eef6ee;border-left:4px solid #2ca02c;padding:.6rem 1rem;font-size:1.1rem}
table{border-collapse:collapse;font-size:.85rem;margin:.6rem 0}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f5f5f5}table.sortable th{cursor:pointer;user-select:none}
table.sortable th[data-dir=asc]::after{content:" ▲"}table.sortable th[data-dir=desc]::after{content:" ▼"}
tr.failed td{background:#fde8e8;color:#8b0000}tr.recommended td{background:#eef6ee;font-weight:bold}tr.pareto td:last-child{font-weight:bold;color:#ff7f0e}
code,pre{background:#f5f5f5;padding:.1rem .3rem;border-radius:3px}pre{padding:.6rem}
.kd-helps{color:#1e7b1e}.kd-hurts{color:#b22222}
tr.slower td{background:#fde8e8}.loud{background:#fde8e8;border-left:4px solid #b22222;padding:.4rem .8rem;font-weight:bold}
"""

_SORT_JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, i) {
    th.addEventListener("click", function () {
      var asc = th.dataset.dir !== "asc", body = table.tBodies[0];
      table.querySelectorAll("th").forEach(function (h) { h.dataset.dir = ""; });
      th.dataset.dir = asc ? "asc" : "desc";
      Array.from(body.rows).sort(function (a, b) {
        var x = a.cells[i].dataset.v, y = b.cells[i].dataset.v, nx = parseFloat(x), ny = parseFloat(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? (nx === ny ? 0 : (nx < ny ? -1 : 1)) : x.localeCompare(y);
        return asc ? c : -c;
      }).forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def _e(text) -> str:
    return _html.escape(str(text), quote=True)


def _table(header, rows, cls="", row_classes=None, row_titles=None) -> str:
    """rows: lists of str cells, or of (text, sort key) cells for a sortable table."""
    out = [f'<table class="{cls}">' if cls else "<table>", "<thead><tr>"]
    out += [f"<th>{_e(h)}</th>" for h in header]
    out.append("</tr></thead><tbody>")
    for i, row in enumerate(rows):
        attrs = ""
        if row_classes and row_classes[i]:
            attrs += f' class="{row_classes[i]}"'
        if row_titles and row_titles[i]:
            attrs += f' title="{_e(row_titles[i])}"'
        cells = []
        for c in row:
            if not isinstance(c, tuple):
                cells.append(f"<td>{_e(c)}</td>")
                continue
            text, key = c
            cells.append(f'<td data-v="{_e("Infinity" if key == float("inf") else key)}">{_e(text)}</td>')
        out.append(f"<tr{attrs}>" + "".join(cells) + "</tr>")
    return "\n".join(out) + "\n</tbody></table>"


def _figure(fig, div_id: str) -> str:
    import plotly.io as pio

    return pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})


def _answer(rep: Report) -> list[str]:
    m = rep.metric
    out = ['<section id="answer"><h2>The answer</h2>', f'<p class="answer">{_e(rep.answer)}</p>',
           f"<p>Rule: {_e(rep.rule)}.</p>"]
    if rep.beyond_budget:
        out.append(f"<p>Faster, but outside the {_e(m.name)} budget: " + _e("; ".join(
            f"{r.variant} ({fmt_speedup(r.ratio, r.ratio_ci)}, {m.diff(r.vs_ref)})" for r in rep.beyond_budget)) + ".</p>")
    out.append(f"<h3>Distillation vs quantization vs both ({_e(fmt_threads(rep.threads))})</h3>")
    rows = [[p.approach, "none measured"] + [DASH] * 6 if p.row is None else
            [p.approach, p.row.variant, p.row.runtime, fmt_speedup(p.row.ratio, p.row.ratio_ci, p.row.verdict),
             m.fmt(p.row.accuracy, p.row.accuracy_ci), m.diff(p.row.vs_ref), fmt_mb(p.row.size_bytes),
             "yes" if p.within_budget else "no"] for p in rep.picks]
    out.append(_table(["approach", "best variant", "runtime", "speed-up vs teacher fp32 [95% CI]",
                       f"{m.name} [95% CI]", f"Δ {m.name} vs teacher", "size", "within budget"], rows))
    best = "most accurate" if m.percent else f"highest-{m.name}"
    out.append(f'<p class="note">Best = the family\'s fastest variant within the {_e(m.name)} budget, '
               f"else its {_e(best)} one.</p></section>")
    return out


def _distillation(rep: Report) -> list[str]:
    out = ['<section id="distillation"><h2>What distillation bought</h2>', f"<p>{_e(rep.study_summary)}</p>"]
    if rep.studies:
        m = rep.metric
        rows = [[s.student, s.regime_label, fmt_params(s.params), DASH if s.n_train is None else str(s.n_train),
                 str(s.n_seeds), m.fmt(s.labels_mean), m.fmt(s.kd_mean), m.diff(s.diff, s.diff_ci), s.verdict]
                for s in rep.studies]
        out.append(_table(["student", "training data", "params", "train images" if m.percent else "train samples",
                           "seeds", f"{m.twin} mean", "KD mean",
                           f"KD − {m.twin} {'' if m.percent else m.name + ' '}[95% CI]", "verdict"], rows))
        cls = {"KD helps": "kd-helps", "KD hurts": "kd-hurts"}
        out.append("<ul>" + "".join(f'<li class="{cls.get(s.verdict, "")}">{_e(s.sentence)}</li>'
                                    for s in rep.studies) + "</ul>")
        from workbench.report.charts import distillation_figure
        fig = distillation_figure(rep)
        if fig is not None:
            out.append(_figure(fig, "chart-distillation"))
        out += modes_html(rep.modes, m)  # reverse / self mode: its sentences and generations
    return out + ["</section>"]


def _vs_quantized(rep: Report) -> list[str]:
    out = [f'<section id="vs-quantized"><h2>Students vs the quantized teacher ({_e(fmt_threads(rep.threads))})</h2>']
    if not rep.vs_quantized:
        return out + ["<p>No successful student and quantized-teacher measurements to compare.</p></section>"]
    m = rep.metric
    rows = [[c.student.variant, c.quantized.variant, c.student.runtime, fmt_speedup(c.student.ratio, c.student.ratio_ci),
             DASH if c.ratio is None else f"{c.ratio:.2f}" + (f" [{c.ratio_ci[0]:.2f}, {c.ratio_ci[1]:.2f}]" if c.ratio_ci else ""),
             c.verdict + ("" if c.direct else " (combined CIs)"),
             m.fmt(c.student.accuracy, c.student.accuracy_ci), m.fmt(c.quantized.accuracy, c.quantized.accuracy_ci),
             m.diff(c.acc_diff), c.acc_verdict] for c in rep.vs_quantized]
    out.append(_table(["student", "quantized teacher", "runtime", "student speed-up vs teacher fp32",
                       "latency ratio student/quantized [95% CI]", "speed verdict", f"student {m.name}",
                       f"quantized-teacher {m.name}", f"Δ {m.name}", f"{m.name} verdict"], rows))
    out.append('<p class="note">A ratio &lt; 1 means the student is faster. "Combined CIs": no paired '
               "student-vs-quantized measurement was made, so the interval joins the extremes of both CIs "
               "vs the fp32 teacher (conservative).</p></section>")
    return out


def _charts(rep: Report) -> list[str]:
    from workbench.report.charts import accuracy_latency_figures

    out = [f'<section id="chart"><h2>{_e(rep.metric.title)} vs latency</h2>',
           '<p class="note">Whiskers: 95% CIs on both axes. Dotted step line: the Pareto front on point '
           "estimates. Markers: one shape per family.</p>"]
    figs = accuracy_latency_figures(rep)
    out += [_figure(fig, f"chart-pareto-t{th}") for th, fig in figs] or ["<p>No successful measurement to plot.</p>"]
    for th in sorted({r.threads for r in rep.rows if r.pareto}):
        front = sorted((r for r in rep.rows if r.pareto and r.threads == th), key=lambda r: (r.median, r.id))
        out.append(f"<p>Pareto front, {_e(fmt_threads(th))}: " + _e(" → ".join(
            f"{r.variant}@{r.runtime} ({fmt_ms(r.median)}, {rep.metric.fmt(r.accuracy)})" for r in front)) + "</p>")
    return out + ["</section>"]


def _tradeoffs(rep: Report) -> list[str]:
    from workbench.report.charts import tradeoff_figures

    figs = tradeoff_figures(rep)
    if not figs:
        return []
    out = [f'<section id="tradeoffs"><h2>Size, memory, start-up and compression cost ({_e(fmt_threads(rep.threads))})</h2>',
           '<p class="note">Size is the artifact file; memory is the peak resident memory above the process\'s '
           "baseline before loading; load and first inference are measured in a fresh process; time to make is "
           "the cumulative time from the teacher to the artifact (training, export, quantization).</p>"]
    out += [_figure(fig, f"chart-{name}") for name, fig in figs]
    return out + ["</section>"]


def _runtimes(rep: Report) -> list[str]:
    v = rep.runtimes
    if v is None:
        return []
    out = ['<section id="runtimes"><h2>Runtimes side by side</h2>', f"<p>{_e(v.headline())}</p>",
           f'<p class="disclaimer">{_e(v.machine_line)}</p>']
    if v.skipped or v.notes:
        out.append("<ul>" + "".join(f"<li>Skipped {_e(rt)}: {_e(why)}</li>" for rt, why in v.skipped)
                   + "".join(f"<li>Note: {_e(n)}</li>" for n in v.notes) + "</ul>")
    out.append(f"<h3>The same model on each runtime ({_e(fmt_threads(v.threads))})</h3>")
    out.append(_table(runtime_columns(v.metric), [r.cells(v.metric) for r in v.rows], "",
                      ["slower" if r.within is False else "" for r in v.rows]) if v.rows
               else "<p>No model was measured on two runtimes.</p>")
    out.append(f'<p class="note">{_e(ratio_note(v.metric))}</p>')
    out.append(f"<h3>Pareto front of each runtime ({_e(fmt_threads(v.threads))})</h3>")
    if v.fronts:
        from workbench.report.runtimes import runtime_figure

        out.append(_figure(runtime_figure(v, rep.rows), "chart-runtimes"))
    out.append("<ul>" + "".join(f"<li>{_e(front_line(rt, front, v.metric))}</li>" for rt, front in v.fronts) + "</ul>")
    details = detail_lines(v)
    if details:
        out.append("<h3>Runtime details</h3><ul>" + "".join(f"<li>{_e(d)}</li>" for d in details) + "</ul>")
    out.append(f"<h3>{_e(rep.metric.title)} through each runtime vs PyTorch</h3><ul>"
               + "".join(f"<li>{_e(g)}</li>" for g in gap_lines(v)) + "</ul>")
    return out + ["</section>"]


def _all(rep: Report) -> list[str]:
    out = ['<section id="all"><h2>All measurements</h2>', '<p class="note">Click a column header to sort.</p>']
    out.append(_table(columns(rep.metric), [table_cells(r, rep.metric) for r in rep.rows], "sortable",
                      [" ".join(c for c, on in (("failed", not r.ok), ("pareto", r.pareto),
                                                ("recommended", r is rep.recommended)) if on) for r in rep.rows],
                      [r.error if not r.ok else "" for r in rep.rows]))
    out.append(f'<p class="note">{_e(table_note(rep.metric))}</p>')
    out.append(f'<p class="note">{_e(MADE_IN_NOTE)}</p>')
    from workbench.report.charts import SAMPLES_CAPTION, latency_distribution_figure
    fig = latency_distribution_figure(rep)
    if fig is not None:
        out.append(_figure(fig, "chart-samples"))
        out.append(f'<p class="note">{_e(SAMPLES_CAPTION)}</p>')
    return out + ["</section>"]


def _quantization(rep: Report) -> list[str]:
    if not rep.diagnostics and not rep.auto:
        return []
    out = [f'<section id="quantization"><h2>Quantization diagnostics ({_e(fmt_threads(rep.threads))})</h2>']
    if rep.diagnostics:
        slower = [d for d in rep.diagnostics if d.slower]
        if slower:
            out.append(f'<p class="loud">{SLOWER_MARK} SLOWER than the model they were quantized from: ' + _e(", ".join(
                f"{d.variant}@{d.runtime}" for d in slower)) + " — do not ship them for speed.</p>")
        out.append(_table(DIAG_COLUMNS, [d.cells() for d in rep.diagnostics], "",
                          ["slower" if d.slower else "" for d in rep.diagnostics]))
        out.append(f'<p class="note">{_e(DIAG_NOTE)}</p>')
    for i, a in enumerate(rep.auto):
        out.append(f"<h3>auto: {_e(a.variant)} = {_e(a.chosen)}</h3>")
        out.append(f'<p class="loud">{SLOWER_MARK} {_e(a.message)}</p>' if a.loud else f"<p>{_e(a.message)}</p>")
        out.append(_table(a.columns, [list(c) for c in a.candidates], "",
                          ["recommended" if c[0] else "slower" if "SLOWER" in c[3] else "" for c in a.candidates]))
        if a.skipped:
            out.append(f"<p>Not tried: {_e('; '.join(a.skipped))}.</p>")
        if a.exclusion:
            out.append(f"<p>{_e(a.exclusion)}</p>")
        if a.sensitivity:
            from workbench.report.charts import sensitivity_figure

            out.append(_figure(sensitivity_figure(a.sensitivity, a.variant), f"chart-sensitivity-{i}"))
        out.append(f'<p class="note">{_e(auto_note(a))}</p>')
    return out + ["</section>"]


def _context(rep: Report) -> list[str]:
    out = []
    if rep.failed:
        out += ['<section id="failed"><h2>Failed measurements</h2><ul>']
        out += [f"<li><code>{_e(r.id)}</code>: FAILED: {_e(r.error)}</li>" for r in rep.failed] + ["</ul></section>"]
    profiled = [r for r in rep.rows if r.profile and r.threads == rep.threads]
    if profiled:
        out += [f'<section id="profile"><h2>Where the time goes (operator profile, {_e(fmt_threads(rep.threads))})</h2><ul>']
        out += [f"<li>{_e(r.variant)}@{_e(r.runtime)}: " + _e(", ".join(f"{op} {pct:.1f}%" for op, pct in r.profile[:5]))
                + "</li>" for r in profiled] + ["</ul></section>"]
    out += ['<section id="warnings"><h2>Stability warnings</h2>', f"<p>{_e(rep.warnings_summary)}</p>"]
    if rep.warning_groups:
        out.append("<ul>")
        for g in rep.warning_groups:
            what = f" What to do: {_e(g.advice)}." if g.advice else ""
            affected = f" Affected: {_e(g.affected)}." if g.affected else ""
            out.append(f"<li><code>{_e(g.code)}</code> {_e(g.where)}.{what}{affected}<details><summary>each "
                       f"message ({g.count})</summary><ul>" + "".join(
                           f"<li><code>{_e(rid)}</code>: {_e(msg)}</li>" for rid, msg in g.items) + "</ul></details></li>")
        out.append("</ul>")
    out += ["</section>", '<section id="environment"><h2>Environment</h2>', f'<p class="disclaimer">{_e(rep.disclaimer)}</p>']
    if rep.machine:
        out.append(f"<p>Machine: {_e(rep.machine)}</p>")
    out += [_table(["", ""], rep.environment) if rep.environment else "<p>Not recorded.</p>", "</section>",
            '<section id="protocol"><h2>Protocol</h2>',
            _table(["", ""], rep.protocol) if rep.protocol else "<p>Not recorded.</p>", "</section>",
            f'<section id="reproduce"><h2>Reproduce</h2><pre><code>{_e(rep.command)}</code></pre></section>']
    return out


def render_html(results) -> str:
    """report.html of a results.json (a ResultSet or its parsed dict): self-contained, plotly.js inline."""
    from plotly.offline import get_plotlyjs

    rep = analyse(results)
    body = [f"<h1>{_e(rep.title)}</h1>", f'<p class="disclaimer">{_e(rep.disclaimer)}</p>',
            f'<p class="meta">{_e(rep.task_line)}</p>']
    for section in (_answer, _distillation, _vs_quantized, _charts, _runtimes, _tradeoffs, _all, _quantization,
                    _context):
        body += section(rep)
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(rep.title)}</title>", f"<style>{_CSS}</style>",
        "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>",
        f"<script>{get_plotlyjs()}</script>", "</head>", "<body>", *body,
        f"<script>{_SORT_JS}</script>", "</body>", "</html>", ""])
