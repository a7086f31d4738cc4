"""Diagnostics beside every quantized variant: what the graph is, where the time goes, what the CPU
can do, and a plain sentence on why it is (or is not) faster than fp32.

    graph_format(path)            -> {format, label, ops, activation_type, weight_type, weight_bytes, ...}
    quantized_time_share(profile) -> fraction of kernel time in integer / low-bit kernels
    isa_summary(isa)              -> {int8_dot, fast_int8, names, text}
    explain(fmt, isa, ratio, verdict, quant_share) -> one or two sentences
    diagnose(path, profile_ops, isa, ratio, verdict) -> all of it in one dict

The profile is the normalised per-op list of :func:`workbench.measure.profile_ops` (op types as ORT
names them AFTER its graph optimisations: a QDQ Conv runs as QLinearConv, a dynamic MatMul as
DynamicQuantizeMatMul / MatMulIntegerToFloat, an fp16 Conv as an fp32 Conv between Casts).
"""
from __future__ import annotations

from pathlib import Path

# integer / low-bit compute kernels (graph ops and the fused ones ORT's optimiser makes of them)
QUANT_KERNELS = frozenset({
    "QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul", "QLinearAveragePool", "QLinearGlobalAveragePool",
    "QLinearConcat", "QLinearLeakyRelu", "QLinearSigmoid", "QLinearSoftmax", "QLinearReduceMean", "QLinearWhere",
    "QLinearConvTranspose", "QGemm", "QAttention", "QEmbedLayerNormalization", "QOrderedMatMul", "QOrderedGelu",
    "QOrderedLayerNormalization", "QOrderedAttention", "NhwcQLinearConv", "ConvInteger", "MatMulInteger",
    "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "DynamicQuantizeLSTM", "MatMulNBits", "MatMulBnb4",
    "GatherBlockQuantized", "MatMulFpQ4",
})
# conversions between float and integer: overhead, not compute
QUANT_CONVERSIONS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})

_DYNAMIC = ("ConvInteger", "MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
            "DynamicQuantizeLSTM")
_QOPERATOR = tuple(sorted(QUANT_KERNELS - set(_DYNAMIC) - {"MatMulNBits", "MatMulBnb4", "GatherBlockQuantized",
                                                          "MatMulFpQ4"}))
_INT4 = ("MatMulNBits", "MatMulBnb4", "GatherBlockQuantized", "MatMulFpQ4")
_TYPE_SHORT = {"uint8": "U8", "int8": "S8", "uint16": "U16", "int16": "S16", "int4": "S4", "uint4": "U4"}
FORMAT_LABELS = {"qdq": "static int8, QDQ", "qoperator": "static int8, QOperator", "dynamic": "dynamic int8",
                 "int4": "int4 weight-only (MatMulNBits)", "fp16": "fp16", "fp32": "fp32 (not quantized)"}


# --------------------------------------------------------------------------- the graph

