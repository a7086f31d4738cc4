"""Reverse and self-distillation in the report: the run's ``[distill] mode`` (results.json's
``studies.mode``) in one sentence per student, and the born-again generations study
(``studies.generations``: every generation vs the labels-only twin and vs the previous generation,
paired over seeds). Absent in standard mode. Pure Python: no plotly, no rich, no numpy.
"""
from __future__ import annotations

import html
from dataclasses import dataclass

from workbench.pipeline.result_parts import finite
from workbench.pipeline.results import ResultSet
from workbench.report.format import finite_pair
from workbench.report.metric import ACCURACY, MetricStyle


@dataclass(frozen=True)
class GenerationRow:
    """One generation of one student and regime against one baseline (the twin or the previous generation)."""

    student: str
    regime_label: str
    generation: int
    against: str
    n_seeds: int
    base_mean: float | None
    generation_mean: float | None
    diff: float | None
    diff_ci: tuple | None
    verdict: str


@dataclass(frozen=True)
class ModeView:
    """The run's distillation mode as the report shows it: the mode, its sentences and the generation rows."""

    mode: str
    notes: tuple
    generations: tuple  # GenerationRow


def build_modes(results: ResultSet) -> ModeView | None:
    """The mode view of a run (None for a standard-mode run, whose results.json has no ``studies.mode``)."""
    studies = results.studies or {}
    mode = studies.get("mode")
    if not isinstance(mode, dict):
        return None
    rows = []
    for g in studies.get("generations") or []:
        if not isinstance(g, dict):
            continue
        rows.append(GenerationRow(str(g.get("student") or "?"), str(g.get("regime_label") or g.get("regime") or "?"),
                                  int(g.get("generation") or 0), str(g.get("against") or "?"),
                                  len(g.get("seeds") or []), finite(g.get("base_mean")),
                                  finite(g.get("generation_mean")), finite(g.get("diff_mean")),
                                  finite_pair(g.get("diff_ci95")), str(g.get("verdict") or "?")))
    return ModeView(str(mode.get("mode") or "?"), tuple(str(n) for n in mode.get("notes") or [] if n),
                    tuple(rows))


_HEADER = ("student", "training data", "generation", "against", "seeds", "baseline mean", "generation mean")


def _rows(view: ModeView, m: MetricStyle) -> list[list[str]]:
    return [[r.student, r.regime_label, str(r.generation), r.against, str(r.n_seeds), m.fmt(r.base_mean),
             m.fmt(r.generation_mean), m.diff(r.diff, r.diff_ci), r.verdict] for r in view.generations]


def _header(m: MetricStyle) -> list[str]:
    return [*_HEADER, f"generation − baseline {'' if m.percent else m.name + ' '}[95% CI]", "verdict"]


def modes_markdown(view: ModeView | None, m: MetricStyle = ACCURACY) -> list[str]:
    """Markdown lines for the distillation section: the mode's sentences and the generations table."""
    if view is None:
        return []
    out = [f"**Distillation mode: {view.mode}.**", ""] + [f"- {n}" for n in view.notes] + [""]
    if view.generations:
        out += ["Born-again generations (each row paired over seeds):", ""]
        head = _header(m)
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in _rows(view, m)] + [""]
    return out


def modes_html(view: ModeView | None, m: MetricStyle = ACCURACY) -> list[str]:
    """HTML pieces for the distillation section (same content as :func:`modes_markdown`)."""
    if view is None:
        return []
    e = html.escape
    out = [f"<p><strong>Distillation mode: {e(view.mode)}.</strong></p>",
           "<ul>" + "".join(f"<li>{e(n)}</li>" for n in view.notes) + "</ul>"]
    if view.generations:
        head = "".join(f"<th>{e(h)}</th>" for h in _header(m))
        body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in _rows(view, m))
        out.append(f"<p>Born-again generations (each row paired over seeds):</p><table><thead><tr>{head}</tr>"
                   f"</thead><tbody>{body}</tbody></table>")
    return out
