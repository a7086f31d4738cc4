"""The one analysis of a results.json that every renderer lays out.

Markdown, HTML and the terminal summary all read the `Report` built here (numbers AND their
formatted text), so they can never disagree. Pure Python: no plotly, no rich, no torch.

The pieces live in their own modules and are re-exported here:
  format.py   coercing JSON values, formatting numbers
  rows.py     one Row per record, the Pareto front, the all-measurements table
  budget.py   the accuracy budget, the recommendation, family picks, students vs quantized teacher
  studies.py  what distillation bought (KD vs labels-only)
"""
from __future__ import annotations

from dataclasses import dataclass, field

from workbench.report.budget import (DEFAULT_MAX_DROP_POINTS, EPS, TRIO, Pick, VsQuantized,
                                     answer_sentence, best_of_family, budget_of,
                                     compare_students_to_quantized, limits_text, recommend,
                                     within_budget)
from workbench.pipeline.result_parts import finite, mapping
from workbench.pipeline.results import ResultSet
from workbench.report.load import as_result_set
from workbench.report.metric import ACCURACY, MetricStyle, metric_of
from workbench.report.format import (DASH, fmt_acc, fmt_mb, fmt_ms,
                                     fmt_params, fmt_pts, fmt_speedup, fmt_threads)
from workbench.report.rows import (COLUMNS, MADE_IN_NOTE, PARETO_MARK, TABLE_NOTE, Row, build_rows,
                                   pareto_front, table_cells)
from workbench.report.quantization import build_auto, build_diagnostics
from workbench.report.runtimes import build_runtime_view
from workbench.report.studies import StudyRow, build_studies, study_sentence, study_summary
from workbench.report.modes import build_modes

__all__ = [
    "DASH", "DEFAULT_MAX_DROP_POINTS", "EPS", "TRIO", "COLUMNS", "PARETO_MARK", "TABLE_NOTE", "MADE_IN_NOTE",
    "Row", "Pick", "StudyRow", "VsQuantized", "WarningGroup", "Report",
    "analyse", "build_rows", "build_studies", "pareto_front", "recommend", "best_of_family", "within_budget",
    "compare_students_to_quantized", "study_sentence", "study_summary", "table_cells", "group_warnings",
    "warnings_summary",
    "machine_name", "logical_cores",
    "fmt_acc", "fmt_mb", "fmt_ms", "fmt_params", "fmt_pts", "fmt_speedup", "fmt_threads",
]


# ---------------------------------------------------------------- stability warnings
@dataclass(frozen=True)
class WarningGroup:
    """All warnings with one code: the advice once, which measurements, and each message."""

    code: str
    advice: str
    items: tuple  # (record id, message), in table order
    affected: str  # "1 thread: a, b; 2 threads: c"; empty when it is every measurement

    @property
    def count(self) -> int:
        return len(self.items)

    @property
    def ids(self) -> tuple:
        return tuple(dict.fromkeys(rid for rid, _ in self.items))

    @property
    def where(self) -> str:
        """'on 18 measurements' (plus the warning count when a measurement has several)."""
        n = len(self.ids)
        extra = f" ({self.count} warnings)" if self.count > n else ""
        return f"on {'all ' if not self.affected else ''}{n} measurement{'' if n == 1 else 's'}{extra}"


def _affected(ids, rows) -> str:
    """Which measurements, compactly: variants grouped by thread count (and runtime when several)."""
    ids = set(ids)
    if len(rows) > 1 and ids >= {r.id for r in rows}:
        return ""
    hit = [r for r in rows if r.id in ids]
    several_rt = len({r.runtime for r in rows}) > 1
    parts: dict[tuple, list] = {}
    for r in hit:
        parts.setdefault((r.threads, r.runtime if several_rt else None), []).append(r.variant)
    out = []
    for (th, rt), variants in parts.items():
        label = DASH if th is None else fmt_threads(th)
        out.append(f"{label}{f' on {rt}' if rt else ''}: {', '.join(variants)}")
    missing = [i for i in ids if i not in {r.id for r in hit}]  # not a row: name the record id
    return "; ".join(out + sorted(missing))


