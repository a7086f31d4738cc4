"""Silencing what native runtimes and converters print past Python (straight to file descriptors 1 and 2).

Lives in runtimes/ because the adapters need it when they load a program (ExecuTorch logs its
thread-pool reset, LiteRT announces its XNNPACK delegate); the exporters use it from here too, so
imports run one way: export -> evaluate -> runtimes, never back.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings


@contextlib.contextmanager
def quiet_native_output():
    """Send fd 1 and 2 (native converters and runtimes log there, past Python) to a temp file for the
    block, so the terminal keeps the workbench's own progress lines."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    sink = tempfile.TemporaryFile()
    try:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.__stdout__):
            warnings.simplefilter("ignore")
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        sink.close()
