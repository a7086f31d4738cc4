"""Export: one :class:`~.base.Exporter` per format, registered in :data:`EXPORTERS` (onnx, ort-mobile,
executorch, litert), all called the same way and all checking parity with their PyTorch source.

    EXPORTERS.get("executorch").export(model, example, "m.int8-pt2e.pte",
                                       ExportOptions(method=parse_method("pt2e"), calibration=x))

Importing this package imports no converter (torch, onnxruntime, executorch, litert load inside the calls).
"""
from .base import EXPORTERS, ExportOptions, Exporter, evenly_spaced, exporter_for_runtime
from .onnx import export_onnx, onnx_parity


def _register_builtins() -> None:
    from .executorch import ExecutorchExporter
    from .litert import LiteRTExporter
    from .onnx import OnnxExporter
    from .ort_mobile import OrtMobileExporter

    for exp in (OnnxExporter(), OrtMobileExporter(), ExecutorchExporter(), LiteRTExporter()):
        EXPORTERS.register(exp.name, exp)


_register_builtins()

__all__ = ["EXPORTERS", "ExportOptions", "Exporter", "evenly_spaced", "export_onnx", "exporter_for_runtime",
           "onnx_parity"]
