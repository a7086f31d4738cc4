"""The ``[distill] mode`` of a job: what the teacher and the student are to each other.

    standard  a teacher into a smaller student (no size check: today's behaviour)
    reverse   a smaller (or equal) teacher teaching a larger student (reverse distillation)
    self      the student has the teacher's architecture (self-distillation; in a recipe, born-again
              generations: generation k learns from generation k-1's trained student)

:func:`check_sizes` refuses a student that does not fit the mode, in one line, before any training;
:func:`mode_note` is the sentence reports and cards show. Both `workbench run` (at preflight) and
`workbench distill` call them.
"""
from __future__ import annotations

from ..errors import RecipeError
from ..recipe.distill_keys import MODES  # noqa: F401  (re-exported: the schema's choices)

STANDARD, REVERSE, SELF = "standard", "reverse", "self"


def _params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _shapes(module) -> list[tuple[str, tuple]]:
    return [(k, tuple(v.shape)) for k, v in module.state_dict().items()]


def check_sizes(mode: str, teacher, student, student_name: str) -> None:
    """Refuse (one RecipeError) a student that does not fit ``mode``: reverse needs at least the teacher's
    parameter count, self the teacher's architecture (the same parameter names and shapes). ``teacher`` and
    ``student`` are PyTorch modules; standard mode checks nothing."""
    if mode == STANDARD:
        return
    t, s = _params(teacher), _params(student)
    if mode == REVERSE and s < t:
        raise RecipeError(f'[distill] mode = "reverse" teaches a larger (or equal) student with a smaller teacher, '
                          f"but student {student_name} has {s:,} params, fewer than the teacher's {t:,}; use "
                          f'mode = "standard" or a larger student')
    if mode == SELF and _shapes(student) != _shapes(teacher):
        raise RecipeError(f'[distill] mode = "self" trains students of the teacher\'s architecture, but student '
                          f"{student_name} ({s:,} params) differs from the teacher ({t:,} params) in its layers; give "
                          f'the teacher\'s architecture as the student, or use mode = "reverse" / "standard"')


def mode_note(mode: str, teacher_params: int | None, student_params: int, student: str,
              generations: int = 1) -> str | None:
    """The one sentence a report or a card shows for a non-standard mode (None for standard), e.g.
    ``reverse distillation: teacher 6,274 params -> student 72,666 params (cnn-m, 11.6x the teacher)``."""
    if mode == STANDARD:
        return None
    t = "a black box" if not teacher_params else f"{teacher_params:,} params"
    if mode == REVERSE:
        times = f", {student_params / teacher_params:.1f}x the teacher" if teacher_params else ""
        return f"reverse distillation: teacher {t} -> student {student_params:,} params ({student}{times})"
    chain = ("generation 1 learns from the teacher, each later generation from the previous one's trained "
             f"student of the same seed; the deployed KD student is generation {generations}") if generations > 1 \
        else "one generation, taught by the teacher"
    return (f"self-distillation (born-again, {generations} generation{'s' if generations > 1 else ''}): teacher {t} "
            f"-> student {student_params:,} params ({student}, same architecture); {chain}")
