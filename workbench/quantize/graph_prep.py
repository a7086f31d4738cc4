"""Graph preparation before ONNX Runtime quantization: make the graphs real exporters write quantizable.

    prep = prepare_graph(src, dst, min_opset=13)    # Prep: the file to quantize + what was done, in words
    prep.notes  -> ("3 Constant weights moved to initializers", "opset 12 -> 13")

What it fixes (each seen on paddle2onnx / older tf2onnx exports, ../shared/FINDINGS.md):
- weights held in ``Constant`` nodes (no initializers): ORT's quantizers only quantize initializers,
  and every analysis reading ``graph.initializer`` misses them -> moved to initializers (sub-graphs'
  Constants to their own sub-graph's initializers, which ORT's sub-graph quantizer reads);
- opset < 13 with per-channel QDQ: ``DequantizeLinear(axis=...)`` needs opset 13, the quantized file
  fails to load (INVALID_GRAPH) -> converted with ``onnx.version_converter`` and the result checked in
  onnxruntime; when conversion fails the caller quantizes per-tensor and says so;
- shapes: ORT's ``quant_pre_process`` with symbolic shape inference where it works, else ONNX shape
  inference only (dynamic dims stay dynamic).

What was done is stamped into the quantized file's metadata (:data:`META_KEY`), where
:func:`workbench.quantize.diagnose.graph_format` reads it back for the artifact's diagnostics.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

PER_CHANNEL_OPSET = 13  # DequantizeLinear's axis attribute (per-channel QDQ) is opset 13
META_KEY = "workbench.graph_prep"
CONTROL_FLOW = ("If", "Loop", "Scan")


@dataclass(frozen=True)
class Prep:
    """What :func:`prepare_graph` did. ``path``: the file to quantize; ``notes``: one phrase per change
    (for the diagnostics); ``opset_error``: why the opset could not be raised (None when it was or did
    not need to be); ``subgraph_compute``: Conv/MatMul/Gemm counts inside If/Loop/Scan sub-graphs."""

    path: Path
    notes: tuple = ()
    weights_moved: int = 0
    constants_moved: int = 0
    opset_from: int | None = None
    opset_to: int | None = None
    opset_error: str | None = None
    subgraph_compute: dict = field(default_factory=dict)

    @property
    def has_subgraphs(self) -> bool:
        """Whether the graph has compute inside subgraphs (If/Loop/Scan bodies), which quantizers leave in float."""
        return bool(self.subgraph_compute)

    def text(self) -> str:
        """'3 Constant weights moved to initializers; opset 12 -> 13' (empty when nothing was done)."""
        return "; ".join(self.notes)


def default_opset(model) -> int | None:
    """The model's ai.onnx opset version."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _subgraphs(node):
    for a in node.attribute:
        if a.g is not None and (a.g.node or a.g.output):
            yield a.g
        yield from a.graphs


def hoist_constants(graph, outer_names=frozenset()) -> tuple[int, int]:
    """Move the tensors of ``Constant`` nodes (``value`` attribute) into initializers, in ``graph`` and
    every sub-graph (each into its own graph). Constants that are graph outputs stay. Returns
    (weights moved: float tensors of more than one element, other constants moved)."""
    from onnx import TensorProto

    outputs = {o.name for o in graph.output}
    keep, weights, others = [], 0, 0
    for n in graph.node:
        for sub in _subgraphs(n):
            w, o = hoist_constants(sub)
            weights, others = weights + w, others + o
        value = next((a.t for a in n.attribute if a.name == "value" and a.HasField("t")), None)
        if n.op_type != "Constant" or n.domain not in ("", "ai.onnx") or value is None or n.output[0] in outputs:
            keep.append(n)
            continue
        t = TensorProto()
        t.CopyFrom(value)
        t.name = n.output[0]
        graph.initializer.append(t)
        is_weight = t.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16) \
            and _numel(t) > 1
        weights, others = weights + is_weight, others + (not is_weight)
    if weights + others:
        del graph.node[:]
        graph.node.extend(keep)
    return weights, others


def _numel(t) -> int:
    n = 1
    for d in t.dims:
        n *= d
    return n


def subgraph_compute(graph) -> dict:
    """{op type: count} of Conv/ConvTranspose/MatMul/Gemm nodes inside If/Loop/Scan sub-graphs."""
    out: dict = {}

    def walk(g, inside):
        for n in g.node:
            if inside and n.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm"):
                out[n.op_type] = out.get(n.op_type, 0) + 1
            for sub in _subgraphs(n):
                walk(sub, True)

    walk(graph, False)
    return out


