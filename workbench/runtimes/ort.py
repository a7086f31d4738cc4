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
    """A loaded ONNX Runtime InferenceSession: runs feeds by input name, reports its session options."""

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
    """The ONNX Runtime adapter (CPU execution provider): loads ``.onnx`` and ``.ort`` with explicit threads."""

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

    def _check(self, path: str) -> None:
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

    def _session(self, path: str, threads: int, profile_prefix: str | None = None):
        """(InferenceSession, options dict) with the workbench's settings; profiling on if a prefix is given."""
        self._check(path)
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
            if str(path).lower().endswith(".with_runtime_opt.ort"):  # replay the optimisations saved in the file
                so.add_session_config_entry("session.enable_saved_runtime_optimizations", "1")
        if profile_prefix is not None:
            so.enable_profiling = True
            so.profile_file_prefix = profile_prefix
        try:
            session = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own pybind exception types (Fail, InvalidProtobuf ...)
            raise ArtifactError(
                f"cannot load {os.path.basename(path)} with {'onnxruntime' if self.name == 'ort' else self.name}: "
                f"{_one_line(exc)}; "
                "re-export the artifact or check that the file is complete and of a supported opset"
            ) from None
        options["providers"] = list(session.get_providers())
        return session, options

    def load(self, path: str, threads: int) -> OrtSession:
        return OrtSession(*self._session(path, threads))

    def profile(self, path: str, threads: int, feeds: dict, runs: int) -> list[dict]:
        """ORT's profiler (SessionOptions.enable_profiling): kernel time per op type over ``runs`` runs
        after one uncounted run; the JSON trace is written to a temporary directory and removed."""
        import shutil
        import tempfile

        from ..fileio.containment import temp_prefix  # owner pid in the name: removed by a later run if we are killed

        tmp = tempfile.mkdtemp(prefix=temp_prefix("ort-profile"))
        try:
            session, _ = self._session(path, threads, profile_prefix=os.path.join(tmp, "ort"))
            for _ in range(runs + 1):
                session.run(None, feeds)
            trace = session.end_profiling()
            return parse_profile(trace, skip_runs=1)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def parse_profile(trace_path: str, skip_runs: int = 1) -> list[dict]:
    """Sum ORT trace events (``cat == "Node"``, ``args.op_name``) per op type within each ``model_run``
    after the first ``skip_runs``; -> [{op_type, time_ms (median over runs of the per-run sum: one
    run interrupted by another process does not move it), count (per run)}]."""
    import bisect
    import json

    try:
        with open(trace_path) as f:
            events = json.load(f)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot read the onnxruntime profile {os.path.basename(trace_path)}: {_one_line(exc)}; "
                            "re-run the profile") from None
    if isinstance(events, dict):
        events = events.get("traceEvents", [])
    runs = sorted((e["ts"], e["ts"] + e.get("dur", 0)) for e in events
                  if e.get("cat") == "Session" and e.get("name") == "model_run")
    counted = runs[skip_runs:]
    if not counted:
        return []
    start, starts = counted[0][0], [a for a, _ in counted]
    n = len(counted)
    per_run: dict[str, list[float]] = {}
    calls: dict[str, int] = {}
    for e in events:
        name, args = str(e.get("name", "")), e.get("args") or {}
        if e.get("cat") != "Node" or "op_name" not in args or name.endswith(("_fence_before", "_fence_after")):
            continue
        ts = e.get("ts", 0)
        k = bisect.bisect_right(starts, ts) - 1  # the last counted run starting at or before ts
        if ts < start or k < 0 or ts > counted[k][1]:
            continue
        op = str(args["op_name"])
        per_run.setdefault(op, [0.0] * n)[k] += float(e.get("dur", 0))
        calls[op] = calls.get(op, 0) + 1
    import statistics

    return [{"op_type": op, "time_ms": statistics.median(us) / 1e3, "count": round(calls[op] / n)}
            for op, us in per_run.items()]
