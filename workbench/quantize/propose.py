"""Candidate quantization methods for one graph on one CPU, each with a one-line reason (for ``auto``).

    props = propose_candidates("m.onnx", isa, has_calibration=True)
    [(p.method.spec, p.reason) for p in props], props.skipped, props.mix

The graph's op mix decides: conv-heavy graphs get static QDQ (and 8-bit weights as well when the CPU
has VNNI, and QOperator), MatMul-heavy ones dynamic per-channel (QInt8 and QUInt8 weights), static
QDQ (on the MatMuls only in attention graphs, where the mask Add / Softmax ranges break it) and int4
for constant-weight MatMuls. Dynamic int8 never touches Conv (ConvInteger is slower than
fp32 on ORT's CPU provider): with Conv present it is restricted to MatMul/Attention, or dropped.
"""
from __future__ import annotations

from dataclasses import dataclass

from .methods import Method, make_method

CONV_OPS = ("Conv", "ConvTranspose")
MATMUL_OPS = ("MatMul", "Gemm", "Attention")



@dataclass(frozen=True)
class Proposal:
    """One method ``auto`` will try on this graph and CPU, with the reason it was proposed."""

    method: Method
    reason: str


class Proposals(list):
    """A list of Proposal, plus ``skipped`` [(what, why)] and the graph's op ``mix``."""

    def __init__(self, items=(), skipped=(), mix=None):
        super().__init__(items)
        self.skipped = list(skipped)
        self.mix = mix or {}


def graph_mix(onnx_path) -> dict:
    """Counts of compute nodes and the share of multiply-adds in Conv vs MatMul/Gemm (:mod:`.graph_stats`).

    Weights held in ``Constant`` nodes count, and so does compute inside If/Loop/Scan sub-graphs
    (``subgraph_nodes``). MACs come from ONNX shape inference with dynamic input dims fixed to nominal
    sizes (``assumed``); where shapes are unknown the weights' parameter counts stand in.
    ``weighted_matmuls``: MatMuls with a constant 2-D weight (int4).
    """
    import onnx

    from .graph_stats import compute_stats

    st = compute_stats(onnx.load(str(onnx_path), load_external_data=False))
    counts = st["nodes_by_op"]
    return {"conv_nodes": sum(counts.get(o, 0) for o in CONV_OPS), "matmul_nodes": counts.get("MatMul", 0),
            "gemm_nodes": counts.get("Gemm", 0), "attention_nodes": counts.get("Attention", 0),
            "softmax_nodes": counts.get("Softmax", 0), "weighted_matmuls": st["weighted_matmuls"],
            "conv_share": st["conv_share"], "basis": st["basis"], "macs": st["macs"], "nodes": st["nodes"],
            "macs_by_op": st["macs_by_op"], "subgraph_nodes": st["subgraph_nodes"],
            "constant_weights": st["constant_weights"], "assumed": st["assumed"]}


def propose_candidates(onnx_path, isa: dict | None = None, has_calibration: bool = True) -> Proposals:
    """Candidate methods for this graph and CPU, each with a one-line reason (fp32 is always the fallback).

    ``isa``: collect_environment()['isa'] (default: this machine's). Never proposes dynamic int8 on
    Conv: with Conv present, dynamic is restricted to MatMul/Attention, or dropped when there is none.
    """
    if isa is None:
        from ..measure import collect_environment

        isa = collect_environment().get("isa", {})
    from .diagnose import isa_summary

    mix = graph_mix(onnx_path)
    vnni = isa_summary(isa)["int8_dot"]
    conv_heavy = mix["conv_share"] >= 0.5
    sub = mix.get("subgraph_nodes") or {}
    # ORT's static quantizer does not enter sub-graphs (quant_pre_process inlines constant-condition Ifs)
    sub_txt = (f"; {', '.join(f'{v} {k}' for k, v in sorted(sub.items()))} inside If/Loop/Scan sub-graphs, "
               "which static QDQ leaves float unless the If's condition is constant") if sub else ""
    share = f"{mix['conv_share']:.0%} of the {mix['basis']} in Conv{sub_txt}"
    props, skipped = [], []

    def add(method, reason):
        if all(p.method.key != method.key for p in props):
            props.append(Proposal(method, reason))

    matmuls = mix["matmul_nodes"] + mix["attention_nodes"]
    dyn_ops = {"op_types": "MatMul,Attention"} if mix["conv_nodes"] else {}
    if conv_heavy:
        if has_calibration:
            add(make_method("static"), f"conv-heavy graph ({share}): static QDQ runs QLinearConv, ORT's fast int8 "
                                      "path; U8S8 with 7-bit weights (reduce_range) is safe on every x86 CPU")
            if vnni:
                add(make_method("static", reduce_range=False), "this CPU has int8 dot-product instructions (VNNI): "
                    "no int16 saturation, so full 8-bit weights may keep more accuracy at the same speed")
            add(make_method("static", format="qoperator"), "the same as QOperator (QLinearConv nodes in the file): "
                "sometimes faster where ORT cannot fuse every Q/DQ pair")
        else:
            skipped.append(("static", "no calibration data (give --task or --calib)"))
        if matmuls:
            add(make_method("dynamic", per_channel=True, weight_type="s8", **dyn_ops),
                "dynamic int8 on the MatMuls only (Conv stays float: ConvInteger is slower than fp32)")
        else:
            skipped.append(("dynamic", "it would turn Conv into ConvInteger, which has no fast kernel, and there "
                                       "is no MatMul to quantize instead"))
    elif mix["conv_nodes"] + matmuls + mix["gemm_nodes"]:
        what = f"MatMul-heavy graph ({100 - round(100 * mix['conv_share'])}% of the {mix['basis']} in MatMul/Gemm{sub_txt})"
        if matmuls:
            add(make_method("dynamic", per_channel=True, weight_type="s8", **dyn_ops),
                f"{what}: dynamic int8 (DynamicQuantizeMatMul) needs no calibration; per-channel QInt8 weights "
                "keep transformer outputs close to fp32")
            add(make_method("dynamic", per_channel=True, weight_type="u8", **dyn_ops),
                "the same with QUInt8 weights: the other x86 kernel, faster on some CPUs")
        else:
            skipped.append(("dynamic", "ORT's dynamic quantization has no Gemm kernel and the graph has no MatMul"))
        if has_calibration and mix.get("softmax_nodes") and matmuls:
            add(make_method("static", op_types="MatMul,Gemm"), "attention graph: static QDQ on the MatMuls only "
                "(activation ranges from calibration); quantizing the attention-mask Add and Softmax as well (mask "
                "constants near -3.4e38 stretch their ranges) cost a 2-layer BERT's embeddings cosine 0.74 vs 0.98")
        elif has_calibration:
            add(make_method("static"), "static QDQ: activation ranges from calibration, no run-time range computation")
        else:
            skipped.append(("static", "no calibration data (give --task or --calib)"))
        if mix["weighted_matmuls"]:
            add(make_method("int4", block_size=32), f"{mix['weighted_matmuls']} MatMul(s) with constant weights: "
                "4-bit weight blocks (MatMulNBits) cut weight memory ~4x; speed depends on their size")
    else:
        skipped.append(("all", "no Conv, MatMul or Gemm node: nothing worth quantizing"))
    return Proposals(props, skipped, mix)
