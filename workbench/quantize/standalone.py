"""`workbench quantize MODEL.onnx --method ...`: quantize any ONNX file, then show what it bought.

Order: every argument is checked first (model readable, method options, output path, --json path,
task / calibration source, measurement inputs) -- nothing is written on a bad argument. Then the
model is quantized into a temp file beside the output, loaded once in ONNX Runtime (a file that
does not load is never left behind) and renamed into place. Unless --no-measure: fp32 and the
variant are measured interleaved through the harness (``workbench.pipeline.bench``), the variant's per-op
profile is taken, accuracy is evaluated on the task's test split when it has labels, and the
diagnostics (graph format, time in int8 kernels, ISA, a plain explanation) are printed, with a
loud WARNING when the variant is slower than fp32.

Static quantization needs realistic calibration data: --task SPEC (its training split) or
--calib X.npz. Without either it is refused, unless --calib-random asks for generated inputs
(then a warning says the ranges will not fit real data).

``--method auto`` hands over to :mod:`.auto_cli` (candidates measured interleaved with fp32, the
fastest within ``--max-drop`` points kept); ``--sensitivity`` adds the per-node error table.

A thin caller of the pipeline's units (issue 14): the file is written by the ``quantize`` unit's own step
(``workbench.pipeline.units.make.quantize_file``: the same bytes as `workbench run` for the same source,
method and calibration), and fp32 and the variant are measured through `workbench bench`, whose measurement
is the ``measure_group`` unit's step (``workbench.pipeline.units.measure.measure_together``).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from rich.markup import escape

from ..errors import ArtifactError, RecipeError
from .run_args import DEFAULT_CALIB_SAMPLES, check_run_args, default_output  # noqa: F401  (re-exported)

RANDOM_CALIB_SAMPLES = 32
PROFILE_RUNS = 50


def model_bytes(path: str | Path) -> int:
    """Size of an ONNX model on disk, external data files included."""
    import onnx

    p = Path(path)
    total = p.stat().st_size
    try:
        m = onnx.load(str(p), load_external_data=False)
    except Exception:
        return total
    seen = set()
    for t in m.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            loc = next((e.value for e in t.external_data if e.key == "location"), None)
            f = p.parent / loc if loc else None
            if f is not None and f not in seen and f.is_file():
                seen.add(f)
                total += f.stat().st_size
    return total


def _calibration(method, model: Path, specs, task, calib_npz, calib_random: bool, shapes, *, inputs=None,
                 tokenizer=None, fidelity=None, min_fidelity=None, threads: int = 1, measurement_feeds=None,
                 calib_axes=None):
    """The :class:`.evaldata.DataPlan` of a fixed method: calibration data when it needs some (the held-out
    part of --calib removed), and what judges the result; checks the arguments first."""
    from .evaldata import plan_data

    given = [n for n, v in (("--task", task), ("--calib", calib_npz), ("--calib-random", calib_random)) if v]
    if calib_random and (task is not None or calib_npz):
        raise RecipeError("--calib-random generates calibration inputs, but --task/--calib already give real ones; "
                          "drop --calib-random")
    if not method.needs_calibration:
        extra = [g for g in given if g != "--task"]
        if extra:
            raise RecipeError(f"{extra[0]} gives calibration data, which --method {method.name} does not use; drop it")
    plan = plan_data(model, specs, task, calib_npz=calib_npz, calib_random=calib_random, inputs=inputs, shapes=shapes,
                     needs_calibration=method.needs_calibration,
                     random_samples=method.options.get("calib_samples") or RANDOM_CALIB_SAMPLES, tokenizer=tokenizer,
                     fidelity=fidelity, min_fidelity=min_fidelity, threads=threads, measurement_feeds=measurement_feeds,
                     calib_axes=calib_axes)
    if method.needs_calibration and plan.calib is None:
        raise RecipeError(f"static quantization calibrates activation ranges on realistic inputs: pass --task SPEC "
                          f"(its training split) or --calib X.npz (one array per input of {model.name}, samples along "
                          "axis 0); --calib-random calibrates on generated inputs, whose ranges rarely fit real data")
    return plan


def _accuracy(model: Path, out: Path, task, input_name: str, threads: int) -> dict | None:
    """fp32 vs quantized accuracy on the task's test split (through ORT), with a paired CI of the drop."""
    from ..evaluate import bootstrap_mean_ci, evaluate_accuracy

    y = getattr(task, "y_test", None)
    if task is None or y is None or getattr(task, "metric", None) != "accuracy" or getattr(task, "x_test", None) is None:
        return None
    q_ref, logits_ref = evaluate_accuracy(str(model), "ort", task.x_test, y, input_name, threads)
    q_new, logits_new = evaluate_accuracy(str(out), "ort", task.x_test, y, input_name, threads)
    c_ref = (logits_ref.argmax(1) == y).astype(np.float64)
    c_new = (logits_new.argmax(1) == y).astype(np.float64)
    lo, hi = bootstrap_mean_ci(c_ref - c_new)
    return {"metric": "accuracy", "n": int(len(y)), "fp32": q_ref.to_json(), "quantized": q_new.to_json(),
            "drop_points": 100 * (q_ref.value - q_new.value), "drop_ci95_points": [100 * lo, 100 * hi],
            "top1_agreement": float((logits_ref.argmax(1) == logits_new.argmax(1)).mean()),
            "ci_method": "paired bootstrap percentile over test examples (2000 resamples)"}


