"""Core types that cross module boundaries (typed and immutable; no loose dicts)."""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks: the content identity every artifact and cache key uses."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Artifact:
    """A file on disk that a runtime can load, with where it came from."""

    id: str  # unique within a run, e.g. "teacher.int8-static"
    path: str  # absolute or run-relative path of the main file
    format: str  # "onnx", ...
    sha256: str
    size_bytes: int  # all files the artifact needs (main file + external data)
    params: int  # parameter count of the source model
    precision: str  # "fp32", "fp16", "int8"
    lineage: tuple[str, ...]  # e.g. ("teacher:zoo:digits-resnet", "distill(kd,T=4,alpha=0.9)", "quantize(static-qdq)")
    made_in_s: float  # wall time it took to make this artifact (training + export + quantization step)
    parity_max_abs: float | None = None  # max |output - source output| on a check batch
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def to_json(self) -> dict:
        """The JSON form stored in results and cards."""
        d = asdict(self)
        d["lineage"] = list(self.lineage)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Artifact":
        """Rebuild from its JSON form (the inverse of to_json)."""
        d = dict(d)
        d["lineage"] = tuple(d.get("lineage", ()))
        return cls(**d)
