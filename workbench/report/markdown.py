"""results.json -> report.md. Lays out analysis.Report; computes nothing of its own."""
from __future__ import annotations

from workbench.report.analysis import MADE_IN_NOTE, Report, analyse
from workbench.report.format import DASH, fmt_mb, fmt_ms, fmt_params, fmt_speedup, fmt_threads
from workbench.report.modes import modes_markdown
from workbench.report.quantization import DIAG_COLUMNS, DIAG_NOTE, SLOWER_MARK, auto_note
from workbench.report.rows import columns, table_cells, table_note
from workbench.report.runtimes import detail_lines, front_line, gap_lines, ratio_note, runtime_columns


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header, rows) -> list[str]:
    out = ["| " + " | ".join(_cell(h) for h in header) + " |",
           "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out + [""]


def answer_section(rep: Report) -> list[str]:
    """Markdown: the recommendation, the rule and the best pick per approach."""
    m = rep.metric
    out = ["## The answer", "", f"**{rep.answer}**", "", f"Rule: {rep.rule}.", ""]
    if rep.beyond_budget:
        out += [f"Faster, but outside the {m.name} budget: " + "; ".join(
            f"{r.variant} ({fmt_speedup(r.ratio, r.ratio_ci)}, {m.diff(r.vs_ref)})" for r in rep.beyond_budget) + ".", ""]
    out += [f"### Distillation vs quantization vs both ({fmt_threads(rep.threads)})", ""]
    rows = []
    for p in rep.picks:
        r = p.row
        if r is None:
            rows.append([p.approach, "none measured", DASH, DASH, DASH, DASH, DASH, DASH])
            continue
        rows.append([p.approach, r.variant, r.runtime, fmt_speedup(r.ratio, r.ratio_ci, r.verdict),
                     m.fmt(r.accuracy, r.accuracy_ci), m.diff(r.vs_ref), fmt_mb(r.size_bytes),
                     "yes" if p.within_budget else "no"])
    out += _table(["approach", "best variant", "runtime", "speed-up vs teacher fp32 [95% CI]",
                   f"{m.name} [95% CI]", f"Δ {m.name} vs teacher", "size", "within budget"], rows)
    best = "most accurate" if m.percent else f"highest-{m.name}"
    out += [f"Best = the family's fastest variant within the {m.name} budget, else its {best} one.", ""]
    return out


def distillation_section(rep: Report) -> list[str]:
    """Markdown: what distillation bought (KD vs labels-only per regime and student)."""
    out = ["## What distillation bought", "", rep.study_summary, ""]
    if not rep.studies:
        return out
    m = rep.metric
    rows = [[s.student, s.regime_label, fmt_params(s.params), DASH if s.n_train is None else str(s.n_train),
             str(s.n_seeds), m.fmt(s.labels_mean), m.fmt(s.kd_mean), m.diff(s.diff, s.diff_ci), s.verdict]
            for s in rep.studies]
    out += _table(["student", "training data", "params", "train images" if m.percent else "train samples", "seeds",
                   f"{m.twin} mean", "KD mean", f"KD − {m.twin} {'' if m.percent else m.name + ' '}[95% CI]",
                   "verdict"], rows)
    out += [f"- {s.sentence}" for s in rep.studies] + [""]
    return out + modes_markdown(rep.modes, m)  # reverse / self mode: its sentences and generations


def vs_quantized_section(rep: Report) -> list[str]:
    """Markdown: distilled students against the best quantized teacher."""
    m = rep.metric
    out = [f"## Students vs the quantized teacher ({fmt_threads(rep.threads)})", ""]
    if not rep.vs_quantized:
        return out + ["No successful student and quantized-teacher measurements to compare.", ""]
    rows = [[c.student.variant, c.quantized.variant, c.student.runtime,
             fmt_speedup(c.student.ratio, c.student.ratio_ci),
             DASH if c.ratio is None else f"{c.ratio:.2f}" + (f" [{c.ratio_ci[0]:.2f}, {c.ratio_ci[1]:.2f}]" if c.ratio_ci else ""),
             c.verdict + ("" if c.direct else " (combined CIs)"),
             m.fmt(c.student.accuracy, c.student.accuracy_ci), m.fmt(c.quantized.accuracy, c.quantized.accuracy_ci),
             m.diff(c.acc_diff), c.acc_verdict] for c in rep.vs_quantized]
    out += _table(["student", "quantized teacher", "runtime", "student speed-up vs teacher fp32",
                   "latency ratio student/quantized [95% CI]", "speed verdict", f"student {m.name}",
                   f"quantized-teacher {m.name}", f"Δ {m.name}", f"{m.name} verdict"], rows)
    out += ["A ratio < 1 means the student is faster. \"Combined CIs\": no paired student-vs-quantized "
            "measurement was made, so the interval joins the extremes of both CIs vs the fp32 teacher "
            "(conservative).", ""]
    return out


def pareto_section(rep: Report) -> list[str]:
    """Markdown: the Pareto front (accuracy vs median latency) at the answer's thread count."""
    m = rep.metric
    out = [f"## {m.title} vs latency", "",
           f"The chart ({m.name} vs median latency, CI whiskers, Pareto step line) is in report.html. "
           "Pareto fronts on point estimates, fastest first:", ""]
    for th in sorted({r.threads for r in rep.rows if r.pareto}):
        front = sorted((r for r in rep.rows if r.pareto and r.threads == th), key=lambda r: (r.median, r.id))
        out.append(f"- {fmt_threads(th)}: " + " → ".join(
            f"{r.variant}@{r.runtime} ({fmt_ms(r.median)}, {m.fmt(r.accuracy)})" for r in front))
    return out + [""]


def runtimes_section(rep: Report) -> list[str]:
    """Markdown: the runtimes compared (when more than one was measured or one was skipped)."""
    v = rep.runtimes
    if v is None:
        return []
    out = ["## Runtimes side by side", "", v.headline(), "", f"**{v.machine_line}**", ""]
    out += [f"- Skipped {rt}: {why}" for rt, why in v.skipped] + ([""] if v.skipped else [])
    out += [f"- Note: {n}" for n in v.notes] + ([""] if v.notes else [])
    out += [f"### The same model on each runtime ({fmt_threads(v.threads)})", ""]
    out += _table(runtime_columns(v.metric), [r.cells(v.metric) for r in v.rows]) if v.rows else ["No model was measured on two runtimes.", ""]
    out += [ratio_note(v.metric), "", f"### Pareto front of each runtime ({fmt_threads(v.threads)})", ""]
    out += [f"- {front_line(rt, front, v.metric)}" for rt, front in v.fronts] + [""]
    details = detail_lines(v)
    if details:
        out += ["### Runtime details", ""] + [f"- {d}" for d in details] + [""]
    out += [f"### {rep.metric.title} through each runtime vs PyTorch", ""] + [f"- {g}" for g in gap_lines(v)] + [""]
    return out


def table_section(rep: Report) -> list[str]:
    """Markdown: every measurement in one table."""
    out = ["## All measurements", ""]
    out += _table(columns(rep.metric), [[t for t, _ in table_cells(r, rep.metric)] for r in rep.rows])
    out += [table_note(rep.metric), "", MADE_IN_NOTE, ""]
    return out


def quantization_section(rep: Report) -> list[str]:
    """Markdown: quantization diagnostics and the auto searches."""
    if not rep.diagnostics and not rep.auto:
        return []
    out = [f"## Quantization diagnostics ({fmt_threads(rep.threads)})", ""]
    if rep.diagnostics:
        slower = [d for d in rep.diagnostics if d.slower]
        if slower:
            out += ["**" + SLOWER_MARK + " SLOWER than the model they were quantized from: " +
                    ", ".join(f"{d.variant}@{d.runtime}" for d in slower) + " — do not ship them for speed.**", ""]
        out += _table(DIAG_COLUMNS, [d.cells() for d in rep.diagnostics])
        out += [DIAG_NOTE, ""]
    for a in rep.auto:
        out += [f"### auto: {a.variant} = {a.chosen}", ""]
        out += [f"**{SLOWER_MARK} {a.message}**" if a.loud else a.message, ""]
        out += _table(a.columns, [list(c) for c in a.candidates])
        if a.skipped:
            out += ["Not tried: " + "; ".join(a.skipped) + ".", ""]
        if a.exclusion:
            out += [a.exclusion, ""]
        if a.sensitivity:
            out += _table(["node", "op", "rel. L2 error when only it is quantized"],
                          [[n, op, f"{e:.4f}"] for n, op, e in a.sensitivity])
        out += [auto_note(a), ""]
    return out


def warnings_section(rep: Report) -> list[str]:
    """Markdown: the noise warnings grouped by kind, with what to do."""
    out = ["## Stability warnings", ""]
    if not rep.warning_groups:
        return out + [rep.warnings_summary, ""]
    out += [rep.warnings_summary + " report.html lists every message.", ""]
    for g in rep.warning_groups:
        what = f" What to do: {g.advice}." if g.advice else ""
        out.append(f"- **{g.code}** {g.where}.{what}" + (f" Affected: {g.affected}." if g.affected else ""))
    return out + [""]


def context_sections(rep: Report) -> list[str]:
    """Markdown: failed records, machine, environment, protocol and the command."""
    out = []
    if rep.failed:
        out += ["## Failed measurements", ""]
        out += [f"- `{r.id}`: FAILED: {r.error}" for r in rep.failed] + [""]
    profiled = [r for r in rep.rows if r.profile and r.threads == rep.threads]
    if profiled:
        out += [f"## Where the time goes (operator profile, {fmt_threads(rep.threads)})", ""]
        out += [f"- {r.variant}@{r.runtime}: " + ", ".join(f"{op} {pct:.1f}%" for op, pct in r.profile[:5])
                for r in profiled] + [""]
    out += warnings_section(rep)
    out += ["## Environment", "", rep.disclaimer, ""]
    if rep.machine:
        out += [f"Machine: {rep.machine}", ""]
    out += _table(["", ""], rep.environment) if rep.environment else ["Not recorded.", ""]
    out += ["## Protocol", ""]
    out += _table(["", ""], rep.protocol) if rep.protocol else ["Not recorded.", ""]
    out += ["## Reproduce", "", "```", rep.command, "```", ""]
    return out


def render_markdown(results) -> str:
    """report.md of a results.json (a ResultSet or its parsed dict): the sections of analysis.Report as Markdown."""
    rep = analyse(results)
    out = [f"# {rep.title}", "", f"> {rep.disclaimer}", "", rep.task_line, ""]
    for section in (answer_section, distillation_section, vs_quantized_section, pareto_section,
                    runtimes_section, table_section, quantization_section, context_sections):
        out += section(rep)
    return "\n".join(out).rstrip("\n") + "\n"
