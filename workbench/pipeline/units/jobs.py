"""The jobs and results of the pipeline's units: small, frozen, picklable.

A unit is ``fn(ctx, job, inputs, progress=None) -> result``: ``ctx`` the run's RunContext, ``job`` one
of the job types below, ``inputs`` the results of the nodes the job depends on (by node id; the job
names which id is which) and ``progress`` where progress lines go (None: nowhere, e.g. in another
process). Jobs hold only data (names, specs, content keys, ModelRefs), never live objects.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...artifact import Artifact
from ..family import ModelRef, StudentJob


# -- jobs ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainJob:
    """Train one student (``job``) into ``weights`` (run-relative); ``key`` is its content key."""

    job: StudentJob
    key: str
    weights: str


@dataclass(frozen=True)
class ExportJob:
    """Export the PyTorch model ``model`` to ONNX fp32 as ``art_id``; ``train`` is the node id of its
    training (None for the teacher)."""

    art_id: str
    model: ModelRef
    key: str
    train: str | None = None


@dataclass(frozen=True)
class QuantizeJob:
    """Quantize the artifact of node ``src`` with one method ``spec`` ("static", "dynamic", ...)."""

    art_id: str
    src: str
    spec: str
    model: ModelRef


@dataclass(frozen=True)
class AutoJob:
    """``auto``: candidates for the artifact of node ``src`` measured against it (the unit's own interleaved
    measurement); the fixed methods' artifacts (nodes ``fixed``) are reused for equal method keys."""

    art_id: str
    src: str
    model: ModelRef
    fixed: tuple[str, ...]
    isa: tuple[tuple[str, bool], ...]
    threads: int


@dataclass(frozen=True)
class ConvertJob:
    """Make the artifact ``art_id`` of a mobile ``runtime`` (workbench.pipeline.mobile.convert): from the
    .onnx of node ``src`` (ort-mobile), or from the PyTorch ``model`` with the int8 ``method`` spec (None:
    fp32; ``src`` is then its fp32 .onnx, the lineage)."""

    art_id: str
    runtime: str
    src: str
    model: ModelRef
    method: str | None = None


@dataclass(frozen=True)
class EvalJob:
    """The task's metric of the artifact of node ``art`` through ``runtime`` on the test split."""

    art: str
    runtime: str


@dataclass(frozen=True)
class PyTorchMetricJob:
    """The task's metric of the PyTorch ``model`` itself (the reference for vs_pytorch)."""

    model: ModelRef


@dataclass(frozen=True)
class MeasureJob:
    """Latency of the artifacts of nodes ``arts`` on ``runtime`` at ``threads``, interleaved, with the
    comparisons against ``reference`` (an artifact id) and students vs faster quantized teachers."""

    runtime: str
    threads: int
    arts: tuple[str, ...]
    reference: str


@dataclass(frozen=True)
class MemoryJob:
    """Memory pass (and, with ``profile``, the per-operator profile) of the artifact of node ``art``."""

    art: str
    runtime: str
    threads: int
    profile: bool


# -- results ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainResult:
    """A trained student: its result row (params, steps, seconds, test_accuracy, ...) and weights path;
    ``teacher_outputs``: "read" (the cache entry its teacher_outputs unit filled), "made" (it was missing, so
    this unit computed it), None (reads none, or the training itself was reused)."""

    row: dict
    weights: str
    reused: bool
    teacher_outputs: str | None = None


@dataclass(frozen=True)
class ArtifactResult:
    """An artifact made (or reused: ``reused``) by an export, quantize, auto or convert unit."""

    artifact: Artifact
    runtime: str
    reused: bool


@dataclass(frozen=True)
class QualityResult:
    """The metric of one artifact through one runtime (the evaluate module's Quality JSON); ``reused``: read
    from the run's cache (nothing evaluated)."""

    art_id: str
    runtime: str
    quality: dict
    reused: bool = False


@dataclass(frozen=True)
class MetricResult:
    """The metric of one PyTorch model on the test split; ``reused``: read from the run's cache."""

    value: float
    source: str
    reused: bool = False


@dataclass(frozen=True)
class GroupResult:
    """An interleaved latency run of one group: artifact id -> {latency, error, comparison?,
    vs_quantized?, same_file_as?}; ``node``, ``environment`` and ``threads_all``: the machine that measured
    it (units.where.measured_on; node None under the in-process executor); ``reused``: read from the run's
    cache (nothing measured)."""

    runtime: str
    threads: int
    by_id: dict
    node: str | None = None
    environment: dict | None = None
    threads_all: int | None = None
    reused: bool = False


@dataclass(frozen=True)
class MemoryResult:
    """Memory (and profile) of one artifact on one runtime and thread count; ``error`` when it failed;
    ``reused``: read from the run's cache (nothing measured)."""

    memory: dict | None
    profile: list
    error: str | None
    reused: bool = False
