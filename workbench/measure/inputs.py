"""Inputs for any model a user brings: shapes from ``--shape`` or defaults, arrays per dtype, or
realistic arrays from a task / an .npz file -- each checked against the model's input specs.

Resolution happens in the parent (``workbench bench``), where the graph can be read (to find the
vocabulary size of token-id inputs); the result is an .npz that every worker reads, with the
description of where each input came from stored under ``SOURCE_KEY``. The worker falls back to
:func:`generate_feeds` with defaults when it is given no inputs file at all.

numpy only at import time; the graph is read by :mod:`.model_inputs` (onnx imported lazily).
"""
from __future__ import annotations

import json
import os
import re
import zlib
from dataclasses import dataclass

import numpy as np

from ..errors import ArtifactError, RecipeError
from ..runtimes.base import InputSpec
from .model_inputs import DimGuess, ModelInputs, batch_axes, read_model_inputs  # noqa: F401  (re-exported)
from .model_inputs import dim_guesses, image_sides
from .sizing import check_npz, check_size, shape_fix

SOURCE_KEY = "__workbench_input_source__"  # reserved .npz entry: JSON {input name: description}
SEED = 0
DEFAULT_VOCAB = 1000
IMAGE_SIDE = 224  # unset spatial dims of a 4-D float input with 3 channels (NCHW or NHWC)
SAMPLE_RATE = 16000  # a generated integer input named like a sample rate (sr, sample_rate)
_SHAPE_RE = re.compile(r"^([^=\s]+)=(\d+(?:[xX]\d+)*)$")


# --------------------------------------------------------------------------- --shape

def parse_shapes(items) -> dict[str, tuple[int, ...]]:
    """``["input=1x3x224x224", "batch=1"]`` (or a dict name -> int / dims) -> {name: dims}."""
    if items is None:
        return {}
    pairs = []
    if isinstance(items, dict):
        for name, dims in items.items():
            dims = (dims,) if isinstance(dims, int) else tuple(dims)
            pairs.append((str(name), dims, _opt(name, dims)[8:]))
    else:
        if isinstance(items, str):
            items = [items]
        for text in items:
            m = _SHAPE_RE.match(str(text).strip())
            if not m:
                raise RecipeError(f"--shape expects NAME=DIMxDIM..., got {text!r}; "
                                  "e.g. --shape input=1x3x224x224, or --shape batch=1 for one symbolic dim")
            pairs.append((m.group(1), tuple(int(d) for d in re.split("[xX]", m.group(2))), text))
    out: dict[str, tuple[int, ...]] = {}
    for name, dims, text in pairs:
        if not dims or any(not isinstance(d, int) or isinstance(d, bool) or d < 1 for d in dims):
            raise RecipeError(f"--shape {text}: every dim must be a whole number >= 1")
        if name in out and out[name] != dims:
            raise RecipeError(f"--shape {name} is given twice with different values ({fmt(out[name])} and "
                              f"{fmt(dims)}); give it once")
        out[name] = dims
    return out


def fmt(shape) -> str:
    """``(1, 3)`` -> ``'[1, 3]'`` (``'[]'`` for a 0-d input)."""
    return "[" + ", ".join(str(d) for d in shape) + "]"


def contiguous(arr) -> np.ndarray:
    """``arr`` as a C-contiguous ndarray, copied only when needed; a 0-d array stays 0-d
    (``np.ascontiguousarray`` would make it shape ``(1,)``)."""
    a = np.asarray(arr)
    return a if a.flags.c_contiguous else a.copy(order="C")


def _opt(name: str, dims) -> str:
    return f"--shape {name}={'x'.join(map(str, dims))}"


def default_dim(dim: str) -> tuple[int, str]:
    """(value, why) for a symbolic dim nobody set: batch-like 1, sequence-like 128, image side 224, else 1."""
    n = dim.lower()
    if "batch" in n or n in ("n", "b", "bs"):
        return 1, "batch-like"
    if any(w in n for w in ("seq", "len", "token", "time", "frame", "step")):
        return 128, "sequence-like"
    if "height" in n or "width" in n or n in ("h", "w"):
        return 224, "image-side-like"
    return 1, "unrecognised name"


# --------------------------------------------------------------------------- shapes

