"""Result records (one per artifact x runtime x threads) and the results.json document, as types.

A :class:`Result` is one row of results.json, built ONCE with every part computed first
(:func:`make_result`) and frozen; a :class:`ResultSet` is the whole document (run metadata, results,
studies, schema_version). ``ResultSet.to_json()`` writes exactly the layout results.json has always
had (MEASUREMENT.md's schema plus the keys below) and ``ResultSet.from_json()`` reads every
results.json written by earlier versions; parts and keys this version does not type are kept, so
reading and writing a file changes nothing. The typed parts live in :mod:`.result_parts`.

Beyond MEASUREMENT.md's fields, records of quantized artifacts carry ``diagnostics`` (graph format,
share of kernel time in quantized kernels, ISA, ratio / verdict vs the unquantized source, explanation:
workbench.quantize.diagnose) and those made by ``auto`` carry ``auto`` (chosen spec, candidate table,
message); ``artifact.source`` / ``artifact.method`` name what was quantized and how. Artifacts of the
mobile runtimes carry ``artifact.export`` (ort-mobile: required_operators.config path and operator count;
executorch: delegated share; litert: quantizer; all: ``parity`` vs PyTorch incl. top-1 agreement) and
``artifact.converted_from`` (ort-mobile: the .onnx variant). Records carry ``model`` (the PyTorch model),
``quality.vs_pytorch`` and ``cross_runtime`` (workbench.pipeline.compare), ``machine`` (the description
of the machine that measured it) and, for a byte-identical artifact measured once, ``latency_measured_as``;
``run.runtimes`` lists the runtimes measured, those skipped (with the install command) and the thread
counts of each.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable

from .. import __version__
from ..artifact import Artifact
from .result_parts import (ArtifactInfo, AutoSearch, Comparison, Diagnostics, DistillationStudy, Latency, Memory, Part, Phases,
                           ProfileEntry, Quality, RuntimeInfo, Stability, mapping, number, objects, parts, text)

SCHEMA_VERSION = 1
PROCESSES = "fresh worker process per measurement; memory in another"


def _part(cls):
    """Reader of an optional part: None stays None (a failed record has no latency), an object reads as ``cls``."""
    return lambda x: cls.from_json(x) if isinstance(x, dict) else None


@dataclass(frozen=True)
class Result(Part):
    """One row of results.json: one artifact measured on one runtime at one thread count, with its
    quality through that runtime, its comparisons and diagnostics. Frozen: built once, never patched."""

    READ: ClassVar[dict] = {
        "id": text, "variant": text, "role": text, "family": text, "status": text, "error": text,
        "artifact": ArtifactInfo.from_json, "runtime": RuntimeInfo.from_json, "phases": _part(Phases),
        "latency": _part(Latency), "memory": _part(Memory), "quality": _part(Quality),
        "profile": parts(ProfileEntry), "stability": Stability.from_json, "comparisons": parts(Comparison),
        "cross_runtime": parts(Comparison), "diagnostics": _part(Diagnostics), "auto": _part(AutoSearch),
        "model": text, "machine": text, "latency_measured_as": text, "node": text, "environment": mapping}
    id: str | None = None
    variant: str | None = None
    role: str | None = None
    family: str | None = None
    status: str | None = None
    error: str | None = None
    artifact: ArtifactInfo = field(default_factory=ArtifactInfo)
    runtime: RuntimeInfo = field(default_factory=RuntimeInfo)
    input: Any = None
    protocol: Any = None
    phases: Phases | None = None
    latency: Latency | None = None
    memory: Memory | None = None
    quality: Quality | None = None
    profile: tuple = ()
    stability: Stability = field(default_factory=Stability)
    comparisons: tuple = ()
    auto: AutoSearch | None = None
    model: str | None = None
    latency_measured_as: str | None = None
    diagnostics: Diagnostics | None = None
    cross_runtime: tuple = ()
    machine: str | None = None
    node: str | None = None  # the cluster node that measured it (absent: the in-process executor)
    environment: dict | None = None  # that node's environment (absent: run.environment, the driver's)

    @property
    def ok(self) -> bool:
        """The record was measured (status "ok"); a failed one carries ``error`` instead of numbers."""
        return self.status == "ok"

    @property
    def key(self) -> tuple:
        """(variant, runtime name, threads): what identifies a measurement across runs."""
        return (self.variant, self.runtime.name, self.runtime.threads)


@dataclass(frozen=True)
class RunInfo(Part):
    """The ``run`` object of results.json: id, creation time, version, command, recipe, environment,
    task, duration, the runtimes measured / skipped and, for merged runs, where each record came from."""

    READ: ClassVar[dict] = {"run_id": text, "created": text, "workbench_version": text, "command": text,
                            "recipe": mapping, "environment": mapping, "task": mapping, "duration_s": number,
                            "runtimes": mapping, "merged_from": objects, "merge_replaced": objects}
    run_id: str | None = None
    created: str | None = None
    workbench_version: str | None = None
    command: str | None = None
    recipe: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    task: dict = field(default_factory=dict)
    duration_s: float | None = None
    runtimes: dict = field(default_factory=dict)
    merged_from: tuple = ()  # `workbench report --merge`: {run_id, created, command, machine, records} per source
    merge_replaced: tuple = ()  # {record: [variant, runtime, threads], kept_from} per record a later run replaced


@dataclass(frozen=True)
class ResultSet:
    """The whole results.json: ``run`` metadata, the ``results`` rows and the ``studies`` (JSON objects
    by name; ``distillation`` typed through :attr:`distillation`). The only input of every report."""

    run: RunInfo
    results: tuple = ()
    studies: dict | None = None
    schema_version: int = SCHEMA_VERSION
    has_studies: bool = True  # documents before the studies key existed round-trip without it

    @classmethod
    def from_json(cls, d: dict) -> "ResultSet":
        """The set from a parsed results.json (see workbench.report.load for the checks a report needs)."""
        d = mapping(d)
        return cls(run=RunInfo.from_json(d.get("run")),
                   results=tuple(Result.from_json(r) for r in d.get("results") or [] if isinstance(r, dict)),
                   studies=d.get("studies") if isinstance(d.get("studies"), dict) else None,
                   schema_version=d.get("schema_version"), has_studies="studies" in d)

    def to_json(self) -> dict:
        """results.json's layout: {"schema_version", "run", "results", "studies"}."""
        out = {"schema_version": self.schema_version, "run": self.run.to_json(),
               "results": [r.to_json() for r in self.results]}
        if self.has_studies:
            out["studies"] = self.studies
        return out

    @property
    def distillation(self) -> tuple:
        """The distillation study's rows (KD vs the labels-only twin per regime x student), typed."""
        rows = (self.studies or {}).get("distillation")
        return tuple(DistillationStudy.from_json(s) for s in rows if isinstance(s, dict)) if isinstance(rows, list) else ()


