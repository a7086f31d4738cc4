"""Quantization-aware training (QAT) and quantization-aware distillation (QAD) for ONNX Runtime int8.

The fake quantization simulates EXACTLY the integer grid that the chosen ORT static method
(:mod:`.ort_ptq`) will apply to the exported model, so the weights learn to live on it:
- weights: per output channel (or per tensor) symmetric int8 with the method's range
  (reduce_range=True: [-64, 64], as ORT's 7-bit weights; else [-127, 127]) — the same formula ORT uses,
  on the same tensors, because BatchNorm is folded into the convolutions first (ORT's pre-processing
  folds it too);
- activations: the input of every Conv / Linear, per tensor, asymmetric uint8 (or the method's
  type / symmetry), the range tracked by a moving-average min/max observer, after a calibration pass.
Gradients pass through the rounding (straight-through estimator, PyTorch's fake-quantize ops).

    qmodel = prepare_qat(model, fake_quant_spec(parse_method("static")), sample)  # folds BN, wraps layers
    calibrate(qmodel, x_calib)                                                    # observer ranges
    ... train qmodel (plain QAT: labels; QAD: + the KD loss from a teacher) ...
    float_model = strip_qat(qmodel)   # plain modules holding the fine-tuned weights
    -> export to ONNX -> the SAME ORT static method (calibrated on the same samples) -> deployable int8

The deployable artifact is therefore a standard ORT QDQ model (same graph, same kernels and speed as
post-training quantization of the same student); what QAT changes is the weights. The activation
ranges of the artifact come from ORT's calibration, not from the observers; the card reports how
often the fake-quantized PyTorch model and the int8 artifact agree (top-1), so the simulation gap is
measured, not assumed.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from ..errors import RecipeError

MOMENTUM = 0.01  # moving-average observer update per training batch (PyTorch's default too)


@dataclass(frozen=True)
class FakeQuantSpec:
    """The int8 grid QAT fake-quantizes to, matching the ORT static method it will be exported for (weight and
    activation ranges)."""

    per_channel: bool = True
    weight_qmin: int = -64
    weight_qmax: int = 64
    act_qmin: int = 0
    act_qmax: int = 255
    act_symmetric: bool = False

    def describe(self) -> str:
        """One line for the card: the weight and activation grids."""
        w = f"int{'8' if self.weight_qmax > 64 else '7'} symmetric {'per-channel' if self.per_channel else 'per-tensor'}"
        a = f"[{self.act_qmin}, {self.act_qmax}] {'symmetric' if self.act_symmetric else 'asymmetric'} per-tensor"
        return f"weights {w}, activations {a}"


def fake_quant_spec(method) -> FakeQuantSpec:
    """The integer grid of an ORT static method (see :mod:`.ort_ptq`), for the fake quantization."""
    if method.name != "static":
        raise RecipeError(f"QAT simulates static int8 quantization; got method {method.spec!r}. Use static "
                          "(with its options, e.g. static?per_channel=false): dynamic int8 computes activation "
                          "ranges per input at run time and fp16/int4 are not integer grids QAT trains for")
    o = method.options
    if not o["symmetric_weights"] or o["weight_type"] != "s8":
        raise RecipeError("QAT supports symmetric int8 weights (weight_type=s8, symmetric_weights=true), the "
                          "static method's defaults; drop those options")
    if o["exclude_nodes"] or o["op_types"]:
        raise RecipeError("QAT quantizes every Conv and Linear; drop exclude_nodes / op_types from the method")
    qmax = 64 if o["reduce_range"] else 127
    amin, amax = (0, 255) if o["activation_type"] == "u8" else (-128, 127)
    if o["symmetric_activations"] and o["activation_type"] == "s8":
        amin = -127
    return FakeQuantSpec(bool(o["per_channel"]), -qmax, qmax, amin, amax, bool(o["symmetric_activations"]))


# --------------------------------------------------------------------------- the fake-quant layers

def _weight_fq(w, spec: FakeQuantSpec):
    import torch

    qmax = spec.weight_qmax
    if spec.per_channel:
        amax = w.detach().abs().flatten(1).amax(1).clamp_min(1e-8)
        scale = (amax / qmax).to(torch.float32)
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, spec.weight_qmin, spec.weight_qmax)
    scale = float(w.detach().abs().max().clamp_min(1e-8)) / qmax
    return torch.fake_quantize_per_tensor_affine(w, scale, 0, spec.weight_qmin, spec.weight_qmax)


def act_qparams(lo: float, hi: float, spec: FakeQuantSpec) -> tuple[float, int]:
    """Scale and zero point of an activation range, as ORT computes them (the range always holds 0)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if spec.act_symmetric:
        m = max(abs(lo), abs(hi))
        lo, hi = -m, m
    scale = (hi - lo) / (spec.act_qmax - spec.act_qmin) if hi > lo else 1.0
    if spec.act_symmetric:
        zero = 128 if spec.act_qmin == 0 else 0
    else:
        zero = int(round(spec.act_qmin - lo / scale))
    return float(scale), int(min(max(zero, spec.act_qmin), spec.act_qmax))


