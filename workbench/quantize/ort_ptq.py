"""ONNX Runtime post-training quantization: static int8 (QDQ / QOperator), dynamic int8, fp16, int4.

Default options come from measurements on this kind of CPU (x86-64 AVX2, no VNNI;
../shared/FINDINGS.md); see :mod:`.methods` for how options are given and validated.
- static: QDQ, per-channel weights, activations uint8 / weights int8 (U8S8). ORT's default S8S8
  gives no speed-up without VNNI; U8S8 is ~1.9x faster but the AVX2 u8*s8 kernel sums pairs of
  products into int16 and saturates, so weights use 7 bits (reduce_range=True) to stay accurate.
  Calibration: MinMax, Entropy or Percentile, fed in chunks so memory stays bounded.
- dynamic: weights uint8 (QUInt8 ran 1.1x vs fp32 where QInt8 ran 3.6x slower on conv nets).
  On conv nets ORT turns Conv into ConvInteger, which is SLOWER than fp32 on this CPU; the
  workbench measures and reports that instead of hiding it (see :mod:`.diagnose`).
- fp16: weights and activations in float16 with fp32 inputs/outputs; halves the file, but the CPU
  EP has few fp16 kernels, so expect Casts and no speed-up.
- int4: weight-only 4-bit blocks for MatMul with constant weights (ORT's MatMulNBits contrib op);
  for transformers' large weight matrices. Conv nets have no such MatMul: refused with a message.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import QuantizationError
from .calib_data import CALIB_CHUNK, calibration_feeds, model_input_specs  # noqa: F401  (re-exported)
from .calib_data import CalibReader as _CalibReader  # noqa: F401  (per-input sample axes: see calib_data)
from .methods import METHODS, Method, Option
from .ort_logs import quiet  # noqa: F401  (re-exported: callers silence ORT with ort_ptq.quiet)

_TYPES = {"u8": ("QUInt8", "U8"), "s8": ("QInt8", "S8")}
_CALIB = {"minmax": ("MinMax", "MinMax"), "entropy": ("Entropy", "Entropy"), "percentile": ("Percentile", "Percentile")}
_STATIC_OPS = ('Add', 'ArgMax', 'AveragePool', 'BatchNormalization', 'Clip', 'Concat', 'Conv', 'ConvTranspose', 'CumSum',
               'EmbedLayerNormalization', 'Flatten', 'Gather', 'GatherElements', 'Gemm', 'GlobalAveragePool',
               'InstanceNormalization', 'LayerNormalization', 'LeakyRelu', 'MatMul', 'MaxPool', 'Mul', 'Pad', 'Relu',
               'Reshape', 'Resize', 'Sigmoid', 'Slice', 'Softmax', 'Split', 'Squeeze', 'TopK', 'Transpose',
               'Unsqueeze', 'Where')  # onnxruntime.quantization.registry QLinearOpsRegistry | QDQRegistry
_DYNAMIC_OPS = ('Attention', 'Conv', 'EmbedLayerNormalization', 'Gather', 'LSTM', 'MatMul', 'Transpose')


# --------------------------------------------------------------------------- the methods

def _node_lists(path: Path, options: dict, shown: str | None = None) -> tuple[list, list]:
    """(op types, excluded node names) checked against the graph at ``path`` (named ``shown`` in errors)."""
    import onnx

    exclude = list(options.get("exclude_nodes") or ())
    if exclude:
        names = {n.name for n in onnx.load(str(path), load_external_data=False).graph.node}
        unknown = [n for n in exclude if n not in names]
        if unknown:
            sample = ", ".join(sorted(names)[:5])
            raise QuantizationError(f"exclude_nodes names {unknown[0]!r}, which is not a node of {shown or path.name}; "
                                    f"node names look like: {sample}")
    return list(options.get("op_types") or ()), exclude


def _static(src: Path, dst: Path, calib, input_name, progress, options):
    """Static int8 after graph prep (:mod:`.graph_prep`); returns what prep and any retry did, in words.

    Per-channel QDQ needs opset 13: when raising the opset fails, or the per-channel file does not load
    in onnxruntime, it is quantized per-tensor and the notes say why. Conv/MatMul inside If/Loop/Scan
    sub-graphs stay float (ORT's static quantizer does not enter them): noted, or refused when nothing
    else was quantized."""
    import onnx

    from .graph_prep import PER_CHANNEL_OPSET, counts_text, float_compute, load_error, pre_process, prepare_graph

    data = calibration_feeds(src, calib, input_name, options["calib_samples"])
    work, pre = dst.with_name(dst.name + ".prep.onnx"), dst.with_name(dst.name + ".pre.onnx")
    qdq = options["format"] == "qdq"
    fmt = "QDQ" if qdq else "QOperator"
    per_channel = options["per_channel"]
    try:
        prep = prepare_graph(src, work, min_opset=PER_CHANNEL_OPSET if qdq and per_channel else None)
        notes = list(prep.notes)
        if qdq and per_channel and prep.opset_error:
            per_channel = False
            notes.append(f"static per-channel QDQ needs opset {PER_CHANNEL_OPSET} (DequantizeLinear axis) but "
                         f"opset {prep.opset_from} could not be raised: {prep.opset_error}; quantized per-tensor")
        notes.append(pre_process(prep.path, pre))
        op_types, exclude = _node_lists(pre, options, src.name)

        def run(pc: bool):
            extra = {"ActivationSymmetric": options["symmetric_activations"],
                     "WeightSymmetric": options["symmetric_weights"],
                     "CalibStridedMinMax": CALIB_CHUNK}  # ORT's name, but it strides every calibrator's collection
            if options["calibration"] == "percentile":
                extra["CalibPercentile"] = options["percentile"]
            quantize_static(str(pre), str(dst), _CalibReader(data, progress, CALIB_CHUNK),
                            quant_format=QuantFormat.QDQ if qdq else QuantFormat.QOperator,
                            op_types_to_quantize=op_types or None, nodes_to_exclude=exclude or None,
                            per_channel=pc, reduce_range=options["reduce_range"],
                            activation_type=getattr(QuantType, _TYPES[options["activation_type"]][0]),
                            weight_type=getattr(QuantType, _TYPES[options["weight_type"]][0]),
                            calibrate_method=getattr(CalibrationMethod, _CALIB[options["calibration"]][0]),
                            extra_options=extra)

        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        run(per_channel)
        err = load_error(dst)
        if err and per_channel:
            run(False)
            notes.append(f"static per-channel: {err}; retried per-tensor")
            err = load_error(dst)
        if err:
            raise QuantizationError(f"static {fmt} int8 model of {src.name} does not load in onnxruntime: {err}; "
                                    "try --option format=qoperator, --option per_channel=false or --method dynamic")
        top, sub = float_compute(onnx.load(str(dst), load_external_data=False))
        if sub:
            before_top, _ = float_compute(onnx.load(str(pre), load_external_data=False))
            where = "If/Loop/Scan sub-graphs, which ORT's static quantizer does not enter"
            if top == before_top:
                raise QuantizationError(f"static quantization of {src.name} quantized no Conv/MatMul/Gemm: "
                                        f"{counts_text(sub)} sit inside {where}; try --method dynamic (it "
                                        "quantizes MatMul in sub-graphs) or export the model without control flow")
            notes.append(f"{counts_text(sub)} inside {where}, stay float")
        return [n for n in notes if n]
    finally:
        work.unlink(missing_ok=True)
        pre.unlink(missing_ok=True)


def _dynamic(src: Path, dst: Path, calib, input_name, progress, options):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from .graph_prep import prepare_graph

    work = dst.with_name(dst.name + ".prep.onnx")
    try:
        prep = prepare_graph(src, work)  # Constant weights -> initializers (ORT quantizes initializers only)
        op_types, exclude = _node_lists(prep.path, options, src.name)
        quantize_dynamic(str(prep.path), str(dst), weight_type=getattr(QuantType, _TYPES[options["weight_type"]][0]),
                         per_channel=options["per_channel"], reduce_range=options["reduce_range"],
                         op_types_to_quantize=op_types or None, nodes_to_exclude=exclude or None,
                         extra_options={"EnableSubgraph": True} if prep.has_subgraphs else None)
        return list(prep.notes) + (["dynamic quantization entered the If/Loop/Scan sub-graphs"] if prep.has_subgraphs
                                   else [])
    finally:
        work.unlink(missing_ok=True)


def _fp16(src: Path, dst: Path, calib, input_name, progress, options):
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=options["keep_io_types"])
    onnx.save(model, str(dst))


def _int4(src: Path, dst: Path, calib, input_name, progress, options):
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    from .graph_prep import hoist_constants

    _, exclude = _node_lists(src, options)
    model = onnx.load(str(src))
    weights, others = hoist_constants(model.graph)  # MatMulNBits takes constant weights from initializers only
    q = MatMulNBitsQuantizer(model, bits=4, block_size=options["block_size"], is_symmetric=options["symmetric"],
                             accuracy_level=options["accuracy_level"], nodes_to_exclude=exclude,
                             op_types_to_quantize=("MatMul",))
    q.process()
    if not any(n.op_type == "MatMulNBits" for n in q.model.model.graph.node):
        kinds = sorted({n.op_type for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")})
        raise QuantizationError(f"int4 found no MatMul with a constant 2-D weight in {src.name} (it has "
                                f"{', '.join(kinds) or 'no Conv/Gemm/MatMul'}); int4 weight-only suits transformer "
                                "MatMuls — for conv nets use --method static")
    q.model.save_model_to_file(str(dst), use_external_data_format=False)
    return [f"{weights} Constant weights moved to initializers"] if weights else []


# --------------------------------------------------------------------------- describe strings

def _names(label: str, v) -> str:
    return f", {label}: {','.join(v)}" if v else ""


def _describe_static(o: dict) -> str:
    fmt = "QDQ" if o["format"] == "qdq" else "QOperator"
    types = _TYPES[o["activation_type"]][1] + _TYPES[o["weight_type"]][1]
    parts = [f"{types} {'per-channel' if o['per_channel'] else 'per-tensor'}"]
    if o["reduce_range"]:
        parts.append("reduce_range")
    if o["symmetric_activations"]:
        parts.append("symmetric activations")
    if not o["symmetric_weights"]:
        parts.append("asymmetric weights")
    calib = _CALIB[o["calibration"]][1] + " calibration"
    if o["calibration"] == "percentile":
        calib += f" ({o['percentile']:g}th)"
    if o["calib_samples"] is not None:
        calib += f" on {o['calib_samples']} samples"
    parts.append(calib)
    return (f"quantize(ORT static {fmt} int8: {', '.join(parts)}{_names('ops', o['op_types'])}"
            f"{_names('excluding', o['exclude_nodes'])})")


def _describe_dynamic(o: dict) -> str:
    w = "uint8" if o["weight_type"] == "u8" else "int8"
    rr = ", reduce_range" if o["reduce_range"] else ""
    return (f"quantize(ORT dynamic int8: {w} weights, {'per-channel' if o['per_channel'] else 'per-tensor'}{rr}"
            f"{_names('ops', o['op_types'])}{_names('excluding', o['exclude_nodes'])})")


def _describe_fp16(o: dict) -> str:
    return f"quantize(fp16 weights and activations, {'fp32' if o['keep_io_types'] else 'fp16'} I/O)"


def _describe_int4(o: dict) -> str:
    acc = "unset" if o["accuracy_level"] is None else str(o["accuracy_level"])
    return (f"quantize(ORT int4 weight-only MatMulNBits: block {o['block_size']}, "
            f"{'symmetric' if o['symmetric'] else 'asymmetric'}, accuracy_level {acc}"
            f"{_names('excluding', o['exclude_nodes'])})")


def _check_static(o: dict, method: str) -> None:
    from ..errors import RecipeError

    if o["activation_type"] == "s8" and o["weight_type"] == "u8":
        raise RecipeError(f"quantization method {method}: activation_type=s8 with weight_type=u8 is not supported "
                          "by ONNX Runtime; use u8/s8 (fast on x86 without VNNI) or s8/s8")
    bad = [t for t in o["op_types"] if t not in _STATIC_OPS]
    if bad:
        raise RecipeError(f"quantization method {method}: op_types {bad[0]!r} cannot be quantized statically; "
                          f"valid: {', '.join(_STATIC_OPS)}")


def _check_dynamic(o: dict, method: str) -> None:
    from ..errors import RecipeError

    bad = [t for t in o["op_types"] if t not in _DYNAMIC_OPS]
    if bad:
        raise RecipeError(f"quantization method {method}: op_types {bad[0]!r} cannot be quantized dynamically; "
                          f"valid: {', '.join(_DYNAMIC_OPS)}")


_OPS = Option("op_types", "names", (), "operator types to quantize, e.g. Conv,MatMul (empty = every supported type)")
_EXCLUDE = Option("exclude_nodes", "names", (), "node names to leave in float")

STATIC_OPTIONS = (
    Option("format", "choice", "qdq", "graph format: QDQ (Q/DQ pairs, fused by ORT) or QOperator (QLinearConv ...)",
           ("qdq", "qoperator")),
    Option("calibration", "choice", "minmax", "how activation ranges are set from the calibration data",
           ("minmax", "entropy", "percentile")),
    Option("percentile", "float", 99.999, "percentile calibration: the percentile of |x| kept", lo=90.0, hi=100.0),
    Option("calib_samples", "int", None, "calibration samples used, evenly spaced over the data given (none = all)",
           lo=1, optional=True),
    Option("per_channel", "bool", True, "one weight scale per output channel"),
    Option("reduce_range", "bool", True, "7-bit weights: avoids int16 saturation in the AVX2 u8*s8 kernel"),
    Option("symmetric_activations", "bool", False, "symmetric activation ranges (zero point 0)"),
    Option("symmetric_weights", "bool", True, "symmetric weight ranges"),
    Option("activation_type", "choice", "u8", "activation integer type", ("u8", "s8")),
    Option("weight_type", "choice", "s8", "weight integer type", ("s8", "u8")),
    _OPS, _EXCLUDE,
)
DYNAMIC_OPTIONS = (
    Option("per_channel", "bool", False, "one weight scale per output channel"),
    Option("reduce_range", "bool", False, "7-bit weights"),
    Option("weight_type", "choice", "u8", "weight integer type (u8 measured faster than s8 on conv nets here)",
           ("u8", "s8")),
    _OPS, _EXCLUDE,
)
FP16_OPTIONS = (Option("keep_io_types", "bool", True, "keep fp32 model inputs and outputs"),)
INT4_OPTIONS = (
    Option("block_size", "int", 32, "weights per quantization block along K", (16, 32, 64, 128, 256)),
    Option("symmetric", "bool", False, "symmetric 4-bit blocks (no zero points)"),
    Option("accuracy_level", "int", None, "MatMulNBits compute type: 0/none = fp32 activations, 1 fp32, 2 fp16, "
           "3 bf16, 4 int8 (the fast CPU path)", (0, 1, 2, 3, 4), optional=True),
    _EXCLUDE,
)

STATIC = Method("static", "int8", True, _static, STATIC_OPTIONS, describer=_describe_static, check=_check_static)
DYNAMIC = Method("dynamic", "int8", False, _dynamic, DYNAMIC_OPTIONS, describer=_describe_dynamic, check=_check_dynamic)
FP16 = Method("fp16", "fp16", False, _fp16, FP16_OPTIONS, describer=_describe_fp16)
INT4 = Method("int4", "int4", False, _int4, INT4_OPTIONS, describer=_describe_int4)
for _m in (STATIC, DYNAMIC, FP16, INT4):
    METHODS.register(_m.name, _m)
