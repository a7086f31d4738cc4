"""Export: one module per format; every export checks parity with its source."""
from .onnx import export_onnx, onnx_parity

__all__ = ["export_onnx", "onnx_parity"]
