"""The unit that converts one artifact for a mobile runtime (ort-mobile, executorch, litert): a thin call of
workbench.pipeline.mobile.convert, which makes it with the runtime's registered exporter.

A conversion the runtime's converter cannot make (its one-line ExportError: an operator it does not
convert, a converted file its runtime cannot load, parity beyond tolerance) does not stop the run: the
unit returns :class:`Skipped` with that line, the executor skips what depends on the artifact (its
evaluation, memory profile) and measures its group without it, and the run records the note.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...errors import ExportError
from ..family import RunContext
from .jobs import ArtifactResult, ConvertJob


@dataclass(frozen=True)
class Skipped:
    """The result of a unit that made nothing: ``note`` (one line) says why; ``cause`` is the node whose
    skip it follows (None for the unit that failed itself)."""

    note: str
    cause: str | None = None


def convert(ctx: RunContext, job: ConvertJob, inputs: dict, progress=None) -> ArtifactResult | Skipped:
    """The artifact ``job.art_id`` of a mobile runtime, from the .onnx of ``job.src`` or the PyTorch model
    ``job.model`` (cached like every artifact: reused when its content key and file are intact); Skipped
    with the converter's one-line reason when the runtime's converter cannot make it."""
    from ..mobile import convert as make

    try:
        art, reused = make(ctx, job.runtime, job.model, inputs[job.src].artifact, job.method, progress)
    except ExportError as e:  # the converter's own failure, never a bug (those still stop the run)
        return Skipped(f"skipped {job.art_id} on {job.runtime}: {' '.join(str(e).split())}")
    if art.id != job.art_id:  # the plan and the exporter must agree on what is made
        from ...errors import WorkbenchError

        raise WorkbenchError(f"plan error: {job.runtime} conversion made {art.id}, the plan expected {job.art_id}")
    return ArtifactResult(art, job.runtime, reused)