def group_warnings(warnings, rows=()) -> tuple:
    """(record id, code, message, advice) tuples -> WarningGroups, most frequent code first."""
    groups: dict[str, tuple[list, list]] = {}
    for rid, code, msg, advice in warnings:
        items, advices = groups.setdefault(code, ([], []))
        items.append((rid, msg))
        if advice and advice not in advices:
            advices.append(advice)
    out = [WarningGroup(code, "; ".join(advices), tuple(items), _affected([i for i, _ in items], list(rows)))
           for code, (items, advices) in groups.items()]
    return tuple(sorted(out, key=lambda g: (-g.count, g.code)))


def warnings_summary(warnings, groups) -> str:
    """One sentence counting the noise warnings, their kinds and the measurements they hit."""
    if not warnings:
        return "None."
    n_rec = len({w[0] for w in warnings})
    return (f"{len(warnings)} warning{'' if len(warnings) == 1 else 's'} of {len(groups)} "
            f"kind{'' if len(groups) == 1 else 's'} on {n_rec} measurement{'' if n_rec == 1 else 's'}, "
            f"grouped by kind; the table's \"warnings\" column counts them per measurement.")


# ---------------------------------------------------------------- the machine
def machine_name(env: dict) -> str:
    """The CPU model (environment.cpu_model; older files: cpu)."""
    env = mapping(env)
    name = env.get("cpu_model") or env.get("cpu")
    return str(name) if name else "an unnamed machine"


def logical_cores(env: dict) -> int | None:
    """environment.cores.logical; older files store cores as a plain number."""
    cores = mapping(env).get("cores")
    if isinstance(cores, dict):
        cores = cores.get("logical") if cores.get("logical") is not None else cores.get("affinity")
    n = finite(cores)
    return int(n) if n is not None and n > 0 else None


def _fmt_env_value(key: str, v) -> str:
    if key == "isa" and isinstance(v, dict):
        return ", ".join(f"{f} {'yes' if on else 'no'}" for f, on in v.items())
    if key == "versions" and isinstance(v, dict):
        return ", ".join(f"{p} {'not installed' if ver is None else ver}" for p, ver in v.items())
    if key == "runtimes" and isinstance(v, dict):
        parts = []
        for name, rt in v.items():
            rt = mapping(rt)
            if rt.get("available") is False:
                parts.append(f"{name} not available")
                continue
            fmts = ", ".join(str(f) for f in rt.get("formats") or [] if isinstance(rt.get("formats"), list))
            parts.append(f"{name} {rt.get('version') or '?'}" + (f" (formats: {fmts})" if fmts else ""))
        return "; ".join(parts)
    if key == "memory_total_mb" and finite(v) is not None:
        return f"{v:.0f}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {x}" for k, x in v.items() if x is not None)
    if isinstance(v, list):
        return " ".join(f"{x:.2f}" if finite(x) is not None and isinstance(x, float) else str(x) for x in v)
    return str(v)


def _environment(env: dict) -> tuple:
    """(key, text) rows for the environment table; the description is shown above it instead."""
    out = []
    for k, v in mapping(env).items():
        if k == "description" or v is None or v == {} or v == []:
            continue
        out.append((k, _fmt_env_value(k, v)))
    return tuple(out)


def _protocol(results: ResultSet) -> tuple:
    """(key, text) rows of the measurement protocol (the first ok record's), with the CI and memory methods."""
    recs = [r for r in results.results if r.ok]
    if not recs:
        return ()
    first = recs[0]
    out = [(k, str(v)) for k, v in mapping(first.protocol).items()]
    for key, value in (("latency CI", first.latency.get("ci_method") if first.latency else None),
                       ("memory", first.memory.method if first.memory else None)):
        if value:
            out.append((key, str(value)))
    if any(r.protocol != first.protocol for r in recs[1:]):
        out.append(("note", "records used different protocols; shown is the first record's"))
    return tuple(out)


def _dims(shape) -> str:
    """[1, 24] -> "1 x 24"."""
    return " x ".join(str(d) for d in shape)


