"""Before / after: two runs' results side by side (`workbench report BEFORE.json AFTER.json --compare`).

Records are matched by (variant, runtime, threads). For each pair: median latency before and after,
the ratio after / before with a bootstrap 95% CI and a verdict (the harness's rule: *faster*,
*slower*, *equivalent* within ±2%, *inconclusive*), the task's metric before and after (in its own words
and units: accuracy in % with the change in points, a cosine as a plain number), and size. The two
runs were measured at different times (and maybe on different machines), so the ratios are
UNPAIRED: drift of the machine between the runs is in them; the output says so, and says when the
machines differ. Writes compare.md, compare.html (self-contained, no scripts) and compare.json.
"""
from __future__ import annotations

import html
from dataclasses import asdict, dataclass
from pathlib import Path

from workbench.pipeline.results import Result, ResultSet
from workbench.report.format import DASH, fmt_mb, fmt_ms
from workbench.report.metric import ACCURACY, MetricStyle, metric_of, metric_style


@dataclass(frozen=True)
class Change:
    """One record matched in both runs: latency before / after with the ratio, CI and verdict, the metric and size."""
    variant: str
    runtime: str
    threads: int | None
    before_ms: float | None
    after_ms: float | None
    ratio: float | None
    ratio_ci: tuple | None
    verdict: str
    before_acc: float | None
    after_acc: float | None
    before_size: float | None
    after_size: float | None


def _ok(rec: Result | None) -> bool:
    """The record has latency samples to compare."""
    return rec is not None and rec.ok and rec.latency is not None and bool(rec.latency.samples)


def compare_runs(before: ResultSet, after: ResultSet) -> dict:
    """{changes: [Change], agreement: agreement.Agreement (records matching / differing, conclusions),
    only_before: [key], only_after: [key], same_machine: bool, machines: (b, a), metric: the after run's metric
    name (before_acc / after_acc of every Change are in it)}."""
    from workbench.errors import MeasurementError
    from workbench.measure import compare
    from workbench.report.load import as_result_set

    before, after = as_result_set(before), as_result_set(after)
    b = {r.key: r for r in before.results}
    a = {r.key: r for r in after.results}
    changes = []
    for k in [k for k in a if k in b]:
        rb, ra = b[k], a[k]
        ratio = ci = None
        verdict = "not measured in both"
        if _ok(rb) and _ok(ra):
            try:
                c = compare(rb.to_json(), ra.to_json())
                ratio, ci, verdict = c.ratio_median, c.ci95, c.verdict
            except MeasurementError as e:
                verdict = f"not comparable ({e})"
        changes.append(Change(str(k[0]), str(k[1]), k[2], rb.latency.median if rb.latency else None,
                              ra.latency.median if ra.latency else None, ratio, tuple(ci) if ci else None, verdict,
                              rb.quality.value if rb.quality else None, ra.quality.value if ra.quality else None,
                              rb.artifact.size_bytes, ra.artifact.size_bytes))
    mb = str(before.run.environment.get("description") or "?")
    ma = str(after.run.environment.get("description") or "?")
    from workbench.report.agreement import agreement

    return {"before_run": before.run.run_id, "after_run": after.run.run_id, "agreement": agreement(before, after),
            "changes": changes, "only_before": [list(k) for k in b if k not in a],
            "only_after": [list(k) for k in a if k not in b], "same_machine": mb == ma, "machines": [mb, ma],
            "metric": metric_of(after).name, "metric_before": metric_of(before).name}


def _style(doc: dict) -> MetricStyle:
    """The metric the compared runs report (accuracy for a compare.json written before it was recorded)."""
    return metric_style(doc["metric"]) if doc.get("metric") else ACCURACY


def _acc_change(c: Change, style: MetricStyle = ACCURACY) -> str:
    """The metric before -> after with the change ("99.2% -> 99.4% (+0.2 pts)" or "0.8693 -> 0.8756 (+0.0063)")."""
    if c.before_acc is None or c.after_acc is None:
        return DASH
    return f"{style.fmt(c.before_acc)} -> {style.fmt(c.after_acc)} ({style.diff(c.after_acc - c.before_acc)})"


