"""The pipeline's units: module-level functions ``fn(ctx, job, inputs, progress=None) -> result`` of
serialisable arguments (see .jobs), registered by name in :data:`UNITS` so a plan names them and any
executor (in process, another process, another machine) can run them.

    teacher_outputs  one entry of the run's teacher-output cache filled (before the training units reading it)
    train_student    one student trained (labels-only twin or KD), weights + result row
    export_fp32      the teacher or a trained student exported to ONNX fp32 (parity checked)
    quantize         one artifact quantized with one method spec
    auto_quantize    ``auto``: candidates measured against the source inside the unit, the best kept
    convert          one artifact made for a mobile runtime (ort-mobile, executorch, litert)
    pytorch_metric   the task's metric of a PyTorch model (the reference of vs_pytorch)
    evaluate         the task's metric of one artifact through one runtime
    measure_group    interleaved latency of a group of artifacts (one runtime, one thread count) + comparisons
    memory_profile   memory (and the per-operator profile) of one artifact
"""
from __future__ import annotations

from ...registry import Registry
from .. import families  # noqa: F401  (registers the task families the units look up by name)
from .convert import convert
from .make import auto_quantize, export_fp32, pytorch_metric, quantize, train_student
from .measure import evaluate, measure_group, memory_profile
from .teacher_outputs import teacher_outputs

UNITS: Registry = Registry("pipeline unit")
for _fn in (teacher_outputs, train_student, export_fp32, quantize, auto_quantize, convert, pytorch_metric, evaluate,
            measure_group, memory_profile):
    UNITS.register(_fn.__name__, _fn)


def run_unit(name: str, ctx, job, inputs: dict, progress=None):
    """Run the unit registered as ``name`` (what an executor calls, in this process or another)."""
    return UNITS.get(name)(ctx, job, inputs, progress)


__all__ = ["UNITS", "run_unit"]
