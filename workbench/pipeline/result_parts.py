"""The typed parts of one result record (artifact, runtime, latency, memory, quality, ...).

Each part is a frozen dataclass read from / written to the JSON object results.json holds for it.
A part remembers which keys its JSON object had, in their order, and keeps keys this version does
not type in ``extra``, so ``Part.from_json(d).to_json() == d`` for every well-formed record — old
files round-trip byte for byte and a key added later is never lost. Typed numeric fields hold a
JSON number or None (a malformed value reads as None); pairs such as a 95% CI read as a
(low, high) tuple or None. Deeper objects a part does not type (``auto``, ``diagnostics``'s
``top_ops``, ``export`` ...) stay JSON values. Pure Python: no numpy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar


def number(x) -> float | int | None:
    """A JSON number as read (int or float, NaN kept), None for anything else (bool, str, null)."""
    return x if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def finite(x) -> float | None:
    """``x`` as a float when it is a finite number, else None: what a report may print."""
    x = number(x)
    return float(x) if x is not None and math.isfinite(x) else None


def pair(x) -> tuple | None:
    """A two-number JSON list (e.g. a 95% CI) as a tuple, else None."""
    if isinstance(x, (list, tuple)) and len(x) == 2 and all(number(v) is not None for v in x):
        return tuple(x)
    return None


def text(x) -> str | None:
    """A JSON string as read, None for anything else."""
    return x if isinstance(x, str) else None


def objects(x) -> tuple:
    """The JSON objects (dicts) of a list, as a tuple; anything else reads as ()."""
    return tuple(v for v in x if isinstance(v, dict)) if isinstance(x, list) else ()


def mapping(x) -> dict:
    """A JSON object as read, {} for anything else."""
    return x if isinstance(x, dict) else {}


def _json(v):
    """A typed value back to JSON: tuples become lists, parts their objects."""
    if isinstance(v, Part):
        return v.to_json()
    if isinstance(v, tuple):
        return [_json(x) for x in v]
    return v


@dataclass(frozen=True)
class Part:
    """Base of every typed part: ``keys`` is the JSON object's key order, ``extra`` the (key, value)
    pairs of keys this version does not type. Subclasses map field name -> reader in ``READ``;
    a field without one keeps the JSON value as read."""

    READ: ClassVar[dict] = {}
    keys: tuple = ()
    extra: tuple = ()

    @classmethod
    def from_json(cls, d) -> "Part":
        """The part from its JSON object; anything that is not an object reads as an empty part."""
        d = mapping(d)
        names = {f.name for f in fields(cls)} - {"keys", "extra"}
        kw = {k: cls.READ.get(k, lambda v: v)(v) for k, v in d.items() if k in names}
        return cls(keys=tuple(d), extra=tuple((k, v) for k, v in d.items() if k not in names), **kw)

    def to_json(self) -> dict:
        """The JSON object this part was read from (same keys, same order)."""
        extra = dict(self.extra)
        return {k: _json(extra[k] if k in extra else getattr(self, k)) for k in self.keys}

    def get(self, key: str, default=None):
        """A key this version does not type (or a typed one), as JSON; ``default`` when absent."""
        if key not in self.keys:
            return default
        extra = dict(self.extra)
        return extra[key] if key in extra else _json(getattr(self, key))


def parts(cls):
    """Reader of a JSON list of ``cls`` objects: a tuple of parts (non-objects are dropped)."""
    return lambda x: tuple(cls.from_json(v) for v in objects(x))


@dataclass(frozen=True)
class ArtifactInfo(Part):
    """The artifact a record measured: file, format, size, lineage, how it was made (see artifact.py)."""

    READ: ClassVar[dict] = {"id": text, "format": text, "path": text, "precision": text, "sha256": text,
                            "size_bytes": number, "params": number, "made_in_s": number, "quantize_s": number,
                            "parity_max_abs": number, "source": text, "method": lambda x: x,
                            "converted_from": text, "model": text,
                            "lineage": lambda x: tuple(x) if isinstance(x, list) else ()}
    id: str | None = None
    lineage: tuple = ()
    format: str | None = None
    path: str | None = None
    sha256: str | None = None
    size_bytes: int | float | None = None
    params: int | float | None = None
    precision: str | None = None
    made_in_s: float | None = None
    parity_max_abs: float | None = None
    quantize_s: float | None = None
    source: str | None = None
    method: Any = None  # {name, spec, key} of the quantization method (a plain string in old files)
    export: Any = None
    converted_from: str | None = None
    model: str | None = None


@dataclass(frozen=True)
class RuntimeInfo(Part):
    """The runtime a record ran on: name, version and options (threads, ...)."""

    READ: ClassVar[dict] = {"name": text, "options": mapping}
    name: str | None = None
    version: Any = None
    options: dict | None = None

    @property
    def threads(self) -> int | None:
        """The thread count the session was created with, None when not recorded."""
        t = (self.options or {}).get("threads")
        return t if isinstance(t, int) and not isinstance(t, bool) else None


@dataclass(frozen=True)
class Phases(Part):
    """Phases of one measurement: cold load and first inference (ms), apart from the steady state."""

    READ: ClassVar[dict] = {"load_ms": number, "first_ms": number, "process_to_ready_ms": number}
    load_ms: float | None = None
    first_ms: float | None = None
    process_to_ready_ms: float | None = None


@dataclass(frozen=True)
class Latency(Part):
    """Steady-state latency statistics (ms) with every raw sample and bootstrap 95% CIs."""

    READ: ClassVar[dict] = {"n": number, "median": number, "mean": number, "p90": number, "p95": number,
                            "p99": number, "min": number, "max": number, "std": number, "cv": number,
                            "mad": number, "ci95_median": pair, "ci95_p90": pair,
                            "samples": lambda x: tuple(x) if isinstance(x, list) else ()}
    unit: Any = None
    n: int | None = None
    samples: tuple = ()
    median: float | None = None
    mean: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    min: float | None = None
    max: float | None = None
    std: float | None = None
    cv: float | None = None
    mad: float | None = None
    ci95_median: tuple | None = None
    ci95_p90: tuple | None = None


@dataclass(frozen=True)
class Memory(Part):
    """Memory pass of one measurement: RSS before/after load, peak and peak minus baseline (MB)."""

    READ: ClassVar[dict] = {"baseline_mb": number, "after_load_mb": number, "peak_mb": number,
                            "peak_delta_mb": number, "method": text}
    baseline_mb: float | None = None
    after_load_mb: float | None = None
    peak_mb: float | None = None
    peak_delta_mb: float | None = None
    method: str | None = None


@dataclass(frozen=True)
class Quality(Part):
    """The task's metric on the artifact through its runtime, with CI, delta vs the reference, parity
    and ``vs_pytorch`` (gap to the PyTorch model, workbench.pipeline.compare)."""

    READ: ClassVar[dict] = {"metric": text, "value": number, "ci95": pair, "n": number,
                            "vs_reference": number, "parity_max_abs": number, "vs_pytorch": mapping}
    metric: str | None = None
    value: float | None = None
    ci95: tuple | None = None
    n: int | None = None
    vs_reference: float | None = None
    parity_max_abs: float | None = None
    vs_pytorch: dict | None = None


@dataclass(frozen=True)
class ProfileEntry(Part):
    """One operator type's share of the runtime's kernel time (per-operator profile)."""

    READ: ClassVar[dict] = {"op_type": text, "time_pct": number}
    op_type: str | None = None
    time_pct: float | None = None


@dataclass(frozen=True)
class Stability(Part):
    """Noise guards of one measurement: warnings (each a JSON object with what to do) and sentinel drift."""

    READ: ClassVar[dict] = {"warnings": objects, "sentinel_drift_pct": number}
    warnings: tuple = ()
    sentinel_drift_pct: float | None = None


@dataclass(frozen=True)
class Comparison(Part):
    """One latency comparison: ratio of medians vs ``against`` (a record id) with its 95% CI and
    verdict; cross-runtime ones add ``kind`` and ``paired``."""

    READ: ClassVar[dict] = {"against": text, "ratio_median": number, "ci95": pair, "verdict": text,
                            "kind": text}
    against: str | None = None
    ratio_median: float | None = None
    ci95: tuple | None = None
    verdict: str | None = None
    kind: str | None = None


@dataclass(frozen=True)
class DistillationStudy(Part):
    """One regime x student of the distillation study: KD vs the labels-only twin over seeds."""

    READ: ClassVar[dict] = {"regime": text, "regime_label": text, "student": text, "params": number,
                            "n_train": number, "labels_mean": number, "kd_mean": number,
                            "diff_mean": number, "diff_ci95": pair, "verdict": text,
                            "seeds": lambda x: tuple(x) if isinstance(x, list) else (),
                            "labels_acc": lambda x: tuple(x) if isinstance(x, list) else (),
                            "kd_acc": lambda x: tuple(x) if isinstance(x, list) else ()}
    regime: str | None = None
    regime_label: str | None = None
    student: str | None = None
    params: float | None = None
    n_train: int | None = None
    seeds: tuple = ()
    labels_acc: tuple = ()
    kd_acc: tuple = ()
    labels_mean: float | None = None
    kd_mean: float | None = None
    diff_mean: float | None = None
    diff_ci95: tuple | None = None
    verdict: str | None = None


@dataclass(frozen=True)
class Diagnostics(Part):
    """Why a quantized artifact is (not) faster (workbench.quantize.diagnose): graph format, share of kernel
    time in quantized kernels, ratio / verdict vs the unquantized source (``against``), explanation."""

    READ: ClassVar[dict] = {"label": text, "format": text, "quantized_time_share": number, "ratio_to_fp32": number,
                            "ci95": pair, "verdict": text, "against": text, "explanation": text,
                            "threads": number}
    label: str | None = None
    format: str | None = None
    quantized_time_share: float | None = None
    ratio_to_fp32: float | None = None
    ci95: tuple | None = None
    verdict: str | None = None
    against: str | None = None
    explanation: str | None = None
    threads: int | None = None


@dataclass(frozen=True)
class AutoSearch(Part):
    """``auto``'s candidate search for one artifact: the chosen spec, every candidate (JSON objects:
    spec, reason, ratio, ci95, verdict, metric, drop, drop_ci95, within_budget, reused, error), what was
    skipped, the float-exclusion fallback and the message."""

    READ: ClassVar[dict] = {"metric": text, "chosen": mapping, "candidates": objects, "exclusion": mapping,
                            "message": text, "max_drop_points": number, "rounds": number,
                            "skipped": objects, "rule": text}
    metric: str | None = None
    chosen: dict | None = None
    candidates: tuple = ()
    exclusion: dict | None = None
    message: str | None = None
    loud: Any = None
    max_drop_points: float | None = None
    rounds: int | None = None
    skipped: tuple = ()
    rule: str | None = None
