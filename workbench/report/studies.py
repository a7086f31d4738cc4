"""What distillation bought: KD vs its twin (labels-only for accuracy) per regime/student in the run's
metric, from results.json's studies.distillation. Pure Python: no plotly, no rich, no numpy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from workbench.pipeline.result_parts import finite
from workbench.pipeline.results import ResultSet
from workbench.report.format import finite_pair
from workbench.report.metric import ACCURACY, MetricStyle

FEW_SEEDS = "not enough seeds"  # workbench.pipeline.study's verdict for a pair trained with one seed (no interval)


@dataclass(frozen=True)
class StudyRow:
    """One regime x student of the distillation study as the report shows it."""
    regime: str
    regime_label: str
    student: str
    params: float | None
    n_train: int | None
    n_seeds: int
    labels_mean: float | None
    kd_mean: float | None
    diff: float | None
    diff_ci: tuple | None
    verdict: str
    sentence: str


def _mean(xs):
    """Mean of the finite numbers in ``xs``, None when there are none."""
    xs = [float(x) for x in xs or [] if finite(x) is not None]
    return sum(xs) / len(xs) if xs else None


def study_sentence(student, regime_label, verdict, diff, diff_ci, n_seeds, style: MetricStyle = ACCURACY) -> str:
    """One plain sentence: did KD help this student in this regime, with the difference (in ``style``'s
    words and units) and its CI."""
    who = f"the {student} student on {regime_label}"
    seeds = f"{n_seeds} seed{'' if n_seeds == 1 else 's'}"
    d = f"{style.diff(diff, diff_ci)} {style.name} vs {style.twin_training}, {seeds}"
    if verdict == "KD helps":
        return f"KD helped {who}: {d}."
    if verdict == "KD hurts":
        return f"KD did not help {who}; it hurt: {d}."
    if verdict == FEW_SEEDS or diff_ci is None:  # one seed: no interval to judge by
        twin = "the twin" if not style.percent else style.twin
        return f"KD vs {twin} for {who}: {d}; no interval (one seed), so no significance claimed."
    return f"KD did not help {who}: {d}; the interval includes zero, so no significant difference."


def build_studies(results: ResultSet, style: MetricStyle = ACCURACY) -> list[StudyRow]:
    """One StudyRow per regime x student of the distillation study (none when the run has no study);
    ``style``: the run's metric, which the sentences speak."""
    out = []
    for s in results.distillation:
        lm = finite(s.labels_mean) if finite(s.labels_mean) is not None else _mean(s.labels_acc)
        km = finite(s.kd_mean) if finite(s.kd_mean) is not None else _mean(s.kd_acc)
        diff = finite(s.diff_mean)
        if diff is None and lm is not None and km is not None:
            diff = km - lm
        n = len(s.seeds or s.kd_acc)
        label = str(s.regime_label or s.regime or "?")
        verdict = str(s.verdict or "no significant difference")
        student = str(s.student or "?")
        ci = finite_pair(s.diff_ci95)
        out.append(StudyRow(str(s.regime or "?"), label, student, finite(s.params),
                            None if finite(s.n_train) is None else int(s.n_train), n, lm, km, diff, ci, verdict,
                            study_sentence(student, label, verdict, diff, ci, n, style)))
    return out


def study_summary(studies: Sequence[StudyRow]) -> str:
    """One sentence counting where KD helped, hurt or made no significant difference; pairs trained with
    too few seeds for an interval ("not enough seeds") are counted apart: they have no verdict."""
    if not studies:
        return "No distillation study in this run."
    n = len(studies)
    few = sum(s.verdict == FEW_SEEDS for s in studies)
    if few == n:
        return (f"Across {n} regime/student pair{'s' if n != 1 else ''}, no verdict: "
                f"{'each was' if n != 1 else 'it was'} trained with one seed, not enough for an interval of the "
                "difference (list at least 2 seeds in the recipe's [distill] seeds for a verdict).")
    helps = sum(s.verdict == "KD helps" for s in studies)
    hurts = sum(s.verdict == "KD hurts" for s in studies)
    text = (f"Across {n} regime/student pairs, KD helped in {helps}, hurt in {hurts} "
            f"and made no significant difference in {n - helps - hurts - few}")
    if few:
        text += f"; {few} had too few seeds for a verdict ({FEW_SEEDS})"
    return text + "."