def resolve_shapes(specs, overrides: dict, what: str) -> tuple[dict, list[str], set]:
    """Concrete shapes for ``specs``: (name -> dims, notes about defaults, names of overrides used)."""
    by_name = {s.name: s for s in specs}
    dim_names = {d for s in specs for d in s.shape if isinstance(d, str) and d != "?"}
    bindings: dict[str, int] = {}
    used = set()
    for name, dims in overrides.items():
        if name in by_name or name not in dim_names:
            continue
        if len(dims) != 1:
            raise RecipeError(f"{_opt(name, dims)}: {name!r} is a symbolic dim of {what}, not an input; "
                              f"give one value, e.g. --shape {name}={dims[0]}")
        bindings[name] = dims[0]
        used.add(name)
    for name, dims in overrides.items():
        s = by_name.get(name)
        if s is None:
            continue
        used.add(name)
        given = _opt(name, dims)
        if len(dims) != len(s.shape):
            raise RecipeError(f"{given} has {len(dims)} dims but input {name!r} of {what} has {len(s.shape)}: "
                              f"{fmt(s.shape)}; give one value per dim")
        for d, v in zip(s.shape, dims):
            if isinstance(d, int) and d > 0 and d != v:
                raise RecipeError(f"{given} does not fit input {name!r} of {what}, which expects {fmt(s.shape)}: "
                                  "only symbolic dims can change")
            if isinstance(d, str) and d != "?":
                if bindings.get(d, v) != v:
                    raise RecipeError(f"{given} sets dim {d!r} to {v} but it is {bindings[d]} elsewhere; "
                                      "give every input the same size for a shared dim")
                bindings[d] = v
    shapes, notes = {}, []
    for s in specs:
        if s.name in overrides:
            shapes[s.name] = tuple(overrides[s.name])
            continue
        out, sides = [], image_sides(s)
        for i, d in enumerate(s.shape):
            if isinstance(d, int) and d > 0:
                out.append(d)
            elif isinstance(d, str) and d != "?" and d in bindings:
                out.append(bindings[d])
            elif isinstance(d, str) and d != "?":
                v, why = (IMAGE_SIDE, "image-side (4-D float input with 3 channels)") if i in sides else default_dim(d)
                bindings[d] = v
                out.append(v)
                notes.append(f"dim {d!r} -> {v} ({why} default; set it with --shape {d}=N)")
            else:
                v = IMAGE_SIDE if i in sides else 1
                out.append(v)
                notes.append(f"input {s.name!r} dim {i} has no name -> {v}"
                             + (" (image side of a 4-D float input with 3 channels)" if i in sides else "")
                             + f" (set the whole shape with {_opt(s.name, [x if isinstance(x, int) else 'N' for x in s.shape])})")
        shapes[s.name] = tuple(out)
    return shapes, notes, used


# --------------------------------------------------------------------------- generated arrays

def _rng(name: str):
    return np.random.default_rng([SEED, zlib.crc32(name.encode())])  # same array whatever the input order


def generate(spec: InputSpec, shape: tuple, vocab=None, fix: str | None = None) -> tuple[np.ndarray, str]:
    """One generated input and a description of it (float: normal; ids: in range; masks: ones; an
    integer named like a sample rate: 16000 ...). Sized first: RecipeError (``fix`` or --shape) if the
    array would take more than the allowed share of free memory (:mod:`.sizing`)."""
    name, low = spec.name, spec.name.lower()
    if spec.dtype == "str":
        raise ArtifactError(f"cannot generate input {name!r}: it is a string tensor; pass --inputs X.npz "
                            f"with an array named {name}")
    dt = np.dtype(spec.dtype)
    check_size(name, shape, dt, fix or shape_fix(spec, shape))
    what = f"{name} {dt}"
    if dt.kind == "f":
        return _rng(name).standard_normal(shape).astype(dt), f"{what} standard normal (seed {SEED})"
    if dt.kind == "b":
        return np.ones(shape, dtype=dt), f"{what} all True"
    if "mask" in low:
        return np.ones(shape, dtype=dt), f"{what} ones"
    if "token_type" in low or "segment" in low:
        return np.zeros(shape, dtype=dt), f"{what} zeros"
    if low in ("sr", "sample_rate", "sampling_rate") and dt.kind in "iu":
        return np.full(shape, SAMPLE_RATE, dtype=dt), f"{what} {SAMPLE_RATE} (named like a sample rate)"
    if "position" in low and shape:
        return np.broadcast_to(np.arange(shape[-1], dtype=dt), shape).copy(), f"{what} 0..{shape[-1] - 1} along the last dim"
    if vocab is not None or "ids" in low or "token" in low:
        if vocab is not None:
            n, why = vocab[0], f"vocab from Gather {vocab[1]!r}"
        else:
            n, why = DEFAULT_VOCAB, f"no embedding Gather found: vocab assumed {DEFAULT_VOCAB}; pass --inputs for real ids"
        n = min(n, int(np.iinfo(dt).max) + 1)
        return _rng(name).integers(0, n, size=shape, dtype=dt), f"{what} token ids in [0, {n}) ({why})"
    return np.zeros(shape, dtype=dt), f"{what} zeros"


