"""Where a `workbench distill` job writes: its output folder and the teacher-output cache.

Shared by every job runner (distill/run.py for image classifiers, distill/transformer_run.py for
transformers, distill/qat_run.py for quantization-aware fine-tuning); run.py only dispatches to them,
so none of them imports run.py.
"""
from __future__ import annotations

import os
from pathlib import Path

DEFAULT_CACHE = Path(os.environ.get("WORKBENCH_CACHE", "~/.cache/workbench")).expanduser() / "teacher-outputs"


def default_out(job) -> Path:
    """The output folder of a job without ``out``: runs/distill-<student name>."""
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in job.student.split("?")[0].split("/")[-1])
    return Path("runs") / f"distill-{name.strip('-')}"


def prepare_out(job) -> Path:
    """The job's output folder, created (a one-line error when it cannot be written)."""
    from ..fileio import ensure_writable_dir
    from .ddp import is_main

    out = Path(job.out) if job.out else default_out(job)
    if is_main():  # under torchrun only rank 0 writes (the other ranks only read the checkpoint there)
        ensure_writable_dir(out)
    return out


def cache_root(job) -> Path:
    """The teacher-output cache folder: the job's ``cache`` or $WORKBENCH_CACHE/teacher-outputs."""
    return Path(job.cache).expanduser() if job.cache else DEFAULT_CACHE