def _output_diff(model: Path, out: Path, feeds: dict) -> float | None:
    from ..runtimes import get_runtime

    rt = get_runtime("ort")
    try:
        a = np.asarray(rt.load(str(model), 1).run(feeds)[0], dtype=np.float64)
        b = np.asarray(rt.load(str(out), 1).run(feeds)[0], dtype=np.float64)
    except Exception:
        return None
    return float(np.abs(a - b).max()) if a.shape == b.shape else None


def quantize_model(model: str, method: str, options=(), *, task: str | None = None, calib_samples: int | None = None,
                   calib_npz: str | None = None, calib_random: bool = False, inputs: str | None = None, shapes=(),
                   out: str | None = None, threads: int = 1, rounds: int = 3, measure: bool = True,
                   json_out: str | None = None, max_s: float | None = None, protocol=None, console=None,
                   max_drop: float | None = None, sensitivity: bool = False, tokenizer: str | None = None,
                   fidelity: str | None = None, min_fidelity: float | None = None, calib_axes=None) -> dict:
    """Quantize ``model`` with ``method`` (+ ``options``: dict or ["KEY=VALUE"]), check it loads, and unless
    ``measure`` is False compare it with fp32 (latency, accuracy, profile, diagnostics). Returns the
    summary dict (also written to ``json_out``). ``method="auto"`` measures candidates and keeps the fastest
    within ``max_drop`` POINTS (:mod:`.auto_cli`); ``sensitivity`` adds the per-node error table (static/dynamic).
    Without labels the result is judged by fidelity to fp32 on held-out data (:mod:`.evaldata`): ``fidelity``
    (top1 | cosine | snr) >= ``min_fidelity`` (lower 95% bound); ``tokenizer``: the folder of a text model's
    tokenizer, for text tasks. ``calib_axes``: ``["state=1", "sr=none"]`` (``--calib-axis``), the axis each
    calibration input holds its samples on (:mod:`.calib_data`; default: read from the model)."""
    from rich.console import Console

    from ..pipeline.bench import prepare
    from ..measure.model_inputs import read_model_inputs
    from .methods import make_method, parse_option_pairs
    from .calib_data import calib_count, parse_calib_axes

    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=max(console.width, 130))
    if method == "auto":
        from .auto_cli import quantize_auto

        if sensitivity:
            raise RecipeError("--sensitivity goes with a fixed --method (static or dynamic); auto runs it itself "
                              "when its fastest candidate misses the budget")
        return quantize_auto(model, options=options, task=task, calib_samples=calib_samples, calib_npz=calib_npz,
                             calib_random=calib_random, inputs=inputs, shapes=shapes, out=out, threads=threads,
                             rounds=rounds, measure=measure, json_out=json_out, max_s=max_s, max_drop=max_drop,
                             protocol=protocol, console=console, tokenizer=tokenizer, fidelity=fidelity,
                             min_fidelity=min_fidelity, calib_axes=calib_axes)
    if max_drop is not None:
        raise RecipeError("--max-drop is the accuracy budget of --method auto; drop it or use --method auto")
    src = Path(model)
    if not src.is_file():
        raise ArtifactError(f"model file {model} not found; give the path of an .onnx file")
    specs = list(read_model_inputs(str(src)).specs)  # a corrupt / non-ONNX file fails here, one line
    opts = dict(options) if isinstance(options, dict) else parse_option_pairs(options)
    m = make_method(method, **opts)
    if sensitivity and m.name not in ("static", "dynamic"):
        raise RecipeError(f"--sensitivity works with --method static or dynamic, not {m.name}")
    if calib_samples is not None:
        if not m.needs_calibration:
            raise RecipeError(f"--calib-samples applies to calibrated methods (static), not --method {method}; drop it")
        if "calib_samples" in opts:
            raise RecipeError("--calib-samples and --option calib_samples both set the sample count; give one")
        m = m.with_options(calib_samples=calib_samples)
    if calib_axes and not m.needs_calibration:
        raise RecipeError(f"--calib-axis applies to calibrated methods (static), not --method {method}; drop it")
    dst, task_obj = check_run_args(src, out, method, json_out, task, threads, rounds)
    task_in = task_obj if getattr(task_obj, "x_test", None) is not None else None
    state = {}

    def resolve(inputs_path=None):  # the measurement inputs (checked before anything is written)
        if inputs_path not in state:
            state[inputs_path] = prepare([str(src)], "ort", [threads], inputs_path or inputs, None,
                                         shapes=list(shapes or ()), task=None if (inputs_path or inputs) else task_in,
                                         rounds=rounds)[0]
        return state[inputs_path]

    plan = _calibration(m, src, specs, task_obj, calib_npz, calib_random, shapes, inputs=inputs, tokenizer=tokenizer,
                        fidelity=fidelity, min_fidelity=min_fidelity, threads=threads,
                        measurement_feeds=(lambda: resolve().feeds) if measure else None,
                        calib_axes=parse_calib_axes(calib_axes))
    calib, calib_from = plan.calib, plan.calib_from
    if calib is not None:  # the sample count in the lineage is the count actually used
        have = calib_count(calib)
        want = m.options["calib_samples"] or DEFAULT_CALIB_SAMPLES
        if want > have and m.options["calib_samples"] is not None:
            console.print(f"note: {want} calibration samples asked for, {have} available: using {have}", highlight=False)
        m = m.with_options(calib_samples=min(want, have))
    tmpd = tempfile.TemporaryDirectory(prefix="workbench-quantize-")
    measure_inputs = inputs
    if plan.measure_feeds is not None and inputs is None:  # a text task: a tokenized test text
        from ..measure.inputs import write_npz

        measure_inputs = write_npz(os.path.join(tmpd.name, "task-inputs.npz"), plan.measure_feeds, plan.measure_sources)
    try:
        return _quantize_and_compare(console, src, dst, m, method, specs, calib, calib_from, calib_random, plan,
                                     task_obj, measure_inputs, shapes, threads, rounds, measure, json_out, max_s,
                                     protocol, sensitivity, resolve(measure_inputs) if measure else None)
    finally:
        tmpd.cleanup()