def generate_feeds(specs, shapes: dict | None = None, vocab: dict | None = None) -> tuple[dict, dict, list[str]]:
    """(feeds, sources, notes) for ``specs``; shapes default per :func:`default_dim`."""
    notes: list[str] = []
    if shapes is None:
        shapes, notes, _ = resolve_shapes(specs, {}, "the model")
    feeds, sources = {}, {}
    for s in specs:
        feeds[s.name], desc = generate(s, tuple(shapes[s.name]), (vocab or {}).get(s.name))
        sources[s.name] = f"generated: {desc}"
    return feeds, sources, notes


# --------------------------------------------------------------------------- task and .npz

def task_feeds(task, specs, overrides: dict, what: str) -> tuple[dict, dict, list[str], set]:
    """The first test example(s) of ``task`` as the single input of the model."""
    sample = tuple(task.sample_shape)
    gives = f"--task {task.name} gives one input of shape {fmt((1, *sample))}"
    if len(specs) != 1:
        raise RecipeError(f"{gives} but {what} has {len(specs)} inputs ({', '.join(s.name for s in specs)}); "
                          "pass --inputs X.npz instead")
    s = specs[0]
    if s.dtype == "str" or np.dtype(s.dtype).kind != "f":
        raise RecipeError(f"{gives} (float32) but input {s.name!r} of {what} is {s.dtype}; pass --inputs X.npz instead")
    if len(s.shape) != len(sample) + 1 or any(isinstance(d, int) and d > 0 and d != v for d, v in zip(s.shape[1:], sample)):
        raise RecipeError(f"{gives} but input {s.name!r} of {what} expects {fmt(s.shape)}; "
                          "use the model's own task or pass --inputs X.npz")
    used, first = set(), s.shape[0]
    if s.name in overrides:
        dims = overrides[s.name]
        used.add(s.name)
        if tuple(dims[1:]) != sample or len(dims) != len(sample) + 1:
            raise RecipeError(f"{_opt(s.name, dims)} does not fit --task {task.name}, whose examples are "
                              f"{fmt(sample)}; only the batch can change, e.g. {_opt(s.name, (8, *sample))}")
        batch = dims[0]
    elif isinstance(first, str) and first in overrides and first != "?":
        batch = overrides[first][0]
        used.add(first)
    else:
        batch = first if isinstance(first, int) and first > 0 else 1
    if isinstance(first, int) and first > 0 and batch != first:
        raise RecipeError(f"input {s.name!r} of {what} has a fixed batch of {first}; --shape cannot set {batch}")
    n = len(task.x_test)
    if batch > n:
        raise RecipeError(f"batch {batch} exceeds the {n} test examples of --task {task.name}; choose a batch <= {n}")
    arr = contiguous(task.x_test[:batch]).astype(s.dtype)
    which = "example 0" if batch == 1 else f"examples 0..{batch - 1}"
    return {s.name: arr}, {s.name: f"task {task.name}: test split {which}, {s.name} {arr.dtype} {fmt(arr.shape)}"}, [], used