def input_text(results: ResultSet) -> str:
    """What the models take, for the header: the task's input shape (image and feature tasks, e.g. "input [1, 1,
    32, 32]"), else the named inputs the records were measured with (text: "inputs input_ids, attention_mask
    (int64): 1 x 24 tokens, as measured on pydoc test split (first example, batch 1)"); "input ?" when
    results.json has neither."""
    shape = results.run.task.get("input_shape")
    if shape:
        return f"input {shape}"
    seen = []
    for r in results.results:
        inp = mapping(r.input)
        shapes, dtypes = mapping(inp.get("shapes")), mapping(inp.get("dtypes"))
        if not shapes:
            continue
        kinds = sorted({str(t) for t in dtypes.values()})
        same = len({tuple(v) for v in shapes.values() if isinstance(v, list)}) == 1
        if same:  # every input has the same shape: name them once, then the shape
            dims = _dims(next(iter(shapes.values())))
            tokens = " tokens" if kinds and all(k.startswith(("int", "uint")) for k in kinds) else ""
            text = f"{', '.join(shapes)}" + (f" ({', '.join(kinds)})" if kinds else "") + f": {dims}{tokens}"
        else:
            text = ", ".join(f"{k} {_dims(v) if isinstance(v, list) else v}" + (f" ({dtypes[k]})" if k in dtypes else "")
                             for k, v in shapes.items())
        source = inp.get("source")
        text = ("inputs " if len(shapes) > 1 else "input ") + text + (f", as measured on {source}" if source else "")
        if text not in seen:
            seen.append(text)
    if not seen:
        return "input ?"
    return seen[0] + (f" (and {len(seen) - 1} other input shape(s): see results.json)" if len(seen) > 1 else "")


# ---------------------------------------------------------------- the whole report
@dataclass(frozen=True)
class Report:
    """The whole report as one view model: every renderer (Markdown, HTML, terminal) lays out this."""
    title: str
    task_line: str
    disclaimer: str
    rows: tuple
    threads: int  # the thread count the answer is given at
    max_drop_points: float  # the budget below the fp32 teacher, in the metric's units (accuracy: points)
    rule: str
    teacher: Row | None
    recommended: Row | None
    answer: str  # one plain sentence
    beyond_budget: tuple  # Pareto rows faster than the recommendation but outside the budget
    picks: tuple
    studies: tuple
    study_summary: str
    vs_quantized: tuple
    warnings: tuple  # (record id, code, message, advice)
    warning_groups: tuple  # WarningGroup, most frequent code first
    warnings_summary: str
    failed: tuple
    machine: str | None  # environment.description, one line
    environment: tuple  # (key, value)
    protocol: tuple  # (key, value)
    command: str
    cpu: str
    diagnostics: tuple = ()  # quantization.DiagRow at `threads`, slower-than-source first
    auto: tuple = ()  # quantization.AutoChoice per artifact made by `auto`
    runtimes: object = None  # runtimes.RuntimeView when more than one runtime was measured (or one skipped)
    metric: MetricStyle = field(default_factory=lambda: ACCURACY)  # the run's metric
    modes: object = None  # modes.ModeView: [distill] mode reverse / self (None in standard mode)


def _merged_from(run) -> str:
    """'; merged from runs a (created ..., machine ...), b (...)' for a `workbench report --merge` run."""
    src = run.merged_from
    if not src:
        return ""
    parts = [f"{d.get('run_id')} (created {d.get('created') or '?'}, {d.get('records')} records, on "
             f"{d.get('machine') or '?'})" for d in src]
    n = len(run.merge_replaced)
    return "; merged from runs " + ", ".join(parts) + (f"; {n} measurements replaced by a later run's" if n else "")


def machine_line(description, results: ResultSet) -> str | None:
    """The report's machine line: the run's machine, or, when its records were measured on several nodes of a
    cluster (``node``), which machines and how many records each, saying when the run mixed machine types."""
    nodes: dict = {}
    for r in results.results:
        if r.node:
            nodes.setdefault(r.machine or "?", {}).setdefault(r.node, 0)
            nodes[r.machine or "?"][r.node] += 1
    if not nodes or (len(nodes) == 1 and len(next(iter(nodes.values()))) == 1 and description in nodes):
        return str(description) if description else None
    each = "; ".join(f"{m} ({sum(n.values())} records on {len(n)} node(s))" for m, n in nodes.items())
    if len(nodes) > 1:
        return (f"this run mixed machine types: {each}. Compare latencies only between records of one machine "
                "type; ratios across nodes are unpaired")
    return f"measured on a cluster: {each}; ratios between records of different nodes are unpaired"


