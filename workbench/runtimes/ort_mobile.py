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
from .ort import OrtRuntime, OrtSession, _one_line


def with_runtime_opt(path: str) -> bool:
    return str(path).lower().endswith(".with_runtime_opt.ort")


class OrtMobileRuntime(OrtRuntime):
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

    def _session(self, path: str, threads: int, profile_prefix: str | None = None):
        self._check(path)
        import onnxruntime as ort

        options = self.session_options_dict(threads, path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # ENABLE_ALL is needed for the replay of saved runtime optimisations; a .ort is not re-optimised
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        so.add_session_config_entry("session.load_model_format", "ORT")
        if with_runtime_opt(path):
            so.add_session_config_entry("session.enable_saved_runtime_optimizations", "1")
        if profile_prefix is not None:
            so.enable_profiling = True
            so.profile_file_prefix = profile_prefix
        try:
            session = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT's pybind exception types
            raise ArtifactError(f"cannot load {os.path.basename(path)} with ort-mobile: {_one_line(exc)}; "
                                "re-export the artifact or check that the file is complete") from None
        options["providers"] = list(session.get_providers())
        return session, options

    def load(self, path: str, threads: int) -> OrtSession:
        return OrtSession(*self._session(path, threads))
