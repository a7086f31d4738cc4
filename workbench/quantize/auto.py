"""`auto`: choose the quantization for one model on THIS machine, by measuring, never by assuming.

    props  = propose_candidates("m.onnx", isa, has_calibration=True)     # Proposals: method + reason
    result = auto_quantize("m.onnx", "m.auto.onnx", calib=x_train, eval_fn=accuracy_eval(x, y, "input"),
                           inputs="inputs.npz", max_drop=0.005)
    result.chosen.spec, result.message, result.to_json()

1. Propose candidates from the graph's op mix (compute share of Conv vs MatMul/Gemm) and the CPU:
   static QDQ for conv-heavy graphs (8-bit weights as well when VNNI removes the int16 saturation),
   dynamic per-channel and int4 for MatMul-heavy ones; never dynamic on Conv (ConvInteger is slow).
2. Quantize each (reusing files the caller already has for the same ``method.key``), evaluate each
   with ``eval_fn`` (task metric, or fidelity to fp32 without labels) and its paired CI.
3. Measure fp32 and every candidate INTERLEAVED in one harness run, so the ratios sit side by side.
4. Keep the fastest candidate within the budget whose verdict vs fp32 is "faster". If the fastest int8
   candidate misses the budget, leave its most sensitive nodes in float (:mod:`.sensitivity`) and
   measure that too. If nothing qualifies, the result is fp32 itself, with a loud message saying why.
"""
from __future__ import annotations

import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import MeasurementError, QuantizationError, RecipeError
from .choice import AUTO_VERSION, RULE, AutoResult, CandidateResult, choose  # noqa: F401
from .methods import Method
from .propose import Proposal, Proposals, graph_mix, propose_candidates  # noqa: F401 (re-exported)

__all__ = ["AUTO", "AUTO_VERSION", "RULE", "AutoResult", "CandidateResult", "Proposal", "Proposals", "accuracy_eval",
           "auto_quantize", "choose", "fidelity_eval", "graph_mix", "propose_candidates", "quantized_suffix",
           "short_protocol", "slug"]
SENSITIVITY_SAMPLES = 64  # inputs the per-node error is computed on (from the calibration data)
MAX_EXCLUSIONS = 8  # nodes left in float at most by the sensitivity fallback


def short_protocol():
    """The protocol auto measures with unless told otherwise: short runs, many fresh processes."""
    from ..measure import Protocol

    return Protocol(warmup_runs=5, warmup_s=0.1, min_runs=20, min_s=0.3, max_s=1.5)


# --------------------------------------------------------------------------- evaluating

def accuracy_eval(x: np.ndarray, y: np.ndarray, input_name: str, threads: int = 1) -> Callable:
    """eval_fn for classification: (accuracy on (x, y) through ORT, per-example correctness)."""
    from ..evaluate import run_artifact

    def fn(path):
        correct = (run_artifact(str(path), "ort", x, input_name, threads).argmax(1) == y).astype(np.float64)
        return float(correct.mean()), correct

    fn.metric = "accuracy"
    return fn


def fidelity_eval(reference_path, inputs, input_name: str = "input") -> Callable:
    """eval_fn without labels: (mean cosine of the outputs to fp32's, per-sample cosines), on ``inputs``."""
    from .sensitivity import _as_feeds, model_outputs

    feeds = _as_feeds(Path(reference_path), inputs, input_name)
    state = {}

    def fn(path):
        if "ref" not in state:
            state["ref"] = model_outputs(reference_path, feeds)
        ref, out = state["ref"], model_outputs(path, feeds)
        cos = (ref * out).sum(1) / np.maximum(np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1), 1e-12)
        return float(cos.mean()), cos

    fn.metric = "cosine to fp32 outputs"
    return fn


# --------------------------------------------------------------------------- the search

