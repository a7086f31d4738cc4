"""``[distill] mode`` in `workbench run`: reverse distillation and self-distillation (born-again generations).

    standard  the plan of every earlier run, byte for byte (nothing here changes it)
    reverse   the same plan; preflight accepts (and requires) students at least as large as the teacher,
              and the study says "reverse distillation: teacher N params -> student M params"
    self      students of the teacher's architecture; with ``generations = G`` each (student, regime, seed)
              gets KD generations 2..G after the first: generation k's train node depends on generation
              k-1's, is taught by that trained student (a ModelRef to its weights file; its outputs cached
              under the weights' sha256) and its content key includes generation k-1's key. The deployed KD
              student is generation G; the study pairs every generation with the labels-only twin and
              generation k with k-1 over seeds (workbench.pipeline.study.paired_difference).
"""
from __future__ import annotations

from dataclasses import replace

from ..distill.modes import SELF, STANDARD, check_sizes, mode_note
from ..errors import RecipeError
from .family import FAMILIES, ModelRef, StudentJob
from .study import paired_difference


def train_methods(recipe) -> list[tuple[str, int]]:
    """(method, generation) of every training run of one (student, regime, seed), in plan order: the
    labels-only twin, KD, and in self mode KD generations 2..``generations``."""
    d = recipe.distill
    extra = range(2, d.generations + 1) if d.mode == SELF else range(0)
    return [("labels", 1), ("kd", 1), *(("kd", g) for g in extra)]


def lineage(sj: StudentJob, trained: dict, teacher_sha: str) -> tuple[StudentJob, tuple[str, ...], str | None]:
    """(the job with its teacher, the train nodes it depends on, what its content key says taught it) for a
    training run; ``trained``: the ModelRefs of the runs planned so far, by job name. Generation 1 learns
    from the run's teacher (the twin from nothing); generation k from generation k-1 of the same seed."""
    if sj.generation == 1:
        return sj, (), teacher_sha if sj.method == "kd" else None
    prev: ModelRef = trained[replace(sj, generation=sj.generation - 1, teacher=None).name]
    return replace(sj, teacher=prev), (f"train:{prev.job.name}",), prev.key


def modes_of(fam) -> tuple[str, ...]:
    """The [distill] modes a task family trains (its ``distill_modes``; standard only when it names none)."""
    return tuple(getattr(fam, "distill_modes", (STANDARD,)))


def check_mode(recipe, task, fam, teacher_module, base_dir) -> None:
    """Preflight: the recipe's mode is one its task family trains, and every student fits it (reverse: at
    least the teacher's size; self: the teacher's architecture). One RecipeError, before anything is written."""
    mode = recipe.distill.mode
    if mode == STANDARD:
        return
    if mode not in modes_of(fam):
        able = [n for n in FAMILIES.names() if mode in modes_of(FAMILIES.get(n))]
        raise RecipeError(f'[distill] mode = "{mode}" is not available for {fam.name} tasks (available for: '
                          f'{", ".join(able) or "none"}); use mode = "standard"')
    for st in recipe.students:
        check_sizes(mode, teacher_module, fam.build_student(st, task, base_dir), st.name)


def _regime_label(regime: str, first: dict, fam) -> str:
    """The regime as the distillation study names it (same words as runner._study)."""
    head = "full training split" if regime == "full" else f"{regime[4:]} labelled {fam.examples} per class"
    return f"{head} ({first['n_train']} {fam.examples})"


def mode_studies(recipe, trained: dict, fam, teacher_params: int) -> dict:
    """The studies a non-standard mode adds to results.json (none in standard mode): ``mode`` (the mode,
    sizes and one sentence per student) and, in self mode, ``generations`` (every generation vs the
    labels-only twin and vs the previous generation, paired over seeds)."""
    d = recipe.distill
    if d.mode == STANDARD:
        return {}
    params = {st.name: trained[f"{st.name}.full.labels.s{d.seeds[0]}"]["params"] for st in recipe.students}
    out = {"mode": {"mode": d.mode, "generations": d.generations if d.mode == SELF else 1,
                    "teacher_params": teacher_params, "student_params": params,
                    "notes": [mode_note(d.mode, teacher_params, p, name, d.generations if d.mode == SELF else 1)
                              for name, p in params.items()]}}
    if d.mode == SELF:
        out["generations"] = generation_study(recipe, trained, fam)
    return out


def generation_study(recipe, trained: dict, fam) -> list[dict]:
    """Born-again generations, per regime and student: generation k vs the labels-only twin (k = 1..G) and
    generation k vs k-1 (k = 2..G), each paired over the recipe's seeds in the task's metric."""
    d = recipe.distill
    out = []
    for regime in d.regimes:
        for st in recipe.students:
            def acc(method: str, gen: int) -> list[float]:
                return [trained[StudentJob(st, regime, s, method, gen).name]["test_metric"] for s in d.seeds]

            labels = acc("labels", 1)
            first = trained[StudentJob(st, regime, d.seeds[0], "labels").name]
            gens = {g: acc("kd", g) for g in range(1, d.generations + 1)}
            for g, values in gens.items():
                pairs = [("labels-only twin", labels)] + ([(f"generation {g - 1}", gens[g - 1])] if g > 1 else [])
                for against, base in pairs:
                    diff = paired_difference(base, values)
                    verdict = {"KD helps": f"generation {g} better", "KD hurts": f"generation {g} worse"}.get(
                        diff["verdict"], diff["verdict"])
                    out.append({"regime": regime, "regime_label": _regime_label(regime, first, fam),
                                "student": st.name, "generation": g, "against": against, "seeds": list(d.seeds),
                                "base_acc": base, "generation_acc": values, "base_mean": diff["labels_mean"],
                                "generation_mean": diff["kd_mean"], "diff_mean": diff["diff_mean"],
                                "diff_ci95": diff["diff_ci95"], "ci_method": diff["ci_method"], "verdict": verdict,
                                "metric": fam.metric})
    return out