def _modules():
    import torch
    import torch.nn.functional as F

    class ActObserver(torch.nn.Module):
        """Tracks the input range (min/max, then a moving average while training) and fake-quantizes."""

        def __init__(self, spec: FakeQuantSpec):
            super().__init__()
            self.spec = spec
            self.register_buffer("lo", torch.tensor(0.0))
            self.register_buffer("hi", torch.tensor(0.0))
            self.register_buffer("seen", torch.tensor(0))
            self.calibrating = False

        def forward(self, x):
            with torch.no_grad():
                lo, hi = x.detach().min(), x.detach().max()
                if self.calibrating or int(self.seen) == 0:
                    first = int(self.seen) == 0
                    self.lo.copy_(lo if first else torch.minimum(self.lo, lo))
                    self.hi.copy_(hi if first else torch.maximum(self.hi, hi))
                    self.seen += 1
                elif self.training:
                    self.lo.mul_(1 - MOMENTUM).add_(MOMENTUM * lo)
                    self.hi.mul_(1 - MOMENTUM).add_(MOMENTUM * hi)
            if self.calibrating:
                return x
            scale, zero = act_qparams(float(self.lo), float(self.hi), self.spec)
            return torch.fake_quantize_per_tensor_affine(x, scale, zero, self.spec.act_qmin, self.spec.act_qmax)

    class QuantConv(torch.nn.Module):
        def __init__(self, inner, spec: FakeQuantSpec):
            super().__init__()
            self.inner, self.spec, self.act = inner, spec, ActObserver(spec)

        def forward(self, x):
            w = _weight_fq(self.inner.weight, self.spec)
            return self.inner._conv_forward(self.act(x), w, self.inner.bias)

    class QuantLinear(torch.nn.Module):
        def __init__(self, inner, spec: FakeQuantSpec):
            super().__init__()
            self.inner, self.spec, self.act = inner, spec, ActObserver(spec)

        def forward(self, x):
            return F.linear(self.act(x), _weight_fq(self.inner.weight, self.spec), self.inner.bias)

    return ActObserver, QuantConv, QuantLinear


_CACHE: dict = {}


def _classes():
    if not _CACHE:
        _CACHE["a"], _CACHE["c"], _CACHE["l"] = _modules()
    return _CACHE["a"], _CACHE["c"], _CACHE["l"]


# --------------------------------------------------------------------------- prepare / calibrate / strip

def fold_batchnorm(model):
    """A copy of ``model`` in eval-mode numerics with every Conv->BatchNorm folded into the Conv
    (torch.fx). Returns (model, folded: bool); models fx cannot trace come back unfolded."""
    import torch
    from torch.fx.experimental.optimization import fuse

    m = copy.deepcopy(model).eval()
    if not any(isinstance(x, torch.nn.modules.batchnorm._BatchNorm) for x in m.modules()):
        return m, True
    try:
        fused = fuse(m, inplace=False)
    except Exception:
        return m, False
    left = any(isinstance(x, torch.nn.modules.batchnorm._BatchNorm) for x in fused.modules())
    return fused, not left


def prepare_qat(model, spec: FakeQuantSpec):
    """A copy of ``model`` with BatchNorm folded and every Conv1d/2d / Linear wrapped in fake quantization.

    Returns (qat_model, info) where info says how many layers were wrapped and whether BN was folded.
    """
    import torch

    _, QuantConv, QuantLinear = _classes()
    m, folded = fold_batchnorm(model)
    wrapped = {"conv": 0, "linear": 0}

    def swap(parent):
        for name, child in list(parent.named_children()):
            if isinstance(child, (torch.nn.Conv1d, torch.nn.Conv2d)):
                setattr(parent, name, QuantConv(child, spec))
                wrapped["conv"] += 1
            elif isinstance(child, torch.nn.Linear):
                setattr(parent, name, QuantLinear(child, spec))
                wrapped["linear"] += 1
            else:
                swap(child)

    swap(m)
    for p in m.parameters():  # folding leaves the new conv biases frozen; QAT trains every weight
        p.requires_grad_(True)
    if not wrapped["conv"] and not wrapped["linear"]:
        raise RecipeError("the student has no Conv or Linear layer for QAT to quantize")
    if isinstance(m, torch.fx.GraphModule):
        m.recompile()
    info = {"wrapped_conv": wrapped["conv"], "wrapped_linear": wrapped["linear"], "batchnorm_folded": folded,
            "grid": spec.describe()}
    return m, info


def _observers(model):
    A, _, _ = _classes()
    return [m for m in model.modules() if isinstance(m, A)]


def calibrate(model, x: np.ndarray, batch_size: int = 256, progress=None) -> None:
    """Set every observer's range to the min/max of its input over ``x`` (no fake quantization meanwhile)."""
    import torch

    obs = _observers(model)
    for o in obs:
        o.calibrating = True
        o.seen.zero_()
    model.eval()
    try:
        with torch.no_grad():
            for s in range(0, len(x), batch_size):
                model(torch.from_numpy(np.ascontiguousarray(x[s:s + batch_size])))
                if progress:
                    progress(min(1.0, (s + batch_size) / len(x)))
    finally:
        for o in obs:
            o.calibrating = False


def strip_qat(model):
    """A copy with every fake-quant wrapper replaced by the float layer it wraps (the trained weights)."""
    import torch

    _, QuantConv, QuantLinear = _classes()
    m = copy.deepcopy(model)

    def swap(parent):
        for name, child in list(parent.named_children()):
            if isinstance(child, (QuantConv, QuantLinear)):
                setattr(parent, name, child.inner)
            else:
                swap(child)

    swap(m)
    if isinstance(m, torch.fx.GraphModule):
        m.recompile()
    return m.eval()