def slug(spec: str) -> str:
    """A file-name-safe, stable form of a method spec ('static?reduce_range=false' -> 'static-reduce_range_false')."""
    name, _, opts = spec.partition("?")
    parts = [name] + [p.replace("=", "_") for p in opts.split("&") if p]
    text = re.sub(r"[^A-Za-z0-9_.+-]", "-", "-".join(parts))
    if len(text) > 60:
        import hashlib

        text = text[:48] + "-" + hashlib.sha256(spec.encode()).hexdigest()[:8]
    return text


AUTO = "auto"  # the recipe / CLI name of the search


def quantized_suffix(method: Method) -> str:
    """The artifact-id suffix of a method spec: 'int8-static' for plain static (ids never change for
    the plain names), 'int8-static-calibration_entropy' with options, 'fp16', 'int4'."""
    head = f"{method.precision}-{method.name}" if method.precision == "int8" else method.precision
    return head + slug(method.spec)[len(method.name):]


def _copy_model(src, dst) -> None:
    """dst gets src as one self-contained file (external weights embedded)."""
    import onnx

    from ..fileio import atomic_path

    src = Path(src)
    m = onnx.load(str(src), load_external_data=False)
    external = any(t.data_location == onnx.TensorProto.EXTERNAL for t in m.graph.initializer)
    with atomic_path(dst, suffix=".onnx") as tmp:
        if external:
            onnx.save(onnx.load(str(src)), str(tmp))
        else:
            shutil.copyfile(src, tmp)


def _paired_drop_ci(ref_pe, cand_pe):
    from ..evaluate import bootstrap_mean_ci

    a, b = np.asarray(ref_pe, dtype=np.float64), np.asarray(cand_pe, dtype=np.float64)
    if a.shape != b.shape or a.size < 2:
        return None
    return tuple(bootstrap_mean_ci(a - b))


def _compare(a, b) -> str:
    from ..measure import compare

    return compare(a, b).verdict


def _measure(paths, inputs, threads, protocol, rounds, progress):
    from ..measure import compare, measure_interleaved

    ms = measure_interleaved([str(p) for p in paths], "ort", threads, str(inputs), protocol, rounds=rounds, seed=0,
                             on_progress=(lambda f, msg: progress(f, msg)) if progress else None)
    return ms, [None] + [compare(ms[0], m) for m in ms[1:]]


