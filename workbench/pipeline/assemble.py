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


def groups_of(graph: Graph, results: dict, runtime: str, threads) -> dict:
    """artifact id -> (its entry in the group result that measured it, that GroupResult) for one runtime and
    thread count: one group, or the sub-groups of ``[measure] group_size`` (the reference artifacts are in
    each sub-group; their record takes the first sub-group's measurement)."""
    out: dict = {}
    for n in graph.of_unit("measure_group"):
        if n.job.runtime == runtime and n.job.threads == threads:
            g = results[n.id]
            for art_id, res in g.by_id.items():
                out.setdefault(art_id, (res, g))
    return out


def _across_nodes(comparisons: list, node, where: dict) -> list:
    """Cross-runtime comparisons against a measurement taken on another node: labelled unpaired, with both
    nodes named (machines differ, so the ratio mixes machine and runtime)."""
    out = []
    for c in comparisons:
        other = where.get(c.get("against"), node)
        if other != node:
            c = {**c, "paired": False, "nodes": [other, node], "note": "measured on different nodes: unpaired, "
                 "and the ratio includes the difference between the machines"}
        out.append(c)
    return out


def records(recipe, rd, graph: Graph, results: dict, isa: dict, machine: str | None, input_source: str) -> list:
    """One Result per artifact x runtime x threads, each built once with every part in it. Each record names
    the machine that measured it (its group's environment; ``machine`` only when the group does not say)
    and, when an executor named nodes, the node and that machine's environment."""
    from .results import make_result

    arts_by_rt = artifacts_by_runtime(graph, results)
    quality = qualities(recipe, arts_by_rt, results)
    rows, latencies, where = [], {}, {}
    for rt, arts in arts_by_rt.items():
        for th in recipe.threads_for(rt):
            group = groups_of(graph, results, rt, th)
            for art in arts:
                mem = results[f"memory:{art.id}@{rt}/t{th}"]
                res, g = group[art.id]
                error = res.get("error") or mem.error
                rows.append((art, rt, th, res, mem, error, g))
                where[f"{art.id}@{rt}/t{th}"] = g.node  # as comparisons name what they are against
                if not error and (res.get("latency") or {}).get("latency"):
                    latencies[(art.id, rt, th)] = res["latency"]
    profiles = {}
    for art, rt, th, _, mem, _, _ in rows:
        if mem.profile:
            profiles.setdefault((art.id, rt), mem.profile)
    out = []
    for art, rt, th, res, mem, error, g in rows:
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
        extra["cross_runtime"] = _across_nodes(cross_runtime(art.id, model_of(art), rt, th, latencies), g.node, where)
        # every result names the machine that measured it (never a phone): the group's, else the driver's
        extra["machine"] = (g.environment or {}).get("description") or machine
        if g.node is not None:  # measured on a node an executor named (a cluster): which, and its environment
            extra["node"], extra["environment"] = g.node, g.environment
        out.append(make_result(art, rt, th, input_source, quality.get((art.id, rt)), res.get("latency"), mem.memory,
                               error, **extra))
    return out
