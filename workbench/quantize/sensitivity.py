"""Per-node quantization sensitivity and sensitivity-guided mixed precision.

    rows  = node_sensitivity("m.onnx", make_method("static"), calib, eval_inputs)   # most sensitive first
    steps = greedy_exclusion("m.onnx", make_method("static"), calib, eval_fn, budget=0.005, sensitivity=rows)

Sensitivity of a node = the error of the model's outputs against fp32 (on ``eval_inputs``) when ONLY
that node is quantized with the method's options (ORT's ``nodes_to_quantize``); greedy exclusion then
leaves the most sensitive nodes in float (ORT's ``nodes_to_exclude``, the method's ``exclude_nodes``)
one at a time until the task metric is within the budget.

Static quantization calibrates once: :class:`NodeQuantizer` pre-processes the model once and keeps
ORT's calibration cache (tensor ranges do not depend on which nodes are quantized), so each
further variant costs only the graph rewrite. The pre-processed graph keeps the original node names.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import QuantizationError, RecipeError

# compute nodes whose quantization is worth a row (the rest follow their neighbours)
COMPUTE_OPS = {"static": ("Conv", "ConvTranspose", "MatMul", "Gemm"),
               "dynamic": ("Conv", "MatMul", "Attention", "LSTM")}
EVAL_BATCH = 64


class NodeQuantizer:
    """One model + one method (static or dynamic), quantized many times over with node subsets.

    ``quantize(dst, only=[names])`` quantizes only those nodes; ``quantize(dst, exclude=[names])`` all
    but those (plus the method's own exclude_nodes). Use as a context manager (removes its temp files).
    """

    def __init__(self, onnx_path, method, calib=None, input_name: str = "input", work_dir=None):
        if method.name not in COMPUTE_OPS:
            raise RecipeError(f"node sensitivity works with the static and dynamic methods, not {method.name}; "
                              "use --method static or --method dynamic")
        if method.needs_calibration and calib is None:
            raise QuantizationError("static quantization needs calibration data; give the task's training samples")
        self.src, self.method, self.calib, self.input_name = Path(onnx_path), method, calib, input_name
        from ..fileio.containment import temp_prefix  # owner pid in the name: removed by a later run if we are killed

        self._tmp = None if work_dir else tempfile.mkdtemp(prefix=temp_prefix("sensitivity"))
        self.dir = Path(work_dir or self._tmp)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._pre: Path | None = None
        self._cache = self.dir / f"calibration.{method.key}.json"
        self._cache_ok = True  # False when this ORT has no calibration_cache_path (then calibrate every time)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Remove the temporary folder of per-node models."""
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    # -- the graph -------------------------------------------------------------------------------
    @property
    def prepared(self) -> Path:
        """The model ORT quantizes: pre-processed (shape inference, basic optimisation) for static."""
        if self._pre is None:
            if self.method.name == "static":
                from onnxruntime.quantization.shape_inference import quant_pre_process

                from .ort_logs import quiet

                pre = self.dir / "prepared.onnx"
                with quiet():
                    try:
                        quant_pre_process(str(self.src), str(pre), skip_symbolic_shape=True)
                    except Exception as e:
                        raise QuantizationError(f"cannot prepare {self.src.name} for quantization: "
                                                f"{(str(e).strip().splitlines() or [type(e).__name__])[0][:300]}") from None
                self._pre = pre
            else:
                self._pre = self.src
        return self._pre

    def nodes(self) -> list[tuple[str, str]]:
        """(name, op type) of the compute nodes the method would quantize, in graph order."""
        import onnx

        o = self.method.options
        kinds = [k for k in COMPUTE_OPS[self.method.name] if not o["op_types"] or k in o["op_types"]]
        skip = set(o["exclude_nodes"] or ())
        g = onnx.load(str(self.prepared), load_external_data=False).graph
        out = []
        for n in g.node:
            if n.op_type in kinds and n.name not in skip:
                if not n.name:
                    raise QuantizationError(f"{self.src.name} has unnamed {n.op_type} nodes; node-level quantization "
                                            "needs node names (re-export the model)")
                out.append((n.name, n.op_type))
        return out

    # -- quantizing --------------------------------------------------------------------------------
    def quantize(self, dst, only=None, exclude=()) -> Path:
        """Write a quantized model to ``dst``: only the nodes ``only`` (None = all), minus ``exclude``."""
        from .ort_logs import quiet

        dst = Path(dst)
        exclude = list(dict.fromkeys([*(self.method.options["exclude_nodes"] or ()), *exclude]))
        try:
            with quiet():
                if self.method.name == "static":
                    self._static(dst, list(only or ()), exclude)
                else:
                    self._dynamic(dst, list(only or ()), exclude)
        except (QuantizationError, RecipeError):
            raise
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise QuantizationError(f"{self.method.name} quantization of {self.src.name} failed: {first}") from None
        return dst

    def _static(self, dst: Path, only: list, exclude: list) -> None:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        from .ort_ptq import _CALIB, _TYPES, CALIB_CHUNK, _CalibReader, calibration_feeds

        o = self.method.options
        extra = {"ActivationSymmetric": o["symmetric_activations"], "WeightSymmetric": o["symmetric_weights"],
                 "CalibStridedMinMax": CALIB_CHUNK}
        if o["calibration"] == "percentile":
            extra["CalibPercentile"] = o["percentile"]
        cached = self._cache_ok and self._cache.is_file()
        reader = None
        if not cached:
            data = calibration_feeds(self.src, self.calib, self.input_name, o["calib_samples"])
            reader = _CalibReader(data, None, CALIB_CHUNK)
        kwargs = dict(quant_format=QuantFormat.QDQ if o["format"] == "qdq" else QuantFormat.QOperator,
                      op_types_to_quantize=list(o["op_types"]) or None, nodes_to_quantize=only or None,
                      nodes_to_exclude=exclude or None, per_channel=o["per_channel"], reduce_range=o["reduce_range"],
                      activation_type=getattr(QuantType, _TYPES[o["activation_type"]][0]),
                      weight_type=getattr(QuantType, _TYPES[o["weight_type"]][0]),
                      calibrate_method=getattr(CalibrationMethod, _CALIB[o["calibration"]][0]), extra_options=extra)
        if self._cache_ok:
            try:
                quantize_static(str(self.prepared), str(dst), reader, calibration_cache_path=str(self._cache), **kwargs)
                return
            except TypeError as e:  # an onnxruntime without calibration caching
                if "calibration_cache_path" not in str(e):
                    raise
                self._cache_ok = False
                if reader is None:
                    reader = _CalibReader(calibration_feeds(self.src, self.calib, self.input_name, o["calib_samples"]),
                                          None, CALIB_CHUNK)
        quantize_static(str(self.prepared), str(dst), reader, **kwargs)

    def _dynamic(self, dst: Path, only: list, exclude: list) -> None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        from .ort_ptq import _TYPES

        o = self.method.options
        quantize_dynamic(str(self.prepared), str(dst), weight_type=getattr(QuantType, _TYPES[o["weight_type"]][0]),
                         per_channel=o["per_channel"], reduce_range=o["reduce_range"],
                         op_types_to_quantize=list(o["op_types"]) or None, nodes_to_quantize=only or None,
                         nodes_to_exclude=exclude or None)


# --------------------------------------------------------------------------- running a model

def _as_feeds(path: Path, inputs, input_name: str):
    """Evaluation inputs as {input name: array (samples on axis 0)}, or a CalibData kept as it is (its own
    per-input sample axes)."""
    from .calib_data import CalibData
    from .ort_ptq import model_input_specs

    if isinstance(inputs, CalibData):
        return inputs
    if isinstance(inputs, dict):
        return {k: np.asarray(v) for k, v in inputs.items()}
    names = [s.name for s in model_input_specs(path)]
    if len(names) != 1:
        raise RecipeError(f"{path.name} has {len(names)} inputs ({', '.join(names)}); give eval inputs as a dict "
                          "input name -> array")
    return {names[0]: np.asarray(inputs)}


def model_outputs(path, feeds, threads: int = 1) -> np.ndarray:
    """First output of the model on every sample of ``feeds`` (axis 0), flattened per sample: (n, k).
    Batches of EVAL_BATCH; one sample at a time when the model has a fixed batch size. ``feeds`` may be a
    CalibData (samples on each input's own axis): then one sample a step."""
    from ..runtimes import get_runtime
    from .calib_data import CalibData

    session = get_runtime("ort").load(str(path), threads)
    if isinstance(feeds, CalibData):
        if any(ax != 0 for ax in feeds.axes.values()):
            return np.stack([np.asarray(session.run(feeds.sample(i))[0]).reshape(-1)
                             for i in range(feeds.n)]).astype(np.float64)
        feeds = feeds.arrays
    n = len(next(iter(feeds.values())))
    try:
        outs = [np.asarray(session.run({k: np.ascontiguousarray(v[s:s + EVAL_BATCH]) for k, v in feeds.items()})[0])
                for s in range(0, n, EVAL_BATCH)]
        out = np.concatenate(outs)
        if len(out) != n:
            raise ValueError("batch")
    except Exception:
        out = np.concatenate([np.asarray(session.run({k: np.ascontiguousarray(v[i:i + 1]) for k, v in feeds.items()})[0])
                              for i in range(n)])
    return out.reshape(n, -1).astype(np.float64)


def output_error(ref: np.ndarray, out: np.ndarray) -> dict:
    """rel_l2 (mean over samples of |out - ref| / |ref|), cosine_error (1 - mean cosine), max_abs,
    and for logits (k > 1) top1_flips (fraction of samples whose argmax changed)."""
    diff = np.linalg.norm(out - ref, axis=1)
    norm = np.maximum(np.linalg.norm(ref, axis=1), 1e-12)
    cos = (out * ref).sum(1) / np.maximum(np.linalg.norm(out, axis=1) * norm, 1e-12)
    res = {"rel_l2": float((diff / norm).mean()), "cosine_error": float(1 - cos.mean()),
           "max_abs": float(np.abs(out - ref).max())}
    if ref.shape[1] > 1:
        res["top1_flips"] = float((out.argmax(1) != ref.argmax(1)).mean())
    return res


# --------------------------------------------------------------------------- the analyses

def node_sensitivity(onnx_path, method, calib, eval_inputs, reference_outputs=None, nodes=None,
                     progress: Callable | None = None, *, input_name: str = "input", quantizer=None) -> list[dict]:
    """Output error vs fp32 when ONLY one node is quantized, for each quantizable node; most sensitive first.

    ``method``: a static or dynamic Method (its options apply, e.g. per_channel); ``calib``: calibration
    data (static); ``eval_inputs``: an array (one-input model) or dict of arrays, samples along axis 0;
    ``reference_outputs``: fp32 outputs on them (computed if None); ``nodes``: names to analyse (default:
    every Conv/MatMul/Gemm... the method would quantize); ``progress(fraction, node name)``;
    ``quantizer``: a :class:`NodeQuantizer` to share its calibration with other analyses.
    Returns [{node, op_type, rel_l2, cosine_error, max_abs, top1_flips?, rank}], plus a last row
    {node: "(all nodes)"} for the fully quantized model (not ranked).
    """
    from .methods import parse_method

    method = parse_method(method) if isinstance(method, str) else method
    own = quantizer is None
    nq = quantizer or NodeQuantizer(onnx_path, method, calib, input_name)
    try:
        feeds = _as_feeds(Path(onnx_path), eval_inputs, input_name)
        ref = (np.asarray(reference_outputs, dtype=np.float64).reshape(len(next(iter(feeds.values()))), -1)
               if reference_outputs is not None else model_outputs(onnx_path, feeds))
        available = nq.nodes()
        kinds = dict(available)
        if nodes is not None:
            unknown = [n for n in nodes if n not in kinds]
            if unknown:
                raise QuantizationError(f"node {unknown[0]!r} is not a node {method.name} quantizes in "
                                        f"{Path(onnx_path).name}; quantizable: {', '.join(list(kinds)[:6])} ...")
            available = [(n, kinds[n]) for n in nodes]
        if not available:
            raise QuantizationError(f"{Path(onnx_path).name} has no node that {method.name} quantizes "
                                    f"({', '.join(COMPUTE_OPS[method.name])})")
        rows = []
        total = len(available) + 1
        for i, (name, op) in enumerate(available):
            if progress:
                progress(i / total, name)
            path = nq.quantize(nq.dir / "one.onnx", only=[name])
            rows.append({"node": name, "op_type": op, **output_error(ref, model_outputs(path, feeds))})
        path = nq.quantize(nq.dir / "all.onnx")
        whole = {"node": "(all nodes)", "op_type": "-", **output_error(ref, model_outputs(path, feeds))}
        if progress:
            progress(1.0, "done")
    finally:
        if own:
            nq.close()
    rows.sort(key=lambda r: (-r["rel_l2"], r["node"]))
    for i, r in enumerate(rows):
        r["rank"] = i + 1
    return rows + [whole]


def greedy_exclusion(onnx_path, method, calib, eval_fn: Callable, budget: float, sensitivity: list[dict],
                     *, input_name: str = "input", max_steps: int | None = None, reference: float | None = None,
                     quantizer=None, work_dir=None, progress: Callable | None = None,
                     judge: Callable | None = None) -> list[dict]:
    """Leave the most sensitive nodes in float, one more per step, until the metric drop <= ``budget``.

    ``eval_fn(path) -> (metric, per-sample values)`` (higher is better); ``budget``: allowed drop of the
    metric vs fp32 (a fraction for accuracy: 0.005 = half a point); ``sensitivity``: rows of
    :func:`node_sensitivity` (most sensitive first). Step 0 excludes nothing. Each step:
    {excluded [names], metric, drop, within_budget, path}; the last one met the budget, unless every
    step up to ``max_steps`` (default: all nodes) missed it. With ``work_dir`` each step's model is kept
    there (``path``); without, paths point into a temp folder removed on return. ``judge(path, metric) -> bool``
    replaces the drop rule (e.g. a fidelity budget judged on the lower end of a 95% interval).
    """
    from .methods import parse_method

    method = parse_method(method) if isinstance(method, str) else method
    order = [r["node"] for r in sensitivity if r.get("rank")]
    if reference is None:
        reference = float(eval_fn(str(onnx_path))[0])
    own = quantizer is None
    nq = quantizer or NodeQuantizer(onnx_path, method, calib, input_name, work_dir=work_dir)
    out_dir = Path(work_dir) if work_dir else nq.dir
    limit = len(order) if max_steps is None else min(max_steps, len(order))
    steps = []
    try:
        for k in range(limit + 1):
            if progress:
                progress(k / (limit + 1), f"{k} node(s) in float")
            excluded = order[:k]
            path = nq.quantize(out_dir / f"exclude-{k}.onnx", exclude=excluded)
            value = float(eval_fn(str(path))[0])
            drop = reference - value
            ok = judge(str(path), value) if judge is not None else drop <= budget + 1e-12
            steps.append({"excluded": excluded, "metric": value, "drop": drop,
                          "within_budget": bool(ok), "path": str(path)})
            if steps[-1]["within_budget"]:
                break
    finally:
        if own and not work_dir:
            nq.close()
    return steps


def print_sensitivity(console, rows: list[dict], limit: int = 30) -> None:
    """The table: rank, node, op type, relative L2 error, 1 - cosine, top-1 flips, a text bar."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    ranked = [r for r in rows if r.get("rank")]
    top = max((r["rel_l2"] for r in ranked), default=0.0) or 1.0
    t = Table(title="per-node sensitivity: output error vs fp32 when ONLY that node is quantized",
              box=box.SIMPLE_HEAD)
    for col in ("#", "node", "op", "rel. L2 error", "1 - cosine", "top-1 flips", ""):
        t.add_column(col, justify="left" if col in ("node", "op", "") else "right", no_wrap=col != "node")
    for r in ranked[:limit] + [r for r in rows if not r.get("rank")]:
        flips = f"{100 * r['top1_flips']:.1f}%" if "top1_flips" in r else "-"
        bar = "█" * max(1, round(20 * r["rel_l2"] / top)) if r.get("rank") else ""
        t.add_row(str(r.get("rank") or ""), escape(r["node"]), r["op_type"], f"{r['rel_l2']:.4f}",
                  f"{r['cosine_error']:.2e}", flips, bar)
    console.print(t)
    if len(ranked) > limit:
        console.print(f"  ... {len(ranked) - limit} less sensitive nodes not shown (all are in --json)", highlight=False)