def auto_quantize(onnx_path, out_path, *, calib, eval_fn: Callable, inputs, threads: int = 1,
                  max_drop: float = 0.005, rounds: int = 3, protocol=None, progress: Callable | None = None,
                  work_dir=None, candidates=None, reuse: dict | None = None, isa: dict | None = None,
                  input_name: str = "input", profile: bool = True, sensitivity: bool = True,
                  evaluation: dict | None = None) -> AutoResult:
    """Choose and write the best quantized variant of ``onnx_path`` to ``out_path`` (see the module doc).

    ``calib``: calibration data (array or dict; None: no static candidates); ``eval_fn(path) -> (metric,
    per-example values)``, higher is better (see :func:`accuracy_eval`, :func:`fidelity_eval`);
    ``inputs``: .npz the harness feeds; ``max_drop``: allowed metric drop (fraction; 0.005 = half a point);
    ``candidates``: Proposals / [Proposal | Method] instead of :func:`propose_candidates`; ``reuse``:
    {method.key: existing file} (not re-quantized); ``work_dir``: keeps candidate files (default: temp);
    ``progress(fraction, message)``; ``profile``: profile the chosen file for its diagnostics.
    An ``eval_fn`` with ``verdict(path) -> (within, judged text, ci)`` (a :class:`.fidelity.FidelityEval`)
    judges by its own budget (e.g. top-1 agreement >= 0.85, lower 95% bound) instead of ``max_drop``;
    ``evaluation``: what judged quality (data, output kind, warnings), recorded in the result.
    """
    from .diagnose import diagnose

    t_start = time.perf_counter()
    src, out = Path(onnx_path), Path(out_path)
    if not isinstance(max_drop, (int, float)) or isinstance(max_drop, bool) or not 0 <= max_drop <= 1:
        raise RecipeError(f"max_drop must be a fraction between 0 and 1 (0.005 = half a point), got {max_drop!r}")
    protocol = protocol or short_protocol()
    say = progress or (lambda f, msg: None)
    if isa is None:
        from ..measure import collect_environment

        isa = collect_environment(["ort"]).get("isa", {})
    source = candidates if candidates is not None else propose_candidates(src, isa, calib is not None)
    skipped, mix = list(getattr(source, "skipped", []) or []), dict(getattr(source, "mix", {}) or {})
    props = [p if isinstance(p, Proposal) else Proposal(p, "given by the caller") for p in source]
    from ..fileio.containment import temp_prefix  # owner pid in the name: removed by a later run if we are killed

    tmp = None if work_dir else tempfile.mkdtemp(prefix=temp_prefix("auto"))
    wd = Path(work_dir or tmp)
    wd.mkdir(parents=True, exist_ok=True)
    metric_name = getattr(eval_fn, "metric", "metric")
    budget_text = getattr(getattr(eval_fn, "budget", None), "text", None)
    try:
        # 1. quantize every candidate (or reuse the caller's file)
        rows: list[CandidateResult] = []
        methods: dict[str, Method] = {}
        for i, p in enumerate(props):
            m = p.method
            say(0.35 * i / max(1, len(props)), f"quantizing {m.spec}")
            base = dict(spec=m.spec, describe=m.describe, key=m.key, precision=m.precision, reason=p.reason)
            methods[m.spec] = m
            have = (reuse or {}).get(m.key)
            if have and Path(have).is_file():
                rows.append(CandidateResult(**base, path=str(have), reused=True))
                continue
            path = wd / f"{src.stem}.{slug(m.spec)}.onnx"
            t0 = time.perf_counter()
            try:
                m.apply(src, path, calib if m.needs_calibration else None, input_name)
                rows.append(CandidateResult(**base, path=str(path), quantize_s=round(time.perf_counter() - t0, 2)))
            except QuantizationError as e:
                rows.append(CandidateResult(**base, error=str(e)))

        # 2. evaluate (fp32 first: the reference of every drop)
        say(0.35, "evaluating fp32")
        ref_value, ref_pe = eval_fn(str(src))
        ref_value = float(ref_value)
        for i, r in enumerate(rows):
            if r.error:
                continue
            say(0.35 + 0.1 * i / max(1, len(rows)), f"evaluating {r.spec}")
            try:
                value, pe = eval_fn(r.path)
            except Exception as e:  # a file ORT cannot run is a failed candidate, not a failed search
                from .graph_prep import short_ort_error  # one line: ORT's code and what it means

                rows[i] = _replace(r, error=f"does not run in onnxruntime: {short_ort_error(e)}")
                continue
            rows[i] = _replace(r, **_judge(eval_fn, r.path, value, pe, ref_value, ref_pe, max_drop))

        # 3. measure fp32 + every candidate interleaved, in one harness run
        fp32 = CandidateResult("fp32", "fp32 (not quantized)", None, "fp32", "the reference and the fallback",
                               stage="reference", path=str(src), metric=ref_value, drop=0.0, within_budget=True,
                               ratio=1.0, verdict="reference")
        live = [r for r in rows if not r.error]
        measure_error, lats = None, {}
        if live:
            try:
                ms, comps = _measure([src] + [r.path for r in live], inputs, threads, protocol, rounds,
                                     lambda f, msg: say(0.45 + 0.45 * f, f"measuring: {msg}"))
                fp32 = _replace(fp32, median_ms=ms[0].stats.median)
                done = {r.spec: _replace(r, ratio=c.ratio_median, ci95=c.ci95, verdict=c.verdict,
                                         verdict_reason=_why(c),
                                         median_ms=m.stats.median) for r, m, c in zip(live, ms[1:], comps[1:])}
                rows = [done.get(r.spec, r) for r in rows]
                lats = {r.spec: m for r, m in zip(live, ms[1:])}
            except MeasurementError as e:
                measure_error = str(e)
                rows = [r if r.error else _replace(r, error=f"measurement failed: {e}") for r in rows]
        chosen, message, loud = choose(rows, max_drop, lambda a, b: _compare(lats[a.spec], lats[b.spec]) != "slower",
                                       budget=budget_text, skipped=skipped, metric=metric_name)
        if measure_error:
            message = f"KEEPING FP32: the interleaved measurement failed ({measure_error})"

        # 4. the fastest int8 candidate missed the budget: leave its most sensitive nodes in float
        exclusion = None
        fast = [r for r in rows if r.verdict == "faster" and not r.within_budget and r.precision == "int8"
                and r.spec.split("?")[0] in ("static", "dynamic") and (chosen is None or r.ratio < chosen.ratio)]
        if sensitivity and fast and not measure_error and calib is not None:  # node errors are computed on calib
            best = min(fast, key=lambda r: r.ratio)
            say(0.9, f"{best.spec} misses the budget: per-node sensitivity")
            extra, exclusion = _exclusion_fallback(src, methods[best.spec], calib, eval_fn, max_drop, ref_value,
                                                   ref_pe, chosen, inputs, threads, protocol, rounds, wd,
                                                   input_name, best)
            if extra is not None:
                rows.append(extra["row"])
                if extra["pick"]:
                    chosen = extra["row"]
                    message = (f"chose {chosen.spec}: {best.spec} missed the budget, so its "
                               f"{len(extra['excluded'])} most sensitive node(s) stay in float; "
                               f"{1 / chosen.ratio:.2f}x faster than fp32 (ratio {chosen.ratio:.2f}, second "
                               "interleaved run), " + (chosen.judged or f"metric drop {100 * chosen.drop:+.2f} points"))
                    loud = False
                else:
                    message += f"; the sensitivity-guided variant {extra['row'].speed_text()} was not better"
            elif exclusion is not None:
                message += f"; leaving sensitive nodes of {best.spec} in float did not help: " + \
                    str(exclusion.get("result") or exclusion.get("error"))

        # 5. write the choice; diagnose it
        pick = chosen or fp32
        say(0.95, f"writing {pick.spec}")
        _copy_model(pick.path, out)
        prof = None
        if profile and chosen is not None and inputs is not None:
            from ..measure import profile_ops

            try:
                prof = profile_ops(str(out), "ort", threads, str(inputs), runs=50, protocol=protocol)
            except MeasurementError:
                prof = None
        diag = diagnose(out, prof, isa=isa, ratio=pick.ratio if chosen else None,
                        verdict=pick.verdict if chosen else None, ci=pick.ci95 if chosen else None)
        say(1.0, "done")
        return AutoResult(chosen=pick, message=message, loud=loud, candidates=tuple([fp32] + rows),
                          skipped=tuple(skipped), metric=metric_name, reference_metric=ref_value, max_drop=max_drop,
                          threads=threads, rounds=rounds, out_path=str(out), elapsed_s=time.perf_counter() - t_start,
                          mix=mix, exclusion=exclusion, diagnostics=diag, budget=budget_text, evaluation=evaluation)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def _judge(eval_fn, path, value, pe, ref_value, ref_pe, max_drop) -> dict:
    """The quality fields of a candidate row: metric, drop (+ paired CI), its own CI, within the budget, judged."""
    from ..evaluate import bootstrap_mean_ci

    drop = ref_value - float(value)
    row = dict(metric=float(value), drop=drop, drop_ci95=_paired_drop_ci(ref_pe, pe))
    verdict = getattr(eval_fn, "verdict", None)
    if verdict is not None:
        within, judged, ci = verdict(path)
        keep = ("n", "top1_agreement", "top1_agreement_ci95", "mean_cosine", "mean_cosine_ci95", "mean_snr_db",
                "mean_snr_db_ci95")
        numbers = {k: v for k, v in (getattr(eval_fn, "details", {}).get(str(path)) or {}).items() if k in keep}
        return {**row, "within_budget": bool(within), "judged": judged, "metric_ci95": tuple(ci) if ci else None,
                "fidelity": numbers or None}
    pe = np.asarray(pe, dtype=np.float64)
    ci = tuple(bootstrap_mean_ci(pe)) if pe.size >= 2 else None
    return {**row, "within_budget": bool(drop <= max_drop + 1e-12), "metric_ci95": ci}