def _quantize_and_compare(console, src, dst, m, method, specs, calib, calib_from, calib_random, plan, task_obj, inputs,
                          shapes, threads, rounds, measure, json_out, max_s, protocol, sensitivity, resolved) -> dict:
    """Quantize ``src`` into ``dst`` with ``m``, then (``measure``) compare it with fp32 and print the summary."""
    from ..pipeline.bench import prepare
    from ..fileio import write_json

    input_name = specs[0].name if len(specs) == 1 else (getattr(task_obj, "input_name", None) or specs[0].name)

    # -- quantize --------------------------------------------------------------------------------
    console.print(f"quantizing {escape(src.name)} with {escape(m.describe)}", highlight=False)
    if calib_from:
        console.print(f"calibration data: {escape(calib_from)}", highlight=False)
        if calib_random:
            console.print("[bold yellow]warning[/bold yellow]: calibrating on generated inputs: activation ranges "
                          "will not match real data; accuracy may collapse — use --task or --calib for a real variant")
    if plan.eval_what:
        console.print(f"judged by: {escape(plan.eval_what)}" + (f" ({escape(plan.kind_why)})" if plan.kind_why else ""),
                      highlight=False)
    for w in plan.warnings:
        console.print(f"[bold yellow]WARNING[/bold yellow]: {escape(w)}", highlight=False)
    state = {"next": 0.25}

    def progress(f):
        if f >= state["next"]:
            console.print(f"  calibration {f:.0%}", highlight=False)
            state["next"] = (int(f * 4) + 1) / 4

    from ..pipeline.units.make import quantize_file  # the quantize unit's own step: same bytes as `workbench run`

    took = quantize_file(src, dst, m, calib, input_name, on_progress=progress)
    size_in, size_out = model_bytes(src), model_bytes(dst)
    console.print(f"written: {escape(str(dst))} in {took:.1f} s; size {size_in / 1e6:.2f} MB -> {size_out / 1e6:.2f} MB "
                  f"({size_out / size_in:.2f}x)", highlight=False)
    doc = {"schema_version": 1, "model": str(src), "output": str(dst), "method": m.name, "spec": m.spec,
           "options": m.options, "describe": m.describe, "key": m.key, "quantize_s": round(took, 3),
           "calibration": calib_from or None, "evaluation": plan.to_json(), "size_bytes": {"fp32": size_in, "quantized": size_out},
           "size_ratio": size_out / size_in}

    # -- measure, profile, evaluate, diagnose -----------------------------------------------------
    from .diagnose import diagnose

    comp = None
    profile = None
    if measure:
        from ..pipeline.bench import bench_models
        from ..measure import profile_ops
        from ..measure.inputs import write_npz
        from .evaldata import fidelity_summary, labelled_accuracy

        task_in = task_obj if getattr(task_obj, "x_test", None) is not None and inputs is None else None
        rows = bench_models([str(src), str(dst)], "ort", [threads], inputs, None, protocol, console, shapes=list(shapes or ()),
                            task=task_in, rounds=rounds, max_s=max_s)
        comps = rows[1].get("comparisons") or []
        comp = comps[0] if comps else None
        doc["latency"] = {"fp32_median_ms": rows[0]["latency"]["median"], "quantized_median_ms": rows[1]["latency"]["median"],
                          "comparison": comp, "threads": threads, "rounds": rounds}
        resolved = prepare([str(dst)], "ort", [threads], inputs, None, shapes=list(shapes or ()), task=task_in,
                           rounds=rounds)[0]
        profile = rows[1].get("profile")  # bench profiled the quantized model in its own pass
        if profile is None:  # that pass failed: one more try, with the profile's own error on failure
            from ..fileio.containment import temp_prefix  # owner pid in the name: removed by a later run if killed

            with tempfile.TemporaryDirectory(prefix=temp_prefix("quantize")) as tmpd:
                feeds_path = write_npz(os.path.join(tmpd, "inputs.npz"), resolved.feeds, resolved.sources)
                profile = profile_ops(str(dst), "ort", threads, feeds_path, runs=PROFILE_RUNS,
                                      **({"protocol": protocol} if protocol is not None else {}))
        doc["profile"] = profile
        diff = _output_diff(src, dst, resolved.feeds)
        doc["max_abs_output_diff"] = diff
        acc = _accuracy(src, dst, task_obj, input_name, threads) if len(specs) == 1 else None
        if acc is None and plan.labelled:
            acc = labelled_accuracy(plan.eval_fn, src, dst)
        doc["accuracy"] = acc
        if not plan.labelled and plan.eval_fn is not None:
            doc["fidelity"] = fidelity_summary(plan, src, dst)
    from ..measure import collect_environment

    env = collect_environment(["ort"])
    ci = comp.get("ci95") if comp else None
    d = diagnose(dst, profile, isa=env.get("isa", {}), ratio=comp["ratio_median"] if comp else None,
                 verdict=comp["verdict"] if comp else None, ci=ci)
    doc["diagnostics"] = d
    doc["environment"] = env
    _print_summary(console, doc, dst)
    if sensitivity:
        from .auto_cli import sensitivity_report

        feeds = (resolved if measure else prepare(
            [str(src)], "ort", [threads], inputs, None, shapes=list(shapes or ()),
            task=task_obj if getattr(task_obj, "x_test", None) is not None and inputs is None else None,
            rounds=rounds)[0]).feeds
        doc["sensitivity"] = sensitivity_report(console, src, m, calib, task_obj, specs, feeds,
                                                getattr(plan.eval_fn, "feeds", None))
    if json_out:
        write_json(json_out, doc)
        console.print(f"written: {escape(str(json_out))}", highlight=False)
    return doc


