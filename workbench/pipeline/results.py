"""Assembling result records (one per artifact x runtime x threads) and the results.json document.

Beyond MEASUREMENT.md's fields, records of quantized artifacts carry ``diagnostics`` (graph format,
share of kernel time in quantized kernels, ISA, ratio / verdict vs the unquantized source, explanation:
workbench.quantize.diagnose) and those made by ``auto`` carry ``auto`` (chosen spec, candidate table,
message); ``artifact.source`` / ``artifact.method`` name what was quantized and how. Artifacts of the
mobile runtimes carry ``artifact.export`` (ort-mobile: required_operators.config path and operator count;
executorch: delegated share; litert: quantizer; all: ``parity`` vs PyTorch incl. top-1 agreement) and
``artifact.converted_from`` (ort-mobile: the .onnx variant). Records carry ``model`` (the PyTorch model),
``quality.vs_pytorch`` and ``cross_runtime`` (workbench.pipeline.compare); ``run.runtimes`` lists the
runtimes measured, those skipped (with the install command) and the thread counts of each.
"""
from __future__ import annotations

import datetime as dt

from .. import __version__
from ..artifact import Artifact

SCHEMA_VERSION = 1


def artifact_json(art: Artifact) -> dict:
    d = art.to_json()
    extra = d.pop("extra", {})
    d["quantize_s"] = extra.get("quantize_s")
    for key in ("source", "method", "export", "converted_from", "model"):  # see the module docstring
        if key in extra:
            d[key] = extra[key]
    return d


def record(art: Artifact, runtime: str, threads: int, input_source: str, quality: dict | None,
           latency: dict | None = None, memory: dict | None = None, error: str | None = None) -> dict:
    """One row of results.json. ``latency`` is the harness's LatencyMeasurement.to_json()."""
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
        "profile": lat.get("profile", []),
        "stability": lat.get("stability", {"warnings": [], "sentinel_drift_pct": None}),
        "comparisons": [],
    }
    if "auto" in art.extra:  # the auto search: chosen spec, every candidate's ratio / verdict / metric, the message
        rec["auto"] = art.extra["auto"]
    if rec["input"] is not None:
        rec["input"]["source"] = input_source
    if rec["protocol"] is not None:
        rec["protocol"].setdefault("processes", "fresh worker process per measurement; memory in another")
    return rec


def document(run_id: str, command: str, recipe: dict, environment: dict, task: dict, records: list[dict],
             studies: dict, duration_s: float, runtimes: dict | None = None) -> dict:
    run = {"run_id": run_id, "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "workbench_version": __version__, "command": command, "recipe": recipe, "environment": environment,
           "task": task, "duration_s": round(duration_s, 1)}
    if runtimes is not None:
        run["runtimes"] = runtimes
    return {"schema_version": SCHEMA_VERSION, "run": run, "results": records, "studies": studies}
