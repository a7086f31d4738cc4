"""What distillation bought: KD vs labels-only accuracy per regime/student, from results.json's
studies.distillation. Pure Python: no plotly, no rich, no numpy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from workbench.report.format import _get, _l, _num, _pair, fmt_pts


@dataclass(frozen=True)
class StudyRow:
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
    xs = [float(x) for x in xs or [] if _num(x) is not None]
    return sum(xs) / len(xs) if xs else None


def study_sentence(student, regime_label, verdict, diff, diff_ci, n_seeds) -> str:
    who = f"the {student} student on {regime_label}"
    d = f"{fmt_pts(diff, diff_ci)} accuracy vs labels-only training, {n_seeds} seeds"
    if verdict == "KD helps":
        return f"KD helped {who}: {d}."
    if verdict == "KD hurts":
        return f"KD did not help {who}; it hurt: {d}."
    return f"KD did not help {who}: {d}; the interval includes zero, so no significant difference."


def build_studies(results: dict) -> list[StudyRow]:
    out = []
    for s in _l(_get(results, "studies", "distillation")):
        if not isinstance(s, dict):
            continue
        lm = _num(s.get("labels_mean")) if _num(s.get("labels_mean")) is not None else _mean(s.get("labels_acc"))
        km = _num(s.get("kd_mean")) if _num(s.get("kd_mean")) is not None else _mean(s.get("kd_acc"))
        diff = _num(s.get("diff_mean"))
        if diff is None and lm is not None and km is not None:
            diff = km - lm
        n = len(_l(s.get("seeds")) or _l(s.get("kd_acc")))
        label = str(s.get("regime_label") or s.get("regime") or "?")
        verdict = str(s.get("verdict") or "no significant difference")
        student = str(s.get("student") or "?")
        out.append(StudyRow(str(s.get("regime") or "?"), label, student, _num(s.get("params")),
                            None if _num(s.get("n_train")) is None else int(s["n_train"]), n, lm, km, diff, _pair(s.get("diff_ci95")), verdict,
                            study_sentence(student, label, verdict, diff, _pair(s.get("diff_ci95")), n)))
    return out


def study_summary(studies: Sequence[StudyRow]) -> str:
    if not studies:
        return "No distillation study in this run."
    helps = sum(s.verdict == "KD helps" for s in studies)
    hurts = sum(s.verdict == "KD hurts" for s in studies)
    return (f"Across {len(studies)} regime/student pairs, KD helped in {helps}, hurt in {hurts} "
            f"and made no significant difference in {len(studies) - helps - hurts}.")
