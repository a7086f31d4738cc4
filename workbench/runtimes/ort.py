"""ONNX Runtime, CPU execution provider: loads ``.onnx`` and ``.ort`` (mobile format) files."""
from __future__ import annotations

import os
import re

from ..errors import ArtifactError
from .base import InputSpec, Runtime, Session

# ORT's tensor type names -> numpy dtype strings
_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int16)": "int16",
    "tensor(int8)": "int8",
    "tensor(uint64)": "uint64",
    "tensor(uint32)": "uint32",
    "tensor(uint16)": "uint16",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
    "tensor(string)": "str",
}

SPINNING_DEFAULT = "ORT default (session.intra_op.allow_spinning unset = 1, spin-wait on)"


def _one_line(text: str, limit: int = 400) -> str:
    line = re.sub(r"\s+", " ", str(text)).strip()
    return line if len(line) <= limit else line[: limit - 3] + "..."


class OrtSession(Session):
    def __init__(self, session, options: dict):
        self._session = session
        self._options = options

    def input_specs(self) -> list[InputSpec]:
        specs = []
        for i in self._session.get_inputs():
            shape = tuple(d if isinstance(d, int) else (d or "?") for d in (i.shape or ()))
            specs.append(InputSpec(i.name, shape, _ORT_TYPES.get(i.type, i.type)))
        return specs

    def run(self, feeds):
        return self._session.run(None, feeds)

    def options(self) -> dict:
        return dict(self._options)


class OrtRuntime(Runtime):
    name = "ort"
    formats = ("onnx", "ort")
    install_hint = "pip install onnxruntime"
    distributions = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "ort-nightly")
    module = "onnxruntime"

    def prepare(self) -> None:
        import onnxruntime  # noqa: F401

    @staticmethod
    def session_options_dict(threads: int, path: str = "model.onnx") -> dict:
        """The options every ORT session of the workbench uses, as stored in results."""
        return {
            "threads": threads,
            "intra_op_num_threads": threads,
            "inter_op_num_threads": 1,
            "execution_mode": "ORT_SEQUENTIAL",
            "graph_optimization_level": "ORT_ENABLE_ALL",
            "intra_op_allow_spinning": SPINNING_DEFAULT,
            "providers": ["CPUExecutionProvider"],
            "model_format": "ort" if str(path).endswith(".ort") else "onnx",
        }

    def load(self, path: str, threads: int) -> OrtSession:
        base = os.path.basename(path)
        if not os.path.isfile(path):
            raise ArtifactError(
                f"cannot load {base} with onnxruntime: no such file {path}; check the path or re-run the export"
            )
        ext = os.path.splitext(path)[1].lower()
        if ext not in (".onnx", ".ort"):
            raise ArtifactError(
                f"cannot load {base} with onnxruntime: it loads .onnx or .ort files, not {ext or 'extensionless'} ones; "
                "export the model to ONNX first"
            )
        import onnxruntime as ort

        options = self.session_options_dict(threads, path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # errors only: warnings would go to stderr of the worker
        if options["model_format"] == "ort":
            so.add_session_config_entry("session.load_model_format", "ORT")
        try:
            session = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own pybind exception types (Fail, InvalidProtobuf ...)
            raise ArtifactError(
                f"cannot load {base} with onnxruntime: {_one_line(exc)}; "
                "re-export the artifact or check that the file is complete and of a supported opset"
            ) from None
        options["providers"] = list(session.get_providers())
        return OrtSession(session, options)
