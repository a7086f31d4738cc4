"""Where a graph's compute sits: multiply-adds per op type, counted the way real exports are written.

    stats = compute_stats(onnx.load("m.onnx", load_external_data=False))
    stats["macs_by_op"], stats["conv_share"], stats["subgraph_nodes"], stats["constant_weights"]

Weights may be initializers or ``Constant`` nodes (paddle2onnx, older tf2onnx) and compute may sit
inside ``If`` / ``Loop`` / ``Scan`` sub-graphs: both are seen. Shapes come from ONNX shape inference
on a copy whose dynamic input dims are fixed to nominal sizes (batch 1, others :data:`NOMINAL_DIM`), so
a fully dynamic detector still gets MACs; ``assumed`` says which dims were set. A Loop / Scan body is
counted once (its trip count is unknown); both branches of an If are counted. Quantized forms count
too (QLinearConv, ConvInteger, QDQ Conv, MatMulInteger, MatMulNBits ...), so the same numbers describe
an fp32 file and its quantized variants.
"""
from __future__ import annotations

import contextlib

CONV = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3}  # op type -> index of the weight input
CONV_T = {"ConvTranspose": 1}
MATMUL = {"MatMul": 1, "MatMulInteger": 1, "QLinearMatMul": 3, "Gemm": 1, "QGemm": 3, "MatMulNBits": 1,
          "DynamicQuantizeMatMul": 1, "MatMulIntegerToFloat": 1}
FAMILY = {**{k: "conv" for k in (*CONV, *CONV_T)}, **{k: "matmul" for k in MATMUL}, "Attention": "matmul"}
NOMINAL_DIM = 64


def walk(graph, depth: int = 0):
    """(node, depth) for every node of ``graph`` and, depth-first, of its If/Loop/Scan sub-graphs."""
    for n in graph.node:
        yield n, depth
        for a in n.attribute:
            if a.g is not None and (a.g.node or a.g.output):
                yield from walk(a.g, depth + 1)
            for sub in a.graphs:
                yield from walk(sub, depth + 1)


def _graphs(graph):
    yield graph
    for n, _ in walk(graph):
        for a in n.attribute:
            if a.g is not None and (a.g.node or a.g.output):
                yield a.g
            yield from a.graphs


def constant_shapes(model) -> tuple[dict, int]:
    """({name: dims} of every constant tensor: initializers and Constant nodes in every scope,
    number of Constant nodes holding float tensors of more than one element (weights))."""
    shapes, weights = {}, 0
    for g in _graphs(model.graph):
        for t in g.initializer:
            shapes[t.name] = tuple(t.dims)
        for n in g.node:
            if n.op_type != "Constant":
                continue
            t = next((a.t for a in n.attribute if a.name == "value" and a.HasField("t")), None)
            if t is not None and n.output:
                shapes[n.output[0]] = tuple(t.dims)
                size = 1
                for d in t.dims:
                    size *= d
                weights += t.data_type in (1, 10, 11, 16) and size > 1  # float, float16, double, bfloat16
    return shapes, weights