def graph_format(onnx_path: str | Path) -> dict:
    """What kind of quantized graph ``onnx_path`` is, from its operators and initializers.

    Also: macs_by_op / conv_share / mac_basis / subgraph_compute / constant_weights (where the compute
    sits, :mod:`.graph_stats`: Constant weights and If/Loop/Scan sub-graphs included) and prep (what the
    graph preparation before quantization did, :mod:`.graph_prep`, from the file's metadata).

    Returns {format: qdq|qoperator|dynamic|int4|fp16|fp32, formats (all found, main first), label,
    ops (counts of the op types that identify formats, plus Cast), nodes, activation_type, weight_type
    (numpy names from Q/DQ zero points and quantized weights), weight_bits (7 when every int8 weight
    fits [-64, 64], the mark of reduce_range), weight_bytes {dtype: bytes; MatMulNBits' packed blocks as
    'int4 (packed)'}, float_compute_ops (Conv/MatMul/Gemm left in float), opset}. Raises ArtifactError
    for a file that is not an ONNX model.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from ..errors import ArtifactError

    path = Path(onnx_path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ArtifactError(f"cannot read {path.name}: not a valid ONNX model ({type(exc).__name__}); "
                            "check the path and that the file is complete") from None
    g = model.graph
    nodes = list(_all_nodes(g))
    counts: dict[str, int] = {}
    for n in nodes:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    inits = {t.name: t for t in g.initializer}
    for n in nodes:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value" and a.t is not None:
                    inits.setdefault(n.output[0], a.t)

    packed = {n.input[1] for n in nodes if n.op_type == "MatMulNBits" and len(n.input) > 1}
    weight_bytes: dict[str, int] = {}
    for t in inits.values():
        dt = "int4 (packed)" if t.name in packed else _dtype_name(t.data_type)
        size = int(np.prod(t.dims)) if len(t.dims) else 1
        nbytes = size // 2 if dt in ("int4", "uint4") else size * _itemsize(dt) if dt != "int4 (packed)" else size
        weight_bytes[dt] = weight_bytes.get(dt, 0) + nbytes

    def zp_type(node, idx):  # dtype of a Q/DQ node's zero point (or of its quantized input)
        if len(node.input) > idx and node.input[idx] in inits:
            return _dtype_name(inits[node.input[idx]].data_type)
        return None

    weight_input = {"DequantizeLinear": 0, "QLinearConv": 3, "QLinearMatMul": 3, "ConvInteger": 1, "MatMulInteger": 1}
    q_weights = [inits[n.input[weight_input[n.op_type]]] for n in nodes if n.op_type in weight_input
                 and len(n.input) > weight_input[n.op_type] and n.input[weight_input[n.op_type]] in inits]
    q_weights = [t for t in q_weights if _dtype_name(t.data_type) in _TYPE_SHORT]  # not the int32 biases
    # the weight type is that of the Conv/MatMul/Gemm weights (QDQ also quantizes Add/Mul constants as activations)
    slot = {n.input[1] for n in nodes if n.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm") and len(n.input) > 1}
    dq_w = [inits[n.input[0]] for n in nodes if n.op_type == "DequantizeLinear" and n.output and n.output[0] in slot
            and n.input[0] in inits]
    w_types = [_dtype_name(t.data_type) for t in (dq_w or q_weights)]
    act_types = [zp_type(n, 2) for n in nodes if n.op_type in ("QuantizeLinear", "QLinearConv", "QLinearMatMul")]

    found = []
    if any(counts.get(o) for o in _INT4):
        found.append("int4")
    if any(counts.get(o) for o in _DYNAMIC):
        found.append("dynamic")
    if any(counts.get(o) for o in _QOPERATOR):
        found.append("qoperator")
    if counts.get("QuantizeLinear") and counts.get("DequantizeLinear") and "qoperator" not in found:
        found.append("qdq")
    elif counts.get("DequantizeLinear") and not found:
        found.append("qdq")  # weight-only QDQ (DequantizeLinear on constant weights)
    fp16_bytes, fp32_bytes = weight_bytes.get("float16", 0), weight_bytes.get("float32", 0)
    if fp16_bytes and fp16_bytes >= fp32_bytes / 2:
        found.append("fp16")
    found = found or ["fp32"]
    main = found[0]
    if "qdq" in found and "dynamic" in found and counts.get("QuantizeLinear", 0) > counts.get("DynamicQuantizeLinear", 0):
        main = "qdq"

    bits = None
    int8_w = [t for t in q_weights if t.data_type == onnx.TensorProto.INT8]
    embedded = [t for t in int8_w if t.data_location != onnx.TensorProto.EXTERNAL]
    if embedded:
        lo = min(int(numpy_helper.to_array(t).min()) for t in embedded)
        hi = max(int(numpy_helper.to_array(t).max()) for t in embedded)
        bits = 7 if lo >= -64 and hi <= 64 else 8  # reduce_range: symmetric [-64, 64] or [-64, 63]

    a = _most(act_types)
    w = _most(w_types)
    label = FORMAT_LABELS[main]
    if main in ("qdq", "qoperator") and a and w:
        label += f" ({_TYPE_SHORT.get(a, a)}{_TYPE_SHORT.get(w, w)})"
    elif main == "dynamic" and w:
        label += f" ({w} weights)"
    ident = {o: counts[o] for o in sorted(counts) if o in QUANT_KERNELS or o in QUANT_CONVERSIONS or o == "Cast"}
    float_compute = {o: counts[o] for o in ("Conv", "MatMul", "Gemm", "ConvTranspose") if counts.get(o)}
    from .graph_prep import read_stamp
    from .graph_stats import compute_stats

    st = compute_stats(model)
    return {"format": main, "formats": found, "label": label, "ops": ident, "float_compute_ops": float_compute,
            "nodes": len(nodes), "activation_type": a, "weight_type": w, "weight_bits": bits,
            "weight_bytes": dict(sorted(weight_bytes.items())), "opset": _opset(model),
            "macs_by_op": st["macs_by_op"], "conv_share": st["conv_share"], "mac_basis": st["basis"],
            "subgraph_compute": st["subgraph_nodes"], "constant_weights": st["constant_weights"],
            "prep": read_stamp(model)}


def _all_nodes(g):
    for n in g.node:
        yield n
        for a in n.attribute:
            if a.g is not None and a.g.node:
                yield from _all_nodes(a.g)
            for sub in a.graphs:
                yield from _all_nodes(sub)


def _dtype_name(elem: int) -> str:
    import onnx

    names = {onnx.TensorProto.INT4: "int4", onnx.TensorProto.UINT4: "uint4", onnx.TensorProto.BFLOAT16: "bfloat16",
             onnx.TensorProto.STRING: "string"}
    if elem in names:
        return names[elem]
    try:
        import numpy as np

        return str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem)))
    except Exception:
        return f"type{elem}"


def _itemsize(dt: str) -> int:
    import numpy as np

    try:
        return np.dtype(dt).itemsize
    except TypeError:
        return 2 if dt == "bfloat16" else 1


def _most(values):
    vals = [v for v in values if v]
    return max(set(vals), key=vals.count) if vals else None


def _opset(model) -> int | None:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


# --------------------------------------------------------------------------- the profile

def quantized_time_share(profile_ops: list[dict] | None) -> float | None:
    """Fraction (0..1) of profiled kernel time spent in integer / low-bit compute kernels (QLinearConv,
    QGemm, ConvInteger, DynamicQuantizeMatMul, MatMulNBits ...); Quantize/DequantizeLinear are
    conversions, not counted (see :func:`conversion_time_share`). None without a profile."""
    return _share(profile_ops, QUANT_KERNELS)


def conversion_time_share(profile_ops: list[dict] | None) -> float | None:
    """Fraction of profiled time in float<->int conversions (QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear)."""
    return _share(profile_ops, QUANT_CONVERSIONS)


def _share(profile_ops, kinds) -> float | None:
    if not profile_ops:
        return None
    total = sum(float(o.get("time_ms", 0.0)) for o in profile_ops)
    if total <= 0:
        return None
    return sum(float(o.get("time_ms", 0.0)) for o in profile_ops if o.get("op_type") in kinds) / total


def top_ops(profile_ops: list[dict] | None, n: int = 3) -> list[str]:
    """'QLinearConv 86%' for the ``n`` largest op types of a normalised profile."""
    rows = sorted(profile_ops or [], key=lambda o: -float(o.get("time_ms", 0.0)))[:n]
    total = sum(float(o.get("time_ms", 0.0)) for o in profile_ops or []) or 1.0
    return [f"{o['op_type']} {100 * float(o.get('time_ms', 0.0)) / total:.0f}%" for o in rows]


# --------------------------------------------------------------------------- the CPU

def isa_summary(isa: dict | None) -> dict:
    """What this CPU offers int8: {int8_dot (VNNI / AMX / Arm dot product), names, text}."""
    isa = isa or {}
    dot = [label for key, label in (("amx_int8", "AMX-INT8"), ("avx512_vnni", "AVX512-VNNI"), ("avx_vnni", "AVX-VNNI"),
                                    ("i8mm", "Arm i8mm"), ("asimddp", "Arm dot-product")) if isa.get(key)]
    wide = [label for key, label in (("avx512f", "AVX-512"), ("avx2", "AVX2")) if isa.get(key)]
    if not isa:
        text = "CPU features unknown"
    elif dot:
        text = f"this CPU has {', '.join(dot)} (int8 dot-product instructions)"
    else:
        text = f"this CPU has {' + '.join(wide) or 'no AVX2'} only, no VNNI or other int8 dot-product instructions"
    return {"int8_dot": bool(dot), "names": dot + wide, "avx512": bool(isa.get("avx512f")), "text": text}


# --------------------------------------------------------------------------- the sentence

def _speed(ratio: float | None, verdict: str | None, ci=None) -> str | None:
    if ratio is None or not verdict:
        return None
    ci_txt = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
    if verdict == "slower":
        return f"{ratio:.2f}x SLOWER than fp32 (ratio {ratio:.2f}{ci_txt})"
    if verdict == "faster":
        return f"{1 / ratio:.2f}x faster than fp32 (ratio {ratio:.2f}{ci_txt})"
    if verdict == "equivalent":
        return f"no speed-up: as fast as fp32 within 2% (ratio {ratio:.2f}{ci_txt})"
    return f"no clear difference from fp32 (ratio {ratio:.2f}{ci_txt}, inconclusive: measure more rounds)"


def explain(fmt, isa: dict | None, ratio_to_fp32: float | None, verdict: str | None,
            quant_share: float | None, ci=None) -> str:
    """One or two plain sentences: what the variant runs as, and why it is or is not faster than fp32.

    ``fmt``: a format name (qdq, qoperator, dynamic, int4, fp16, fp32) or the dict of :func:`graph_format`
    (then op counts and integer types are used); ``isa``: the ``isa`` dict of collect_environment();
    ``ratio_to_fp32``: median(variant) / median(fp32); ``verdict``: faster|slower|equivalent|inconclusive;
    ``quant_share``: :func:`quantized_time_share` of the variant's profile (0..1); ``ci``: the ratio's 95% CI.
    """
    g = fmt if isinstance(fmt, dict) else {"format": str(fmt), "ops": {}}
    kind = g.get("format", "fp32")
    ops = g.get("ops") or {}
    cpu = isa_summary(isa)
    speed = _speed(ratio_to_fp32, verdict, ci)
    share = f"{quant_share:.0%}" if quant_share is not None else None
    slower, faster = verdict == "slower", verdict == "faster"

    if kind == "dynamic":
        if ops.get("ConvInteger"):
            what = (f"dynamic int8 turned {ops['ConvInteger']} Conv into ConvInteger, which has no fast kernel in "
                    "ONNX Runtime's CPU provider (activations are quantized at run time and every conv is rescaled "
                    "in float around an integer GEMM)")
            advice = ("do not ship it; use static QDQ (--method static with calibration data)" if slower else
                      "no gain from it; use static QDQ (--method static)" if not faster else None)
        else:
            what = ("dynamic int8 quantizes MatMul weights ahead of time and activations at run time "
                    "(DynamicQuantizeMatMul); it suits MatMul-heavy transformers")
            advice = "do not ship it; keep fp32 or try static QDQ" if slower else None
        first = what + (f"; {share} of the time is in integer kernels" if share else "")
    elif kind in ("qdq", "qoperator"):
        types = f"{_TYPE_SHORT.get(g.get('activation_type'), '')}{_TYPE_SHORT.get(g.get('weight_type'), '')}"
        name = ("static QDQ" if kind == "qdq" else "static QOperator") + (f" ({types})" if types else "")
        runs = f"{name} runs {share} of the time in int8 kernels" if share else f"{name} int8"
        first = f"{runs} and {cpu['text']}" if isa else runs
        notes = []
        x86 = "avx2" in (isa or {})
        if types == "S8S8" and x86 and not cpu["int8_dot"]:
            notes.append("S8S8 has no fast x86 kernel without VNNI: use activation_type=u8, weight_type=s8, "
                         "reduce_range=true")
        elif types == "U8S8" and x86 and not cpu["int8_dot"] and g.get("weight_bits") == 8:
            notes.append("8-bit U8S8 weights can saturate the int16 sums of the AVX2 kernel: check accuracy or "
                         "set reduce_range=true")
        elif types == "U8S8" and x86 and cpu["int8_dot"] and g.get("weight_bits") == 7 and not slower:
            notes.append("with VNNI the 7-bit weights of reduce_range are not needed: reduce_range=false may "
                         "recover a little accuracy")
        if quant_share is not None and quant_share < 0.5:
            notes.append(f"only {share} of the time is in int8 kernels: float ops and (de)quantize conversions "
                         "cap the gain")
        if kind == "qoperator":
            notes.append("ORT recommends QDQ over QOperator on CPU")
        advice = "; ".join(notes) or None
        if slower:
            advice = "do not ship it" + (f"; {advice}" if advice else "")
    elif kind == "int4":
        n = ops.get("MatMulNBits", 0)
        first = (f"int4 weight-only stores {n or 'the'} MatMul weight(s) as 4-bit blocks unpacked inside MatMulNBits: "
                 "it cuts weight memory, while speed depends on the MatMuls' size and accuracy_level "
                 "(4 = int8 compute, the fast CPU path)")
        advice = "do not ship it for speed; it only saves weight memory" if slower else None
    elif kind == "fp16":
        first = ("fp16 on ONNX Runtime's CPU provider runs fp32 kernels between inserted Casts (it has almost no "
                 "fp16 kernels): no speed-up, only about half the file size")
        advice = ("do not ship it for speed; only the file is smaller" if slower else
                  "ship it only for the smaller file" if not faster else None)
    else:
        first = "no quantized operators in the graph: it runs as fp32"
        advice = None
    if speed is None:
        second = "Not measured: measure it against fp32 before shipping"
    else:
        second = speed[0].upper() + speed[1:]
        if advice:
            second += f" — {advice}"
    return f"{first}. {second}."


def diagnose(onnx_path: str | Path, profile_ops: list[dict] | None = None, isa: dict | None = None,
             ratio: float | None = None, verdict: str | None = None, ci=None) -> dict:
    """Everything about one quantized file: graph format, time shares, ISA and the explanation.

    ``isa`` defaults to this machine's (``collect_environment()['isa']``)."""
    if isa is None:
        from ..measure import collect_environment

        isa = collect_environment().get("isa", {})
    g = graph_format(onnx_path)
    share = quantized_time_share(profile_ops)
    return {"graph": g, "format": g["format"], "label": g["label"],
            "quantized_time_share": share, "conversion_time_share": conversion_time_share(profile_ops),
            "top_ops": top_ops(profile_ops), "isa": isa_summary(isa),
            "ratio_to_fp32": ratio, "ci95": list(ci) if ci else None, "verdict": verdict,
            "prep": g["prep"],
            "explanation": explain(g, isa, ratio, verdict, share, ci) + (
                f" Graph prep: {'; '.join(g['prep'])}." if g["prep"] else "")}
