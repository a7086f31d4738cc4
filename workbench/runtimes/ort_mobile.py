"""ONNX Runtime loading ORT-format (``.ort``) models the way a mobile (minimal) build does.

The PyPI wheel is a full build, so this adapter reproduces what a reduced-size mobile build can
do with the file: it loads only ``.ort`` files (the format a minimal build reads), applies no
graph optimisation of its own (an ORT-format model runs as saved: the converter already
optimised it, without the x86-only NCHWc layout transformer), and for a
``*.with_runtime_opt.ort`` file replays the saved runtime optimisations
(``session.enable_saved_runtime_optimizations=1``), as the mobile app must ask for. The
operators a reduced build needs are in the ``required_operators.config`` written beside it
(``workbench.export.ort_mobile``). Latencies are of this machine's CPU, never a phone's.
"""
from __future__ import annotations

import os

from ..errors import ArtifactError
from .ort import OrtRuntime


def with_runtime_opt(path: str) -> bool:
    """Whether ``path`` is an ORT-format file with saved runtime optimisations (they are replayed on load)."""
    return str(path).lower().endswith(".with_runtime_opt.ort")


class OrtMobileRuntime(OrtRuntime):
    """ORT loading ``.ort`` files as a reduced-size mobile build would (see the module docstring)."""

    name = "ort-mobile"
    formats = ("ort",)
    install_hint = "pip install onnxruntime (the mobile format needs nothing more)"

    @staticmethod
    def session_options_dict(threads: int, path: str = "model.ort") -> dict:
        d = OrtRuntime.session_options_dict(threads, path)
        d["model_format"] = "ort"
        d["saved_runtime_optimizations"] = "replayed" if with_runtime_opt(path) else "none in file"
        d["graph_optimization_level"] = ("ORT_ENABLE_ALL (only replays the saved runtime optimisations; "
                                         "ORT-format models are not re-optimised)")
        return d

    def _check(self, path: str) -> None:
        base = os.path.basename(path)
        if not os.path.isfile(path):
            raise ArtifactError(f"cannot load {base} with ort-mobile: no such file {path}; check the path or "
                                "re-run the export")
        if not base.lower().endswith(".ort"):
            ext = os.path.splitext(base)[1] or "extensionless"
            raise ArtifactError(f"cannot load {base} with ort-mobile: it loads ORT-format .ort files, not {ext} "
                                "ones; convert with workbench.export.ort_mobile (or use runtime 'ort' for .onnx)")

    # sessions, loading and profiling: OrtRuntime's (it replays the saved runtime optimisations of a
    # *.with_runtime_opt.ort file); this adapter differs in what it accepts and how it reports its options

