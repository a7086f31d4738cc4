"""The records of a run, each built once from the executed graph's results: quality (with vs_reference and
vs_pytorch), latency, memory, profile, comparisons, diagnostics and cross-runtime comparisons are all
computed first, then :func:`workbench.pipeline.results.make_result` makes the frozen Result with
everything in it.
"""
from __future__ import annotations

from .compare import cross_runtime, vs_pytorch
from .mobile import model_of
from .plan import REFERENCE, Graph


def artifacts_by_runtime(graph: Graph, results: dict) -> dict:
    """runtime -> the Artifacts of that runtime, in report order."""
    return {rt: [results[n].artifact for n in ids] for rt, ids in graph.artifacts}


def pytorch_metrics(recipe, results: dict) -> dict[str, float]:
    """The PyTorch model's metric on the test split, by model: the teacher and the deployed students."""
    out = {"teacher": results["pytorch:teacher"].value}
    seed = recipe.distill.seeds[0]
    for st in recipe.students:
        for m in ("labels", "kd"):
            out[f"{st.name}.{m}"] = results[f"train:{st.name}.full.{m}.s{seed}"].row["test_metric"]
    return out


def qualities(recipe, arts_by_rt: dict, results: dict) -> dict:
    """(artifact id, runtime) -> the quality of the artifact through that runtime, complete: the metric with
    its CI, parity_max_abs, vs_reference (vs the fp32 teacher on the same runtime), vs_pytorch."""
    pytorch = pytorch_metrics(recipe, results)
    out = {}
    for rt, arts in arts_by_rt.items():
        ref = results.get(f"evaluate:{REFERENCE}@{rt}")
        for art in arts:
            q = {**results[f"evaluate:{art.id}@{rt}"].quality, "parity_max_abs": art.parity_max_abs}
            if ref is not None:
                q["vs_reference"] = q["value"] - ref.quality["value"]
            vp = vs_pytorch(q.get("value"), art.precision, pytorch.get(model_of(art)), recipe)
            if vp is not None:
                q["vs_pytorch"] = vp
            out[(art.id, rt)] = q
    return out


def _diagnostics(rd, art, rt: str, th, latencies: dict, profile, isa: dict) -> dict:
    """Graph format, share of kernel time in quantized kernels, the ISA, the latency ratio vs its own
    unquantized source (same runtime and threads, same interleaved run) and the explanation."""
    from ..measure import compare
    from ..quantize.diagnose import diagnose

    ref, lat = latencies.get((art.extra["source"], rt, th)), latencies.get((art.id, rt, th))
    comp = compare(ref, lat, against=f"{art.extra['source']}@{rt}/t{th}") if ref is not None and lat else None
    d = diagnose(rd.abspath(art), profile, isa=isa, ratio=comp.ratio_median if comp else None,
                 verdict=comp.verdict if comp else None, ci=comp.ci95 if comp else None)
    d["against"] = f"{art.extra['source']}@{rt}/t{th}" if comp else None
    d["threads"] = th
    return d


def records(recipe, rd, graph: Graph, results: dict, isa: dict, machine: str | None, input_source: str) -> list:
    """One Result per artifact x runtime x threads, each built once with every part in it."""
    from .results import make_result

    arts_by_rt = artifacts_by_runtime(graph, results)
    quality = qualities(recipe, arts_by_rt, results)
    rows, latencies = [], {}
    for rt, arts in arts_by_rt.items():
        for th in recipe.threads_for(rt):
            group = results[f"measure:{rt}/t{th}"].by_id
            for art in arts:
                mem = results[f"memory:{art.id}@{rt}/t{th}"]
                res = group[art.id]
                error = res.get("error") or mem.error
                rows.append((art, rt, th, res, mem, error))
                if not error and (res.get("latency") or {}).get("latency"):
                    latencies[(art.id, rt, th)] = res["latency"]
    profiles = {}
    for art, rt, th, _, mem, _ in rows:
        if mem.profile:
            profiles.setdefault((art.id, rt), mem.profile)
    out = []
    for art, rt, th, res, mem, error in rows:
        comparisons = []
        if res.get("comparison"):
            comparisons.append({**res["comparison"], "against": f"{REFERENCE}@{rt}/t{th}"})
        for c in res.get("vs_quantized", []):
            comparisons.append({**{k: v for k, v in c.items() if k != "variant"}, "against": f"{c['variant']}@{rt}/t{th}"})
        extra = {"profile": mem.profile, "model": model_of(art)}
        if res.get("same_file_as"):  # byte-identical artifact: measured once, in that artifact's workers
            extra["latency_measured_as"] = res["same_file_as"]
        extra["comparisons"] = comparisons
        if art.format == "onnx" and "source" in art.extra and not error:
            extra["diagnostics"] = _diagnostics(rd, art, rt, th, latencies, profiles.get((art.id, rt)), isa)
        extra["cross_runtime"] = cross_runtime(art.id, model_of(art), rt, th, latencies)
        extra["machine"] = machine  # every result names the machine it ran on (never a phone)
        out.append(make_result(art, rt, th, input_source, quality.get((art.id, rt)), res.get("latency"), mem.memory,
                               error, **extra))
    return out