def artifact_json(art: Artifact) -> dict:
    """The ``artifact`` object of a record: Artifact.to_json with the keys of ``extra`` it publishes."""
    d = art.to_json()
    extra = d.pop("extra", {})
    d["quantize_s"] = extra.get("quantize_s")
    for key in ("source", "method", "export", "converted_from", "model"):  # see the module docstring
        if key in extra:
            d[key] = extra[key]
    return d


_UNSET = object()


def make_result(art: Artifact, runtime: str, threads: int, input_source: str, quality: dict | None,
                latency: dict | None = None, memory: dict | None = None, error: str | None = None, *,
                profile: list | None = None, model: str | None = None, latency_measured_as: str | None = None,
                comparisons: Iterable[dict] = (), diagnostics: dict | None = None,
                cross_runtime: Iterable[dict] | None = None, machine: Any = _UNSET, node: str | None = None,
                environment: dict | None = None) -> Result:
    """One row of results.json, every part given: ``latency`` is the harness's
    LatencyMeasurement.to_json() (its runtime, input, protocol, phases, latency, stability and profile
    are taken from it), ``memory`` the memory pass, ``quality`` the evaluation (with ``vs_pytorch``),
    ``profile`` the per-operator profile (overrides the latency pass's), ``comparisons`` the interleaved
    ratios, ``diagnostics`` the quantization diagnosis, ``cross_runtime`` the comparisons across
    runtimes, ``machine`` the machine's description, ``node`` / ``environment`` the cluster node that measured
    it and its environment. Keys given as None/absent are left out as before."""
    lat = latency or {}
    rec = {
        "id": f"{art.id}@{runtime}/t{threads}",
        "variant": art.id,
        "role": art.extra.get("role", "student"),
        "family": art.extra.get("family", "teacher"),
        "status": "failed" if error else "ok",
        "error": error,
        "artifact": artifact_json(art),
        "runtime": lat.get("runtime", {"name": runtime, "version": None, "options": {"threads": threads}}),
        "input": lat.get("input", {"source": input_source}),
        "protocol": lat.get("protocol"),
        "phases": lat.get("phases"),
        "latency": lat.get("latency"),
        "memory": memory,
        "quality": quality,
        "profile": lat.get("profile", []) if profile is None else profile,
        "stability": lat.get("stability", {"warnings": [], "sentinel_drift_pct": None}),
        "comparisons": list(comparisons),
    }
    if "auto" in art.extra:  # the auto search: chosen spec, every candidate's ratio / verdict / metric, the message
        rec["auto"] = art.extra["auto"]
    if rec["input"] is not None:
        rec["input"] = {**rec["input"], "source": input_source}
    if rec["protocol"] is not None:
        rec["protocol"] = {**rec["protocol"]}
        rec["protocol"].setdefault("processes", PROCESSES)
    for key, value in (("model", model), ("latency_measured_as", latency_measured_as), ("diagnostics", diagnostics)):
        if value is not None:
            rec[key] = value
    if cross_runtime is not None:
        rec["cross_runtime"] = list(cross_runtime)
    if machine is not _UNSET:
        rec["machine"] = machine
    if node is not None:
        rec["node"], rec["environment"] = node, environment
    return Result.from_json(rec)