def _print_summary(console, doc: dict, dst: Path) -> None:
    d = doc["diagnostics"]
    g = d["graph"]
    p = lambda s: console.print(s, highlight=False)  # noqa: E731
    p(f"[bold]{escape(dst.name)}[/bold]: {escape(doc['describe'])}")
    p(f"  size:      {doc['size_bytes']['fp32'] / 1e6:.2f} MB -> {doc['size_bytes']['quantized'] / 1e6:.2f} MB "
      f"({doc['size_ratio']:.2f}x)")
    lat = doc.get("latency")
    if lat and lat.get("comparison"):
        c = lat["comparison"]
        ci = f" [{c['ci95'][0]:.3f}, {c['ci95'][1]:.3f}]" if c.get("ci95") else ""
        p(f"  latency:   fp32 {lat['fp32_median_ms']:.3f} ms -> {lat['quantized_median_ms']:.3f} ms (median, "
          f"{lat['threads']} thread(s)); ratio {c['ratio_median']:.3f}{ci} -> {c['verdict']}")
    acc = doc.get("accuracy")
    if acc:
        lo, hi = acc["drop_ci95_points"]
        p(f"  accuracy:  fp32 {100 * acc['fp32']['value']:.2f}% -> {100 * acc['quantized']['value']:.2f}% on "
          f"{acc['n']} test examples; drop {acc['drop_points']:+.2f} points [95% CI {lo:+.2f}, {hi:+.2f}]; "
          f"top-1 agreement with fp32 {100 * acc['top1_agreement']:.1f}%")
    fid = doc.get("fidelity")
    if fid:
        p(f"  fidelity:  {escape(fid['judged'])} on {escape(fid['on'])}" + (
            f"; mean cosine {fid['mean_cosine']:.4f}, SNR {fid['mean_snr_db']:.1f} dB" if fid["metric"] != "mean cosine"
            else f"; SNR {fid['mean_snr_db']:.1f} dB") + f" -> {'within' if fid['within_budget'] else 'OUTSIDE'} "
          "the budget")
    if not acc and not fid and doc.get("max_abs_output_diff") is not None:
        p(f"  outputs:   max |quantized - fp32| = {doc['max_abs_output_diff']:.3g} on the measurement inputs "
          "(pass --task with labels for accuracy)")
    ops = ", ".join(f"{k} {v}" for k, v in g["ops"].items()) or "no quantized operators"
    bits = f"; {g['weight_bits']}-bit int8 weights" if g.get("weight_bits") else ""
    wb = sorted(g["weight_bytes"].items(), key=lambda kv: -kv[1])
    weights = ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in wb if v >= 0.01 * max(1, wb[0][1])) if wb else "none"
    p(f"  format:    {escape(g['label'])}: {escape(ops)}{bits}; weights {escape(weights)}")
    if d["quantized_time_share"] is not None:
        conv = d.get("conversion_time_share") or 0.0
        p(f"  profile:   {d['quantized_time_share']:.0%} of the time in quantized kernels, {conv:.0%} in "
          f"(de)quantize conversions; top: {escape(', '.join(d['top_ops']))}")
    p(f"  cpu:       {escape(d['isa']['text'])}")
    p(f"  why:       {escape(d['explanation'])}")
    c = (lat or {}).get("comparison")
    if c and c["verdict"] == "slower":
        ci = f" [{c['ci95'][0]:.2f}, {c['ci95'][1]:.2f}]" if c.get("ci95") else ""
        p(f"[bold red]WARNING: {escape(dst.name)} is SLOWER than fp32 (ratio {c['ratio_median']:.2f}{ci}) — "
          "do not ship it[/bold red]")
    if acc and acc["drop_ci95_points"][0] > 0 and acc["drop_points"] >= 1.0:
        p(f"[bold red]WARNING: {escape(dst.name)} loses {acc['drop_points']:.2f} accuracy points vs fp32 "
          f"[95% CI {acc['drop_ci95_points'][0]:.2f}, {acc['drop_ci95_points'][1]:.2f}] — check before shipping[/bold red]")
    if not lat:
        p("  not measured (--no-measure): run without it to compare latency and accuracy with fp32")