def load_error(model_or_path) -> str | None:
    """None when onnxruntime's CPU provider can create a session for the model, else its first error line."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    src = str(model_or_path) if isinstance(model_or_path, (str, Path)) else model_or_path.SerializeToString()
    try:
        ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        return short_ort_error(e)
    return None


def short_ort_error(exc) -> str:
    """The useful part of an onnxruntime error on one line: the code and what it says, without the file path."""
    import re

    raw = str(exc).strip() or type(exc).__name__
    text = " ".join(raw.split())
    m = re.match(r"\[ONNXRuntimeError\] : \d+ : (\w+) : (.*)", text)
    if not m:
        return raw.splitlines()[0][:240]
    code, rest = m.groups()
    for pattern, meaning in _KNOWN_ORT_ERRORS:
        if re.search(pattern, rest):
            return f"{code} — {meaning}"
    rest = re.sub(r"^Load model from \S+ failed:\s*", "", rest)
    rest = re.sub(r"^This is an invalid model\.\s*", "", rest)
    return f"{code} — {rest}"[:240]


# onnxruntime error texts -> what they mean, in words a user can act on
_KNOWN_ORT_ERRORS = (
    (r"Unrecognized attribute: axis for operator (Deq|Q)uantizeLinear",
     f"DequantizeLinear axis (per-channel) needs opset {PER_CHANNEL_OPSET}"),
    (r"is not a registered function/op", "an operator onnxruntime does not know (custom domain or local function)"),
)


def raise_opset(model, target: int):
    """(converted model, None) or (None, why in one phrase): ``onnx.version_converter`` to ``target``, the
    result checked by loading it in onnxruntime (the converter drops model-local functions, for one)."""
    from onnx import version_converter

    try:
        converted = version_converter.convert_version(model, target)
    except Exception as e:
        first = (" ".join(str(e).split()) or type(e).__name__)[:200]
        return None, f"onnx.version_converter failed ({first})"
    if model.functions and not converted.functions:
        return None, "onnx.version_converter dropped the model's local functions"
    err = load_error(converted)
    if err:
        return None, f"the converted model does not load in onnxruntime ({err})"
    return converted, None


def prepare_graph(src, dst, *, min_opset: int | None = None, infer_shapes: bool = True) -> Prep:
    """Write the quantizable form of ``src`` to ``dst`` (see the module doc) and say what was done.

    ``min_opset``: raise the ai.onnx opset to at least this (13 for per-channel QDQ); when that fails
    the model keeps its opset and ``Prep.opset_error`` says why. ``infer_shapes``: run ONNX shape
    inference (strict off, dynamic dims kept). When nothing changes, ``Prep.path`` is ``src`` itself.
    """
    import onnx

    src, dst = Path(src), Path(dst)
    model = onnx.load(str(src))
    notes, changed = [], False
    weights, others = hoist_constants(model.graph)
    if weights or others:
        changed = True
        if model.ir_version < 4:  # before IR 4 every initializer must also be a graph input
            model.ir_version = 4
        moved = f"{weights} Constant weight{'s' if weights != 1 else ''} moved to initializers" if weights else ""
        rest = f"{others} other Constant tensor{'s' if others != 1 else ''}" if others else ""
        notes.append(moved + (f" (and {rest})" if moved and rest else rest + " moved to initializers" if rest else ""))
    opset = default_opset(model)
    target, opset_error = opset, None
    if min_opset and opset is not None and opset < min_opset:
        converted, opset_error = raise_opset(model, min_opset)
        if converted is not None:
            model, target, changed = converted, min_opset, True
            notes.append(f"opset {opset} -> {min_opset}")
    if infer_shapes:
        try:
            model = onnx.shape_inference.infer_shapes(model, strict_mode=False)
            changed = True
        except Exception:
            notes.append("ONNX shape inference failed: quantized without inferred shapes")
    sub = subgraph_compute(model.graph)
    if not changed:
        return Prep(src, tuple(notes), opset_from=opset, opset_to=opset, subgraph_compute=sub)
    onnx.save(model, str(dst), save_as_external_data=model.ByteSize() > 1_900_000_000)
    return Prep(dst, tuple(notes), weights, others, opset, target, opset_error, sub)


def pre_process(src, dst) -> str:
    """ORT's ``quant_pre_process`` (shape inference + basic optimisation, which also inlines an If whose
    condition is constant): symbolic shape inference first, ONNX's alone when that fails. Returns the note."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .graph_stats import scratch_cwd

    src, dst = Path(src).resolve(), Path(dst).resolve()  # the symbolic pass runs in a scratch directory
    try:
        with scratch_cwd():
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=False, auto_merge=True)
        return ""
    except Exception:  # symbolic inference gives up on some exports (BERT): ONNX's inference alone
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
        return "symbolic shape inference failed: ONNX shape inference only"


def stamp(path, notes) -> None:
    """Record ``notes`` (what prep did, in words) in the model file's metadata, replacing earlier ones."""
    import onnx

    notes = [n for n in notes if n]
    if not notes:
        return
    model = onnx.load(str(path), load_external_data=False)
    props = [p for p in model.metadata_props if p.key != META_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    entry = model.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(list(notes))
    onnx.save(model, str(path))


def read_stamp(model) -> list[str]:
    """The notes :func:`stamp` wrote into ``model`` (a ModelProto), or []."""
    for p in model.metadata_props:
        if p.key == META_KEY:
            try:
                return [str(n) for n in json.loads(p.value)]
            except ValueError:
                return [p.value]
    return []


def float_compute(model) -> tuple[dict, dict]:
    """({op: n} in the main graph, {op: n} inside sub-graphs) of Conv/ConvTranspose/MatMul/Gemm nodes still
    computing in float: their first input is not produced by a DequantizeLinear (QDQ) and they were not
    replaced by an integer kernel (QLinearConv, ConvInteger, ...)."""
    top: dict = {}
    sub: dict = {}

    def walk(g, inside):
        dq = {n.output[0] for n in g.node if n.op_type == "DequantizeLinear" and n.output}
        for n in g.node:
            if n.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm") and n.input and n.input[0] not in dq:
                where = sub if inside else top
                where[n.op_type] = where.get(n.op_type, 0) + 1
            for s in _subgraphs(n):
                walk(s, True)

    walk(model.graph, False)
    return top, sub


def counts_text(counts: dict) -> str:
    """{'Conv': 2, 'MatMul': 1} -> '2 Conv, 1 MatMul'."""
    return ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