def record(art: Artifact, runtime: str, threads: int, input_source: str, quality: dict | None,
           latency: dict | None = None, memory: dict | None = None, error: str | None = None, **parts) -> dict:
    """:func:`make_result` as the JSON record (a dict) — for callers that still assemble dicts; takes
    the same keyword arguments (profile, model, comparisons, diagnostics, cross_runtime, machine, ...)."""
    return make_result(art, runtime, threads, input_source, quality, latency, memory, error, **parts).to_json()


def result_set(run_id: str, command: str, recipe: dict, environment: dict, task: dict,
               records: Iterable, studies: dict, duration_s: float, runtimes: dict | None = None, *,
               created: str | None = None) -> ResultSet:
    """The ResultSet of a run: ``records`` are Results (or their JSON records), ``created`` defaults to now (UTC)."""
    run = {"run_id": run_id,
           "created": created or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "workbench_version": __version__, "command": command, "recipe": recipe, "environment": environment,
           "task": task, "duration_s": round(duration_s, 1)}
    if runtimes is not None:
        run["runtimes"] = runtimes
    return ResultSet(run=RunInfo.from_json(run),
                     results=tuple(r if isinstance(r, Result) else Result.from_json(r) for r in records),
                     studies=studies)


def document(run_id: str, command: str, recipe: dict, environment: dict, task: dict, records: Iterable,
             studies: dict, duration_s: float, runtimes: dict | None = None, *, created: str | None = None) -> dict:
    """results.json as a dict (:func:`result_set`'s ``to_json()``); records may be Results or dicts."""
    return result_set(run_id, command, recipe, environment, task, records, studies, duration_s, runtimes,
                      created=created).to_json()