def _fixed_inputs(model) -> tuple[object, list[str]]:
    """A copy of ``model`` with dynamic graph-input dims set to nominal sizes, and what was assumed."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {t.name for t in m.graph.initializer}
    assumed = []
    for vi in m.graph.input:
        if vi.name in inits or not vi.type.HasField("tensor_type"):
            continue
        for i, d in enumerate(vi.type.tensor_type.shape.dim):
            if d.dim_value > 0:
                continue
            size = 1 if i == 0 else NOMINAL_DIM
            assumed.append(f"{vi.name}[{i}]={size}")
            d.Clear()
            d.dim_value = size
    return m, assumed


@contextlib.contextmanager
def scratch_cwd():
    """Run the block in a fresh temporary working directory (removed afterwards).

    onnxruntime's symbolic shape inference, when it gives up, saves ``sym_shape_infer_temp.onnx`` and
    a ``<uuid>.data`` file into the CURRENT directory: a user's folder must not collect them.
    """
    import os
    import tempfile

    old = os.getcwd()
    with tempfile.TemporaryDirectory(prefix=f"workbench-shapes-p{os.getpid()}-") as tmp:
        os.chdir(tmp)
        try:
            yield tmp
        finally:
            os.chdir(old)


def _infer(model):
    """Shapes by onnxruntime's symbolic inference (follows Shape->Reshape chains), else ONNX's."""
    from onnx import shape_inference

    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        with scratch_cwd():
            return SymbolicShapeInference.infer_shapes(model, auto_merge=True, guess_output_rank=True)
    except Exception:  # gives up on some exports (BERT, unknown contrib ops): ONNX's inference
        pass
    for kw in ({"data_prop": True}, {}):
        try:
            return shape_inference.infer_shapes(model, **kw)
        except Exception:
            continue
    return model


def _tensor_shapes(model) -> dict:
    shapes = {}
    for g in _graphs(model.graph):
        for vi in [*g.input, *g.value_info, *g.output]:
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
                dims = vi.type.tensor_type.shape.dim
                shapes[vi.name] = tuple(d.dim_value if d.dim_value > 0 else 1 for d in dims)
    return shapes


def _prod(dims) -> float:
    out = 1.0
    for d in dims:
        out *= float(d)
    return out


def _attr(node, name, default=0):
    return next((a.i for a in node.attribute if a.name == name), default)


def node_macs(n, shapes: dict) -> tuple[float | None, float | None]:
    """(multiply-adds, weight parameters) of one compute node, None where shapes are unknown."""
    if n.op_type in CONV or n.op_type in CONV_T:
        idx = {**CONV, **CONV_T}[n.op_type]
        w = shapes.get(n.input[idx]) if len(n.input) > idx else None
        if not w or len(w) < 3:
            return None, None
        params = _prod(w)
        ref = shapes.get(n.output[0]) if n.op_type in CONV else shapes.get(n.input[0])
        return (_prod(ref) * _prod(w[1:]) if ref else None), params
    if n.op_type in MATMUL:
        idx = MATMUL[n.op_type]
        w = shapes.get(n.input[idx]) if len(n.input) > idx else None
        out, a = shapes.get(n.output[0]), shapes.get(n.input[0])
        if n.op_type == "MatMulNBits":
            k = _attr(n, "K") or None
            return (_prod(out) * k if out and k else None), (float(_attr(n, "N") * k) if k else None)
        if n.op_type in ("Gemm", "QGemm") and a and len(a) >= 2:
            k = a[-2] if _attr(n, "transA") else a[-1]
        else:
            k = a[-1] if a else None
        return (_prod(out) * k if out and k else None), (_prod(w) if w and len(w) == 2 else None)
    return None, None


def compute_stats(model) -> dict:
    """MACs and weight parameters by op type, Conv vs MatMul/Gemm share, node counts (every scope).

    Returns {nodes_by_op, subgraph_nodes (compute ops inside If/Loop/Scan), macs_by_op, params_by_op,
    macs {conv, matmul}, params {conv, matmul}, conv_share, basis (MACs | parameters), assumed (dynamic
    dims fixed for the count), constant_weights (Constant nodes holding weights), weighted_matmuls
    (MatMuls with a constant 2-D weight), nodes, macs_unknown (compute nodes whose shapes stayed unknown,
    left out of the MAC counts)}."""
    consts, constant_weights = constant_shapes(model)
    fixed, assumed = _fixed_inputs(model)
    shapes = {**_tensor_shapes(_infer(fixed)), **consts}
    counts, sub, macs_by_op, params_by_op = {}, {}, {}, {}
    macs, params = {"conv": 0.0, "matmul": 0.0}, {"conv": 0.0, "matmul": 0.0}
    weighted, nodes, unknown = 0, 0, 0
    for n, depth in walk(model.graph):
        nodes += 1
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
        fam = FAMILY.get(n.op_type)
        if fam is None:
            continue
        if depth:
            sub[n.op_type] = sub.get(n.op_type, 0) + 1
        if n.op_type == "MatMul" and len(n.input) > 1 and len(consts.get(n.input[1], ())) == 2:
            weighted += 1
        m, p = node_macs(n, shapes)
        unknown += m is None and n.op_type != "Attention"
        if m:
            macs[fam] += m
            macs_by_op[n.op_type] = macs_by_op.get(n.op_type, 0.0) + m
        if p:
            params[fam] += p
            params_by_op[n.op_type] = params_by_op.get(n.op_type, 0.0) + p
    basis = "MACs" if macs["conv"] + macs["matmul"] > 0 else "parameters"
    src = macs if basis == "MACs" else params
    total = src["conv"] + src["matmul"]
    return {"nodes_by_op": counts, "subgraph_nodes": sub, "macs_by_op": macs_by_op, "params_by_op": params_by_op,
            "macs": macs, "params": params, "conv_share": (src["conv"] / total) if total else 0.0, "basis": basis,
            "assumed": assumed, "constant_weights": constant_weights, "weighted_matmuls": weighted, "nodes": nodes,
            "macs_unknown": unknown}
