"""What a model file says about its inputs: specs (names, dtypes, symbolic dims) and, for token-id
inputs, the vocabulary size of the embedding table they index -- read from the ONNX graph; which
axis of each input is the batch (:func:`batch_axes`), which axes of an image input are its sides,
and which dims of a measured input were guessed rather than set (:func:`dim_guesses`).

Used by ``workbench bench`` in the parent process (see :mod:`.inputs`); onnx is imported lazily.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import ArtifactError
from ..runtimes.base import InputSpec

# ops a token-id tensor may pass through on its way to the embedding Gather
_PASSTHROUGH = {"Cast", "Unsqueeze", "Squeeze", "Reshape", "Flatten", "Identity", "Expand"}


@dataclass(frozen=True)
class ModelInputs:
    """A model's input specs and, for token-id inputs, the vocabulary size found in the graph."""

    path: str
    specs: tuple[InputSpec, ...]
    vocab: dict  # input name -> (rows of the embedding table, initializer name)

    @property
    def what(self) -> str:
        """The model's file name, for messages."""
        return os.path.basename(self.path)


_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "str",
                9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64"}


def read_model_inputs(path: str, runtime=None) -> ModelInputs:
    """Specs from the ONNX graph (plus vocab sizes); other formats ask the runtime adapter."""
    base = os.path.basename(path)
    if not os.path.isfile(path):
        raise ArtifactError(f"model file {path} not found; give the path of an .onnx file")
    if not path.lower().endswith(".onnx"):
        if runtime is None:
            raise ArtifactError(f"cannot read the inputs of {base}: not an .onnx file; export the model to ONNX")
        session = runtime.load(path, 1)
        return ModelInputs(path, tuple(session.input_specs()), {})
    import onnx

    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:  # DecodeError, truncated file ...
        line = " ".join(str(exc).split())[:200]
        raise ArtifactError(f"cannot read {base}: not a valid ONNX model ({type(exc).__name__}: {line}); "
                            "re-export it or check that the file is complete") from None
    g = model.graph
    if not g.node:
        raise ArtifactError(f"cannot read {base}: the file holds no ONNX graph; re-export it or check that "
                            "it is complete")
    inits = {t.name for t in g.initializer}
    specs = []
    for vi in g.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dtype = _ONNX_DTYPES.get(tt.elem_type)
        if dtype is None:
            raise ArtifactError(f"{base}: input {vi.name!r} has an ONNX type the workbench cannot feed "
                                f"(elem_type {tt.elem_type}); use a model with numeric inputs")
        shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim)
        specs.append(InputSpec(vi.name, shape, dtype))
    return ModelInputs(path, tuple(specs), find_vocab(model))


def find_vocab(model) -> dict:
    """Input name -> (rows, initializer) of the embedding table a ``Gather`` looks its ids up in."""
    from onnx import numpy_helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    producers = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def rows(name: str, depth: int = 0):  # (rows, name) of the table behind ``name``, if it is a constant
        n = producers.get(name)
        if name in inits or (n is not None and n.op_type == "Constant"):
            dims = inits[name].dims if name in inits else next(
                (numpy_helper.to_array(a.t).shape for a in n.attribute if a.name == "value"), ())
            return (int(dims[0]), name) if len(dims) >= 1 else None
        if n is not None and depth < 3 and n.op_type in ("DequantizeLinear", "Cast", "Identity") and n.input:
            return rows(n.input[0], depth + 1)
        return None

    out = {}
    for vi in g.input:
        if vi.name in inits:
            continue
        found, frontier = [], [vi.name]
        for _ in range(4):
            nxt = []
            for t in frontier:
                for n in consumers.get(t, []):
                    axis = next((a.i for a in n.attribute if a.name == "axis"), 0)
                    if n.op_type == "Gather" and len(n.input) >= 2 and n.input[1] == t and axis == 0:
                        r = rows(n.input[0])
                    elif n.op_type == "EmbedLayerNormalization" and len(n.input) > 2 and n.input[0] == t:
                        r = rows(n.input[2])
                    else:
                        r = None
                        if n.op_type in _PASSTHROUGH and n.input and n.input[0] == t:
                            nxt.extend(n.output)
                    if r:
                        found.append(r)
            frontier = nxt
        if found:
            out[vi.name] = min(found)
    return out


