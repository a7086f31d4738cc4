"""Quantization methods, registered by name. Each takes an fp32 ONNX file and writes a new one."""
from __future__ import annotations

from ..registry import Registry

METHODS: Registry = Registry("quantization method")


def _register_builtins() -> None:
    from . import ort_ptq

    METHODS.register("static", ort_ptq.STATIC)
    METHODS.register("dynamic", ort_ptq.DYNAMIC)
    METHODS.register("fp16", ort_ptq.FP16)


_register_builtins()

__all__ = ["METHODS"]