def _why(comparison) -> str | None:
    """The harness's reason for a verdict that is not 'faster' (e.g. a noise guard fired), else None."""
    if comparison.verdict == "faster":
        return None
    return (getattr(comparison, "verdict_reason", "") or "").strip() or None


def _replace(row: CandidateResult, **kw) -> CandidateResult:
    from dataclasses import replace

    return replace(row, **kw)


def _exclusion_fallback(src, method, calib, eval_fn, max_drop, ref_value, ref_pe, chosen, inputs, threads,
                        protocol, rounds, wd, input_name, best):
    """Sensitivity + greedy exclusion on ``method``; measure the result against fp32 (and the current choice)."""
    from .ort_ptq import calibration_feeds
    from .sensitivity import NodeQuantizer, greedy_exclusion, node_sensitivity

    sdir = wd / f"sensitivity-{slug(method.spec)}"
    try:
        with NodeQuantizer(src, method, calib, input_name, work_dir=sdir) as nq:
            sens_in = calibration_feeds(src, calib, input_name, SENSITIVITY_SAMPLES)
            rows = node_sensitivity(src, method, calib, sens_in, quantizer=nq, input_name=input_name)
            judge = None
            if getattr(eval_fn, "verdict", None) is not None:
                judge = lambda path, value: eval_fn.verdict(path)[0]  # noqa: E731
            steps = greedy_exclusion(src, method, calib, eval_fn, max_drop, rows, reference=ref_value,
                                     quantizer=nq, max_steps=MAX_EXCLUSIONS, work_dir=sdir, judge=judge)
    except (QuantizationError, RecipeError) as e:
        return None, {"method": method.spec, "error": str(e)}
    info = {"method": method.spec, "sensitivity": rows,
            "steps": [{k: v for k, v in s.items() if k != "path"} for s in steps]}
    last = steps[-1]
    if not last["within_budget"] or not last["excluded"]:
        info["result"] = f"no exclusion of up to {MAX_EXCLUSIONS} nodes met the budget"
        return None, info
    m2 = method.with_options(exclude_nodes=",".join(last["excluded"]))
    path = wd / f"{Path(src).stem}.{slug(m2.spec)}.onnx"
    shutil.copyfile(last["path"], path)
    value, pe = eval_fn(str(path))
    row = CandidateResult(m2.spec, m2.describe, m2.key, m2.precision,
                          f"sensitivity-guided: {best.spec} with its {len(last['excluded'])} most sensitive node(s) "
                          "left in float", stage="sensitivity", path=str(path),
                          **_judge(eval_fn, str(path), value, pe, ref_value, ref_pe, max_drop))
    paths = [src, path] + ([chosen.path] if chosen is not None else [])
    try:
        ms, comps = _measure(paths, inputs, threads, protocol, rounds, None)
    except MeasurementError as e:
        info["result"] = f"measurement failed: {e}"
        return {"row": _replace(row, error=str(e)), "pick": False, "excluded": last["excluded"]}, info
    row = _replace(row, ratio=comps[1].ratio_median, ci95=comps[1].ci95, verdict=comps[1].verdict,
                   verdict_reason=_why(comps[1]),
                   median_ms=ms[1].stats.median)
    pick = row.verdict == "faster" and row.within_budget and (chosen is None or comps[1].ratio_median < comps[2].ratio_median)
    info["result"] = f"{row.speed_text()} ({'chosen' if pick else 'not chosen'})"
    return {"row": row, "pick": pick, "excluded": last["excluded"]}, info
