"""`workbench quantize MODEL --method auto` and `--sensitivity`: the command-line side of
:mod:`.auto` and :mod:`.sensitivity` (argument checks, data sources, printing, --json).

``--max-drop`` is in POINTS: accuracy percentage points when the task has labels (0.5 = half a
point), else points of mean cosine similarity to fp32's outputs x 100 (0.5 -> cosine >= 0.995).
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.markup import escape

from ..errors import ArtifactError, RecipeError

DEFAULT_MAX_DROP_POINTS = 0.5
SENSITIVITY_SAMPLES = 128


def check_budget(plan, max_drop) -> float:
    """--max-drop in points for a labelled task (default 0.5), refused without labels (the budget is then
    --min-fidelity in the fidelity metric's own units). Returns the points."""
    if max_drop is not None and not plan.labelled:
        budget = getattr(getattr(plan.eval_fn, "budget", None), "text", "a fidelity minimum")
        raise RecipeError(f"--max-drop is the accuracy budget of a task with labels; without labels auto judges "
                          f"{budget}: set it with --min-fidelity (and --fidelity top1|cosine|snr)")
    points = DEFAULT_MAX_DROP_POINTS if max_drop is None else max_drop
    if isinstance(points, bool) or not isinstance(points, (int, float)) or not 0 <= points <= 100:
        raise RecipeError(f"--max-drop is in points (0.5 = half an accuracy point) between 0 and 100, got {points!r}")
    return points


def quantize_auto(model: str, *, options=(), task=None, calib_samples=None, calib_npz=None, calib_random=False,
                  inputs=None, shapes=(), out=None, threads=1, rounds=3, measure=True, json_out=None, max_s=None,
                  max_drop=None, protocol=None, console=None, tokenizer=None, fidelity=None,
                  min_fidelity=None, calib_axes=None) -> dict:
    """Choose the quantization of ``model`` by measuring candidates (see :mod:`.auto`); print the table.

    Quality is judged by accuracy when the task has labels (``max_drop`` points), else by fidelity to fp32
    on held-out data (:mod:`.evaldata`): ``fidelity`` (top1 | cosine | snr, default from the output's
    shape) >= ``min_fidelity`` on the lower 95% bound."""
    from ..pipeline.bench import default_protocol, prepare
    from ..fileio import write_json
    from ..measure import collect_environment
    from ..measure.inputs import write_npz
    from ..measure.model_inputs import read_model_inputs
    from ..pipeline.units.make import auto_candidates
    from .auto import auto_quantize, short_protocol
    from .calib_data import calib_count, parse_calib_axes
    from .evaldata import plan_data
    from .run_args import DEFAULT_CALIB_SAMPLES, check_run_args

    if options:
        raise RecipeError("--option does not apply to --method auto: it chooses the options itself; "
                          "use a fixed --method to set options")
    if not measure:
        raise RecipeError("--method auto chooses by measuring; drop --no-measure (or use a fixed --method)")
    if max_drop is not None and (isinstance(max_drop, bool) or not isinstance(max_drop, (int, float))
                                 or not 0 <= max_drop <= 100):
        raise RecipeError(f"--max-drop is in points (0.5 = half an accuracy point) between 0 and 100, got {max_drop!r}")
    src = Path(model)
    if not src.is_file():
        raise ArtifactError(f"model file {model} not found; give the path of an .onnx file")
    specs = list(read_model_inputs(str(src)).specs)
    dst, task_obj = check_run_args(src, out, "auto", json_out, task, threads, rounds)
    task_in = task_obj if getattr(task_obj, "x_test", None) is not None else None
    state = {}

    def measurement(inputs_path=None):
        if inputs_path not in state:
            state[inputs_path] = prepare([str(src)], "ort", [threads], inputs_path or inputs, None,
                                        shapes=list(shapes or ()), task=None if (inputs_path or inputs) else task_in,
                                        rounds=rounds)[0]
        return state[inputs_path]

    plan = plan_data(src, specs, task_obj, calib_npz=calib_npz, calib_random=calib_random, inputs=inputs,
                     shapes=shapes, needs_calibration=task_obj is not None or bool(calib_npz) or calib_random,
                     random_samples=calib_samples or 32, tokenizer=tokenizer, fidelity=fidelity,
                     min_fidelity=min_fidelity, threads=threads, measurement_feeds=lambda: measurement().feeds,
                     calib_axes=parse_calib_axes(calib_axes))
    points = check_budget(plan, max_drop)
    calib, calib_from = plan.calib, plan.calib_from
    env = collect_environment(["ort"])
    isa = env.get("isa", {})
    n = None if calib is None else min(calib_samples or DEFAULT_CALIB_SAMPLES, calib_count(calib))
    # the auto_quantize unit's candidates; the sample count in the lineage is the count actually used
    props = auto_candidates(src, isa, None if n is None else lambda m: m.with_options(calib_samples=n))
    if protocol is None:
        protocol = default_protocol(max_s) if max_s is not None else short_protocol()

    p = lambda s: console.print(s, highlight=False)  # noqa: E731
    p(f"auto: choosing the quantization of {escape(src.name)} on this machine ({escape(_isa_text(isa))})")
    if calib_from:
        p(f"calibration data: {escape(calib_from)}")
    budget = getattr(getattr(plan.eval_fn, "budget", None), "text", None)
    p(f"metric: {escape(plan.eval_what)}; budget: " + (escape(budget) if budget else
                                                       f"an accuracy drop of at most {points:g} points"))
    if plan.kind:
        p(f"  output kind: {escape(plan.kind)} ({escape(plan.kind_why or '')})")
    for w in plan.warnings:
        p(f"[bold yellow]WARNING: {escape(w)}[/bold yellow]")
    for pr in props:
        p(f"  candidate {escape(pr.method.spec)}: {escape(pr.reason)}")
    for what, why in props.skipped:
        p(f"  skipped {escape(what)}: {escape(why)}")
    seen = set()

    def progress(f, msg):
        head = msg.split(":")[0].split(" ")[0]
        if head in ("quantizing", "evaluating", "writing") or (head == "measuring" and head not in seen) \
                or "sensitivity" in msg:
            seen.add(head)
            p(f"  {escape(msg if head != 'measuring' else 'measuring fp32 and every candidate interleaved ...')}")

    t0 = time.perf_counter()
    from ..fileio.containment import temp_prefix  # owner pid in the name: removed by a later run if we are killed

    with tempfile.TemporaryDirectory(prefix=temp_prefix("auto")) as tmpd:
        if plan.measure_feeds is not None and inputs is None:  # tokenized text from the task
            resolved = measurement(write_npz(os.path.join(tmpd, "task-inputs.npz"), plan.measure_feeds,
                                             plan.measure_sources))
        else:
            resolved = measurement()
        feeds_path = write_npz(os.path.join(tmpd, "inputs.npz"), resolved.feeds, resolved.sources)
        res = auto_quantize(src, dst, calib=calib, eval_fn=plan.eval_fn, inputs=feeds_path, threads=threads,
                            max_drop=points / 100, rounds=rounds, protocol=protocol, progress=progress,
                            candidates=props, isa=isa, input_name=specs[0].name, evaluation=plan.to_json())
    print_auto(console, res.to_json(), dst)
    p(f"auto took {time.perf_counter() - t0:.1f} s")
    doc = {"schema_version": 1, "model": str(src), "output": str(dst), "method": "auto", "spec": res.chosen.spec,
           "metric": plan.eval_what, "max_drop_points": points if plan.labelled else None,
           "budget": budget or f"accuracy drop <= {points:g} points", "calibration": calib_from or None,
           "evaluation": plan.to_json(), "auto": res.to_json(), "diagnostics": res.diagnostics, "environment": env}
    if json_out:
        write_json(json_out, doc)
        p(f"written: {escape(str(json_out))}")
    return doc


def _isa_text(isa: dict) -> str:
    from .diagnose import isa_summary

    return isa_summary(isa)["text"]


def _pts(v) -> str:
    return "-" if v is None else f"{100 * v:+.2f}"


def print_auto(console, auto: dict, dst: Path) -> None:
    """The candidate table (reason, ratio [CI], verdict, metric, drop, within budget), the choice and why."""
    from rich import box
    from rich.table import Table

    t = Table(title=f"auto: candidates measured interleaved with fp32 ({auto['threads']} thread(s), "
                    f"{auto['rounds']} rounds); ratio = median / fp32 median, < 1 is faster", box=box.SIMPLE_HEAD)
    fid = bool(auto.get("budget")) and auto["metric"] != "accuracy"
    third = "[95% CI]" if fid else "drop (pts) [95% CI]"
    for col in ("", "candidate", "ratio [95% CI]", "verdict", auto["metric"], third, "budget"):
        t.add_column(col, no_wrap=col != "candidate", overflow="fold",
                     justify="left" if col in ("", "candidate", "verdict") else "right")
    chosen = auto["chosen"]["spec"]
    for c in auto["candidates"]:
        ratio = "-" if c["ratio"] is None else f"{c['ratio']:.3f}" + (
            f" [{c['ci95'][0]:.3f}, {c['ci95'][1]:.3f}]" if c.get("ci95") else "")
        verdict = c["verdict"] or ("FAILED" if c.get("error") else "-")
        if verdict == "slower":
            verdict = "[bold red]SLOWER[/bold red]"
        if fid:
            drop = f"[{c['metric_ci95'][0]:.3f}, {c['metric_ci95'][1]:.3f}]" if c.get("metric_ci95") else "-"
        else:
            drop = _pts(c["drop"]) + (f" [{100 * c['drop_ci95'][0]:+.2f}, {100 * c['drop_ci95'][1]:+.2f}]"
                                      if c.get("drop_ci95") else "")
        metric = "-" if c["metric"] is None else (f"{100 * c['metric']:.2f}%" if auto["metric"] == "accuracy"
                                                  else f"{c['metric']:.4f}")
        budget = "-" if c["spec"] == "fp32" or c["metric"] is None else ("within" if c["within_budget"] else "OUTSIDE")
        t.add_row("★" if c["spec"] == chosen else "", escape(c["spec"]), ratio, verdict, metric, drop, budget)
    console.print(t)
    if auto.get("budget"):
        console.print(f"budget: {escape(auto['budget'])}", highlight=False)
    ev = auto.get("evaluation") or {}
    for w in ev.get("warnings") or ():
        console.print(f"[bold yellow]WARNING: {escape(w)}[/bold yellow]", highlight=False)
    for c in auto["candidates"][1:]:
        why = c["reason"] + (" [file reused]" if c.get("reused") else "")
        f = c.get("fidelity") or {}
        if f:
            why += " [vs fp32: " + ", ".join(
                [f"top-1 agreement {f['top1_agreement']:.3f}"] * ("top1_agreement" in f)
                + [f"mean cosine {f['mean_cosine']:.4f}", f"SNR {f['mean_snr_db']:.1f} dB"]) + f" on {f['n']}]"
        console.print(f"  {escape(c['spec'])}: {escape(why)}" + (f" [red]ERROR: {escape(c['error'])}[/red]"
                                                                  if c.get("error") else ""), highlight=False)
    ex = auto.get("exclusion")
    if ex and ex.get("steps"):
        steps = ", ".join(f"{len(s['excluded'])} in float -> drop {_pts(s['drop'])}" for s in ex["steps"])
        console.print(f"sensitivity fallback on {escape(ex['method'])}: {escape(steps)}; {escape(str(ex.get('result')))}",
                      highlight=False)
    if auto["loud"]:
        console.print(f"[bold red]{escape(auto['message'])}[/bold red]", highlight=False)
        console.print(f"[bold red]WARNING: {escape(dst.name)} is the fp32 model itself (copied): no int8 variant "
                      "was both faster than fp32 and within the budget on this machine[/bold red]", highlight=False)
    else:
        console.print(f"[bold]{escape(auto['message'])}[/bold]", highlight=False)
    d = auto.get("diagnostics") or {}
    if d:
        share = d.get("quantized_time_share")
        console.print(f"  format:    {escape(d['label'])}" + (f"; {share:.0%} of the time in quantized kernels"
                                                              if share is not None else ""), highlight=False)
        console.print(f"  why:       {escape(d['explanation'])}", highlight=False)
    console.print(f"written: {escape(str(dst))}", highlight=False)


def sensitivity_report(console, src: Path, method, calib, task, specs, feeds: dict, eval_feeds=None) -> list[dict]:
    """--sensitivity: per-node error table for ``method`` on realistic inputs (the held-out evaluation data,
    else the task's test split, else the calibration data, else the measurement input)."""
    from .fidelity import n_samples, take
    from .sensitivity import node_sensitivity, print_sensitivity

    name = specs[0].name
    if eval_feeds is not None:
        data = take(eval_feeds, np.arange(min(SENSITIVITY_SAMPLES, n_samples(eval_feeds))))
        what = f"{n_samples(data)} held-out samples"
    elif task is not None and getattr(task, "x_test", None) is not None and len(specs) == 1:
        data, what = task.x_test[:SENSITIVITY_SAMPLES], f"{min(SENSITIVITY_SAMPLES, len(task.x_test))} test examples"
    elif calib is not None:
        data = calib if isinstance(calib, dict) or hasattr(calib, "subset") else {name: calib}
        data = take(data, np.arange(min(SENSITIVITY_SAMPLES, n_samples(data))))
        what = f"{n_samples(data)} calibration samples"
    else:
        data, what = feeds, "the measurement input"
    console.print(f"per-node sensitivity of {escape(method.spec)} on {what} ...", highlight=False)
    t0 = time.perf_counter()
    rows = node_sensitivity(src, method, calib, data, input_name=name)
    print_sensitivity(console, rows)
    console.print(f"  ({len(rows) - 1} nodes in {time.perf_counter() - t0:.1f} s; leave the top ones in float with "
                  "--option exclude_nodes=NAME,NAME)", highlight=False)
    return rows