def analyse(results: ResultSet | dict) -> Report:
    """Build the report view model from a loaded results.json (a ResultSet, see load.load_results; a parsed
    results.json dict is checked and typed first)."""
    results = as_result_set(results)
    run = results.run
    task, env = run.task, run.environment
    rows = build_rows(results)
    style = metric_of(results)
    budget = budget_of(results, style)
    drop, threads, limits, scale = budget.max_drop, budget.threads, budget.limits, style.scale
    measured = sorted({r.threads for r in rows if r.plottable and r.threads is not None})
    if threads is None:
        threads = 1 if (1 in measured or not measured) else measured[0]
    refs = [r for r in rows if r.is_reference and r.plottable and r.threads == threads]
    teacher = next((r for r in refs if r.runtime == "ort"), refs[0] if refs else None)  # ort: the baseline runtime
    rec = recommend(rows, drop, threads, limits, scale) if teacher else None
    rec_teacher = next((r for r in refs if rec is not None and r.runtime == rec.runtime), teacher)
    given = mapping(run.recipe.get("budget")).get("source")
    source = "default budget" if budget.default else str(given or "budget from the recipe")
    rule = (f"the fastest {fmt_threads(threads, True)} variant whose {style.name} is within "
            f"{style.drop_text(drop)} of the fp32 teacher's on the same runtime"
            + (f" and with {limits_text(limits, style)}" if limits else "")
            + f" (point estimates; {source})")
    picks = tuple(Pick(a, f, *best_of_family(rows, f, drop, threads, None, scale)) for a, f in TRIO)
    studies = tuple(build_studies(results, style))
    cpu = machine_name(env)
    n_cores = logical_cores(env)
    kind = "logical cores" if isinstance(env.get("cores"), dict) else "cores"
    cores = f" ({n_cores} {kind})" if n_cores else ""
    metric = task.get("metric") or style.name
    warnings = tuple((r.id, str(w.get("code") or "warning"), str(w.get("message") or ""),
                      str(w.get("advice") or "")) for r in rows for w in r.warnings)
    groups = group_warnings(warnings, rows)
    description = env.get("description")
    return Report(
        title=f"Compression report: {task.get('name') or '?'} (run {run.run_id or '?'})",
        task_line=(f"task {task.get('name') or '?'}: {metric} on n={task.get('n_test') or '?'} test "
                   f"samples, {input_text(results)}; created {run.created or '?'}, "
                   f"workbench {run.workbench_version or '?'}" + _merged_from(run)),
        disclaimer=(f"Measured on {cpu}{cores}, not on a phone: use these numbers to rank variants, "
                    f"and re-measure the chosen one on the target device."),
        rows=tuple(rows), threads=threads, max_drop_points=drop, rule=rule, teacher=teacher,
        recommended=rec, answer=answer_sentence(rec, rec_teacher, threads, len({r.runtime for r in rows}) > 1, style),
        picks=picks,
        beyond_budget=tuple(r for r in rows if rec and r.pareto and r.threads == threads
                            and r.median < rec.median and not within_budget(r, drop, scale)), studies=studies,
        study_summary=study_summary(studies),
        vs_quantized=tuple(compare_students_to_quantized(rows, drop, threads, scale)),
        warnings=warnings, warning_groups=groups, warnings_summary=warnings_summary(warnings, groups),
        failed=tuple(r for r in rows if not r.ok),
        machine=machine_line(description, results), environment=_environment(env),
        protocol=_protocol(results), command=str(run.command or DASH), cpu=cpu,
        diagnostics=build_diagnostics(results, threads), auto=build_auto(results),
        runtimes=build_runtime_view(results, threads, cpu + cores, style), metric=style,
        modes=build_modes(results),  # [distill] mode reverse / self
    )