def _row(c: Change, style: MetricStyle = ACCURACY) -> list[str]:
    ratio = DASH if c.ratio is None else (f"{c.ratio:.3f}" + (f" [{c.ratio_ci[0]:.3f}, {c.ratio_ci[1]:.3f}]"
                                                             if c.ratio_ci else ""))
    mark = " ⚠" if c.verdict == "slower" else ""
    return [c.variant, c.runtime, DASH if c.threads is None else str(c.threads), fmt_ms(c.before_ms), fmt_ms(c.after_ms),
            ratio, c.verdict + mark, _acc_change(c, style), f"{fmt_mb(c.before_size)} -> {fmt_mb(c.after_size)}"]


def header(style: MetricStyle = ACCURACY) -> list[str]:
    """The before/after table's header, naming the runs' metric."""
    return ["variant", "runtime", "threads", "before", "after", "after / before [95% CI]", "verdict", style.name, "size"]



def _notes(doc: dict) -> list[str]:
    n = ["Ratios compare two runs measured at different times (unpaired): drift of the machine between them "
         "is part of each ratio. 'equivalent' = the CI lies within ±2%."]
    if not doc["same_machine"]:
        n.append(f"The runs were measured on different machines ({doc['machines'][0]} vs {doc['machines'][1]}): "
                 "the ratios compare the machines as well as the artifacts.")
    if doc.get("metric_before") and doc["metric_before"] != doc.get("metric"):
        n.append(f"The runs report different metrics ({doc['metric_before']} before, {doc['metric']} after): "
                 f"the metric column shows both in the after run's units and its change means little.")
    if doc["only_before"] or doc["only_after"]:
        n.append(f"Only in before: {len(doc['only_before'])} records; only in after: {len(doc['only_after'])}.")
    return n


def render_compare_md(doc: dict) -> str:
    """compare.md: verdict counts, notes, records matching / differing, conclusions, the before/after table."""
    counts = {}
    for c in doc["changes"]:
        counts[c.verdict] = counts.get(c.verdict, 0) + 1
    lines = [f"# Before / after: {doc['before_run']} -> {doc['after_run']}", "",
             "Verdicts: " + ", ".join(f"{v} {n}" for v, n in sorted(counts.items())), ""]
    lines += [f"- {n}" for n in _notes(doc)] + [""]
    if doc.get("agreement") is not None:
        from workbench.report.agreement import agreement_lines

        lines += agreement_lines(doc["agreement"]) + ["## Latency before / after", ""]
    style = _style(doc)
    cols = header(style)
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_row(c, style)) + " |" for c in doc["changes"]]
    return "\n".join(lines) + "\n"


def render_compare_html(doc: dict) -> str:
    """compare.html: the same content as compare.md, self-contained (no scripts)."""
    e = html.escape
    style = _style(doc)
    rows = "".join("<tr>" + "".join(f"<td>{e(x)}</td>" for x in _row(c, style)) + "</tr>" for c in doc["changes"])
    notes = "".join(f"<li>{e(n)}</li>" for n in _notes(doc))
    if doc.get("agreement") is not None:
        from workbench.report.agreement import agreement_lines

        notes += "".join(f"<li>{e(n.lstrip('#- '))}</li>" for n in agreement_lines(doc["agreement"]) if n)
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>before / after</title><style>"
            "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
            "padding:4px 8px}th{background:#f4f4f4}</style></head><body>"
            f"<h1>Before / after: {e(str(doc['before_run']))} &rarr; {e(str(doc['after_run']))}</h1><ul>{notes}</ul>"
            "<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header(style)) + f"</tr>{rows}</table></body></html>\n")


def write_compare(before_path, after_path, out_dir=None) -> dict[str, Path]:
    """Render before/after into out_dir (default: beside AFTER) as compare.md / .html / .json."""
    import json

    from workbench.fileio import write_text
    from workbench.report.load import load_results

    before, after = load_results(before_path), load_results(after_path)
    doc = compare_runs(before, after)
    src = Path(after_path)
    out = Path(out_dir) if out_dir is not None else (src if src.is_dir() else src.parent)
    texts = {"md": render_compare_md(doc), "html": render_compare_html(doc),
             "json": json.dumps({**doc, "changes": [asdict(c) for c in doc["changes"]],
                                 "agreement": doc["agreement"].to_json()}, indent=1, default=str)}
    paths = {k: out / f"compare.{k}" for k in texts}
    for k, p in paths.items():
        write_text(p, texts[k])
    return paths
