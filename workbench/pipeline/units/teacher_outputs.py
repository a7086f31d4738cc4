"""The ``teacher_outputs`` unit: one entry of the run's teacher-output cache filled, before the training units
that read it.

A family with a teacher-output cache says, per training job, which entry the job reads
(``Family.teacher_outputs(recipe, job) -> OutputsSpec | None``, pure) and fills one
(``Family.fill_teacher_outputs(ctx, job, progress) -> CacheEntry``). The plan adds one node of this unit per
distinct (teacher, entry): the recipe's teacher, and in self mode each born-again generation's teacher (the
trained student of generation N - 1, so its node depends on that training); every training node that reads
the entry depends on it. So with the Ray executor the teacher pass runs once, not once per KD unit that starts
before the file exists. Training units then only read the entry (one missing, e.g. deleted by hand, is
recomputed there with a note: workbench.pipeline.units.make.train_student).

The result is small: the entry's key, its files, one sha256 over them, the seconds it took to make, and
whether it was there already (``reused``). A record under ``work/teacher_outputs/`` keeps the sha256 so a
re-run reads no file whole: the unit then writes nothing (``units.json``: cached).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..family import FAMILIES, RunContext, StudentJob, recipe_of, rundir_of


@dataclass(frozen=True)
class TeacherOutputsJob:
    """Fill the teacher-output cache entry named ``label`` that ``job`` (the first training job reading it)
    reads; ``key`` is the plan's content key of the entry (teacher or teaching generation, task, spec)."""

    job: StudentJob
    key: str
    label: str


@dataclass(frozen=True)
class TeacherOutputsResult:
    """A filled cache entry: its cache key, its files (run-relative), one sha256 over them, the seconds its
    teacher pass took (when this unit made it; the recorded time when it was reused) and ``reused``."""

    key: str
    paths: tuple[str, ...]
    sha256: str
    seconds: float
    reused: bool

    @property
    def made(self) -> bool:
        """This unit computed the entry (the teacher pass ran)."""
        return not self.reused


def reads_teacher_outputs(family, recipe, job: StudentJob):
    """The OutputsSpec of the cache entry ``job`` reads in ``family``, or None (a family without a
    teacher-output cache, or a job that reads none, e.g. a labels-only twin)."""
    describe = getattr(family, "teacher_outputs", None)
    return describe(recipe, job) if describe is not None else None


def _stats(root: Path, paths) -> list:
    out = []
    for p in paths:
        st = (root / p).stat()
        out.append([p, st.st_size, st.st_mtime_ns])
    return out


def teacher_outputs(ctx: RunContext, job: TeacherOutputsJob, inputs: dict, progress=None) -> TeacherOutputsResult:
    """Fill one teacher-output cache entry (on the recipe's [train] device, as the training units that read
    it) unless it is there; return what it holds."""
    from ...distill.cache import files_sha256
    from ...distill.device import using
    from ...fileio import write_json
    from ...fileio.cachefile import MISSING
    from ...progress import Progress

    rd, fam = rundir_of(ctx), FAMILIES.get(ctx.family)
    t0 = time.perf_counter()
    with using(recipe_of(ctx).train.device):
        entry = fam.fill_teacher_outputs(ctx, job.job, progress if progress is not None else Progress(quiet=True))
    took = round(time.perf_counter() - t0, 3)
    root = Path(ctx.root)
    stats = _stats(root, entry.paths)
    record = rd.unit("teacher_outputs", job.label, entry.key)
    old = rd.read_entry(record, validate=lambda v: isinstance(v, dict) and "sha256" in v and "stats" in v)
    if entry.hit and old is not MISSING and old["stats"] == stats:  # the same files as recorded: nothing to write
        return TeacherOutputsResult(entry.key, entry.paths, old["sha256"], old["seconds"], True)
    sha = files_sha256(root, entry.paths)
    seconds = old["seconds"] if entry.hit and old is not MISSING else took
    write_json(record, {"key": entry.key, "paths": list(entry.paths), "sha256": sha, "stats": stats,
                        "seconds": seconds, "made_here": not entry.hit})
    return TeacherOutputsResult(entry.key, entry.paths, sha, seconds, entry.hit)