def load_npz(path: str) -> dict:
    """Arrays of an .npz file (name -> array, 0-d arrays kept 0-d); ArtifactError if it cannot be read
    or holds an array too big for the memory available (checked from the headers, before loading)."""
    base = os.path.basename(path)
    if not os.path.isfile(path):
        raise ArtifactError(f"inputs file {path} not found; write it with numpy.savez(path, input_name=array) "
                            "or omit it to generate inputs")
    check_npz(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:  # not a zip, pickled objects, truncated ...
        line = " ".join(str(exc).split())[:200]
        raise ArtifactError(f"cannot read inputs file {base}: {line}; "
                            "write it with numpy.savez(path, input_name=array)") from None


def npz_feeds(path: str, specs, overrides: dict, what: str) -> tuple[dict, dict, list[str], set]:
    """The model's inputs from a user's .npz, checked for names, dtypes and shapes."""
    base = os.path.basename(path)
    raw = load_npz(path)
    have = ", ".join(k for k in raw if k != SOURCE_KEY) or "nothing"
    feeds, sources, notes, used, dims_seen = {}, {}, [], set(), {}
    for s in specs:
        if s.name not in raw:
            raise ArtifactError(f"inputs file {base} has no array {s.name!r}, an input of {what} "
                                f"(expected shape {fmt(s.shape)}, {s.dtype}; the file has: {have}); "
                                f"add it with numpy.savez(path, {s.name}=array)")
        arr = raw[s.name]
        if s.dtype != "str" and arr.dtype != np.dtype(s.dtype):
            if not np.can_cast(arr.dtype, np.dtype(s.dtype), casting="same_kind"):
                raise ArtifactError(f"input {s.name!r} in {base} is {arr.dtype} but {what} expects {s.dtype} "
                                    f"(shape {fmt(s.shape)}); save it as {s.dtype}")
            notes.append(f"{s.name}: {arr.dtype} cast to {s.dtype}")
            arr = arr.astype(s.dtype)
        if len(arr.shape) != len(s.shape) or any(isinstance(d, int) and d > 0 and d != a
                                                 for d, a in zip(s.shape, arr.shape)):
            raise ArtifactError(f"input {s.name!r} in {base} has shape {fmt(arr.shape)} but {what} expects "
                                f"{fmt(s.shape)}; save an array of that shape (symbolic dims may take any size)")
        if s.name in overrides and tuple(overrides[s.name]) != arr.shape:
            raise RecipeError(f"{_opt(s.name, overrides[s.name])} disagrees with {base}, which has "
                              f"{fmt(arr.shape)}; drop --shape or change the file")
        for d, a in zip(s.shape, arr.shape):
            if isinstance(d, str) and d != "?":
                prev = dims_seen.setdefault(d, (a, s.name))
                if prev[0] != a:
                    raise ArtifactError(f"inputs in {base} disagree on dim {d!r} of {what}: {prev[0]} in "
                                        f"{prev[1]!r} but {a} in {s.name!r}; save arrays of matching sizes")
                if d in overrides and overrides[d] != (a,):
                    raise RecipeError(f"--shape {d}={overrides[d][0]} disagrees with {base}, where {d!r} is {a}; "
                                      "drop --shape or change the file")
                if d in overrides:
                    used.add(d)
        used.update({s.name} & set(overrides))
        feeds[s.name] = contiguous(arr)
        sources[s.name] = f"file {base}: {s.name} {arr.dtype} {fmt(arr.shape)}"
    return feeds, sources, notes, used


# --------------------------------------------------------------------------- the plan for one model

@dataclass(frozen=True)
class ResolvedInputs:
    """The arrays one model is measured with, where each came from, and what was assumed."""

    model: ModelInputs
    feeds: dict
    sources: dict  # input name -> description
    notes: tuple[str, ...]
    used: frozenset  # --shape names this model consumed
    defaulted: bool  # some shape or vocab was a default guess
    guessed: tuple = ()  # DimGuess per input whose non-batch dynamic dims were guessed

    def lines(self) -> list[str]:
        """What the inputs are, one line each, then the notes about defaults."""
        return [self.sources[s.name] for s in self.model.specs] + [f"note: {n}" for n in self.notes]


def resolve_inputs(model: ModelInputs, overrides: dict, npz: str | None = None, task=None) -> ResolvedInputs:
    """Inputs for ``model``: from an .npz, from a task, or generated per dtype with fixed seeds."""
    specs, what = list(model.specs), model.what
    if npz is not None:
        feeds, sources, notes, used = npz_feeds(npz, specs, overrides, what)
    elif task is not None:
        feeds, sources, notes, used = task_feeds(task, specs, overrides, what)
    else:
        shapes, notes, used = resolve_shapes(specs, overrides, what)
        feeds, sources, _ = generate_feeds(specs, shapes, model.vocab)
        notes = list(notes) + [f"{s.name}: no embedding table found in the graph; token ids drawn from "
                               f"[0, {DEFAULT_VOCAB})" for s in specs if "vocab assumed" in sources[s.name]]
        return ResolvedInputs(model, feeds, sources, tuple(notes), frozenset(used), bool(notes),
                              dim_guesses(specs, shapes, overrides))
    return ResolvedInputs(model, feeds, sources, tuple(notes), frozenset(used), False)


def write_npz(path: str, feeds: dict, sources: dict) -> str:
    """Save ``feeds`` with their descriptions (read back by the worker's make_feeds)."""
    np.savez(path, **feeds, **{SOURCE_KEY: np.array(json.dumps(sources))})
    return path


def describe(sources: dict, names) -> str:
    """One line for a measurement's ``input.source``: 'generated: a ...; b ...' or per-input origins."""
    parts = [sources.get(n, "?") for n in names]
    if parts and all(p.startswith("generated: ") for p in parts):
        return "generated: " + "; ".join(p[len("generated: "):] for p in parts)
    return "; ".join(parts)
