"""The unit that converts one artifact for a mobile runtime (ort-mobile, executorch, litert): a thin call of
workbench.pipeline.mobile.convert, which makes it with the runtime's registered exporter."""
from __future__ import annotations

from ..family import RunContext
from .jobs import ArtifactResult, ConvertJob


def convert(ctx: RunContext, job: ConvertJob, inputs: dict, progress=None) -> ArtifactResult:
    """The artifact ``job.art_id`` of a mobile runtime, from the .onnx of ``job.src`` or the PyTorch model
    ``job.model`` (cached like every artifact: reused when its content key and file are intact)."""
    from ..mobile import convert as make

    art = make(ctx, job.runtime, job.model, inputs[job.src].artifact, job.method, progress)
    if art.id != job.art_id:  # the plan and the exporter must agree on what is made
        from ...errors import WorkbenchError

        raise WorkbenchError(f"plan error: {job.runtime} conversion made {art.id}, the plan expected {job.art_id}")
    return ArtifactResult(art, job.runtime, False)