# --------------------------------------------------------------------------- batch axes

_SIZE_WORDS = ("seq", "len", "token", "time", "frame", "step", "height", "width", "sample")


def dim_kind(dim) -> str:
    """How a symbolic dim reads: 'batch' (batch/N/B/bs), 'size' (sequence, time, image side ...),
    'unnamed' (``?`` / -1) or 'other' (e.g. an exporter's ``s0``)."""
    if not isinstance(dim, str) or dim == "?":
        return "unnamed"
    n = dim.lower()
    if "batch" in n or n in ("n", "b", "bs"):
        return "batch"
    if any(w in n for w in _SIZE_WORDS) or n in ("h", "w", "t", "l"):
        return "size"
    return "other"


def batch_axes(specs) -> dict:
    """Input name -> the axis that holds the batch, read from the symbolic dims; None for a 0-d input,
    one without a dynamic dim, or one where no dim reads as a batch.

    In order: a dim named like a batch (batch, N, B, bs); a dim name shared by every input that has
    dynamic dims (an exporter's ``s0`` on ``x [s0, 16]`` and ``state [2, s0, 8]``); the only dynamic dim
    that is not named like a size (``state [2, ?, 128]`` -> 1); else a dynamic first dim (axis 0).
    """
    dyn = {s.name: [(i, d) for i, d in enumerate(s.shape) if not (isinstance(d, int) and d > 0)] for s in specs}
    named = [{d for _, d in v if dim_kind(d) == "other"} for v in dyn.values() if v]
    shared = set.intersection(*named) if len(named) > 1 else set()
    out = {}
    for s in specs:
        dims = dyn[s.name]
        axis = next((i for i, d in dims if dim_kind(d) == "batch"), None)
        if axis is None and shared:
            axis = next((i for i, d in dims if d in shared), None)
        if axis is None:
            cand = [i for i, d in dims if dim_kind(d) != "size"]
            if len(cand) == 1 or (cand and cand[0] == 0):
                axis = cand[0]
        out[s.name] = axis
    return out


# --------------------------------------------------------------------------- guessed dims

def image_sides(spec: InputSpec) -> set:
    """Axes of ``spec`` that are the spatial sides of an image: a 4-D float input with 3 channels on
    axis 1 (NCHW -> {2, 3}) or axis 3 (NHWC -> {1, 2}); empty otherwise."""
    if len(spec.shape) != 4 or spec.dtype == "str" or np.dtype(spec.dtype).kind != "f":
        return set()
    if spec.shape[1] == 3:
        return {2, 3}
    return {1, 2} if spec.shape[3] == 3 else set()


@dataclass(frozen=True)
class DimGuess:
    """An input whose non-batch dynamic dims nobody set: the shape it was measured with is a guess."""

    input: str
    shape: tuple
    axes: tuple  # the guessed axes

    @property
    def fix(self) -> str:
        """The option that sets this input's shape: ``--shape x=1x3x224x224``."""
        return f"--shape {self.input}={'x'.join(map(str, self.shape))}"

    @property
    def text(self) -> str:
        """'dims guessed: x 1x3x224x224 — give the real size with --shape x=...'."""
        dims = "x".join(map(str, self.shape))
        return f"dims guessed: {self.input} {dims} — give the real size with --shape {self.input}={dims}"

    def to_json(self) -> dict:
        """The bench row's ``input_guessed`` entry."""
        return {"input": self.input, "shape": list(self.shape), "guessed_axes": list(self.axes), "fix": self.fix,
                "message": self.text}


def dim_guesses(specs, shapes: dict, overrides: dict) -> tuple:
    """The inputs whose dynamic dims other than the batch were defaulted (not set by ``--shape``)."""
    axes = batch_axes(specs)
    out = []
    for s in specs:
        if s.name in overrides:
            continue
        guessed = tuple(i for i, d in enumerate(s.shape) if not (isinstance(d, int) and d > 0)
                        and i != axes.get(s.name) and not (isinstance(d, str) and d in overrides))
        if guessed:
            out.append(DimGuess(s.name, tuple(shapes[s.name]), guessed))
    return tuple(out)
