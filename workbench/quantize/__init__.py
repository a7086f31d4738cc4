"""Quantization methods, registered by name. Each takes an fp32 ONNX file and writes a new one.

    METHODS.get("static")                          # today's defaults (U8S8 QDQ per-channel, MinMax)
    METHODS.get("static").with_options(calibration="entropy")
    make_method("int4", block_size=64) / parse_method("static?format=qoperator")

Diagnostics for a quantized file (graph format, time in int8 kernels, ISA, a plain explanation):
:mod:`workbench.quantize.diagnose`; the standalone ``workbench quantize`` command:
:mod:`workbench.quantize.standalone`.

``auto`` (not a registered method: it measures): :mod:`.propose` proposes candidates for a graph and
CPU, :mod:`.auto` quantizes, evaluates and measures them interleaved with fp32 and keeps the fastest
within the budget (:mod:`.choice` holds the rule), or fp32 itself said loudly; :mod:`.sensitivity`
gives per-node sensitivity and greedy mixed precision (nodes left in float); :mod:`.auto_cli` is
their command-line side (``--method auto``, ``--sensitivity``).
"""
from __future__ import annotations

from . import optimum_ptq, ort_ptq  # noqa: F401  (importing them registers their methods in METHODS)
from .methods import METHODS, Method, Option, make_method, parse_method, parse_option_pairs

__all__ = ["METHODS", "Method", "Option", "make_method", "parse_method", "parse_option_pairs"]
