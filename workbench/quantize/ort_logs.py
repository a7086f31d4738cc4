"""Quiet onnxruntime.quantization: its INFO/WARNING log lines and prints would bury the workbench's own output."""
from __future__ import annotations

import contextlib
import io
import logging

_LOGGERS = ("onnxruntime", "onnxruntime.quantization", "onnxruntime.quantization.matmul_nbits_quantizer",
            "onnxruntime.transformers")


@contextlib.contextmanager
def quiet():
    """Silence ORT's quantization chatter (root logger INFO/WARNING lines, prints) while it works."""
    loggers = [logging.getLogger()] + [logging.getLogger(n) for n in _LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)
