"""Regenerate tests/golden/losses.npz: fixed inputs and the expected output of every distillation loss.

Run only after an intended change to a loss definition, then review the printed values:

    .venv/bin/python tests/golden/make_losses_golden.py

Keys: ``<case>.<input>`` for inputs (tensors and scalar parameters) and ``out.<case>`` for outputs.
tests/test_losses.py recomputes every case from the stored inputs and also checks each case
against an independent NumPy formula, so a wrong golden file is caught too.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from workbench.distill.losses import (attention_map_loss, attention_transfer_loss, cosine_loss, hidden_mse_loss,
                                      hint_loss, hinton_kd_loss, kd_soft_loss, mean_pool)

OUT = Path(__file__).with_name("losses.npz")
SEED = 20240611


def make_inputs() -> dict[str, np.ndarray]:
    g = torch.Generator().manual_seed(SEED)

    def r(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).numpy()

    def attn(*shape):
        return torch.softmax(torch.randn(*shape, generator=g) * 2, dim=-1).numpy()

    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=np.int64)
    d: dict[str, np.ndarray] = {
        "kd.student": r(4, 10), "kd.teacher": r(4, 10, scale=3.0),
        "kd.labels": np.array([1, 0, 7, 3], dtype=np.int64),
        "kd.temperature": np.array(4.0), "kd.alpha": np.array(0.9),
        # hint: adaptive pooling down (8x8 -> 4x4), bilinear up/mixed (3x4 -> 5x6), token sequences
        "hint_down.student": r(2, 4, 8, 8), "hint_down.teacher": r(2, 6, 4, 4), "hint_down.weight": r(6, 4, 1, 1),
        "hint_up.student": r(2, 4, 3, 4), "hint_up.teacher": r(2, 6, 5, 6), "hint_up.weight": r(6, 4, 1, 1),
        "hint_seq.student": r(2, 5, 8), "hint_seq.teacher": r(2, 5, 12), "hint_seq.weight": r(12, 8),
        # attention transfer: same size, non-divisible pooling down (7x7 -> 3x3, p=3), bilinear up
        "at_same.student": r(2, 4, 6, 6), "at_same.teacher": r(2, 7, 6, 6), "at_same.p": np.array(2.0),
        "at_down.student": r(2, 4, 7, 7), "at_down.teacher": r(2, 6, 3, 3), "at_down.p": np.array(3.0),
        "at_up.student": r(2, 3, 3, 3), "at_up.teacher": r(2, 5, 5, 5), "at_up.p": np.array(2.0),
        # attention maps: same heads with a mask, different heads with a mask, no mask
        "attn_same.student": attn(2, 3, 5, 5), "attn_same.teacher": attn(2, 3, 5, 5), "attn_same.mask": mask,
        "attn_heads.student": attn(2, 2, 5, 5), "attn_heads.teacher": attn(2, 4, 5, 5), "attn_heads.mask": mask,
        "attn_nomask.student": attn(2, 3, 5, 5), "attn_nomask.teacher": attn(2, 3, 5, 5),
        "hidden.student": r(2, 5, 8), "hidden.teacher": r(2, 5, 8), "hidden.mask": mask,
        "hidden_adapt.student": r(2, 5, 8), "hidden_adapt.teacher": r(2, 5, 12), "hidden_adapt.weight": r(12, 8),
        "hidden_adapt.mask": mask,
        "cos_emb.student": r(4, 8), "cos_emb.teacher": r(4, 8),
        "cos_tok.student": r(2, 5, 8), "cos_tok.teacher": r(2, 5, 8), "cos_tok.mask": mask,
        "mean_pool.hidden": r(2, 5, 8), "mean_pool.mask": mask,
    }
    return d


def _conv(w: np.ndarray) -> nn.Module:
    m = nn.Conv2d(w.shape[1], w.shape[0], 1, bias=False)
    m.weight.data = torch.from_numpy(w)
    return m


def _linear(w: np.ndarray) -> nn.Module:
    m = nn.Linear(w.shape[1], w.shape[0], bias=False)
    m.weight.data = torch.from_numpy(w)
    return m


def compute(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    t = {k: torch.from_numpy(np.asarray(v)) for k, v in d.items()}
    f = {k: float(v) for k, v in d.items() if v.ndim == 0}
    out = {
        "kd_soft": kd_soft_loss(t["kd.student"], t["kd.teacher"], f["kd.temperature"]),
        "hinton": hinton_kd_loss(t["kd.student"], t["kd.teacher"], t["kd.labels"], f["kd.temperature"], f["kd.alpha"]),
        "hint_down": hint_loss(t["hint_down.student"], t["hint_down.teacher"], _conv(d["hint_down.weight"])),
        "hint_up": hint_loss(t["hint_up.student"], t["hint_up.teacher"], _conv(d["hint_up.weight"])),
        "hint_seq": hint_loss(t["hint_seq.student"], t["hint_seq.teacher"], _linear(d["hint_seq.weight"])),
    }
    for c in ("at_same", "at_down", "at_up"):
        out[c] = attention_transfer_loss(t[f"{c}.student"], t[f"{c}.teacher"], p=f[f"{c}.p"])
    for c in ("attn_same", "attn_heads"):
        out[c] = attention_map_loss(t[f"{c}.student"], t[f"{c}.teacher"], t[f"{c}.mask"])
    out["attn_nomask"] = attention_map_loss(t["attn_nomask.student"], t["attn_nomask.teacher"])
    out["hidden"] = hidden_mse_loss(t["hidden.student"], t["hidden.teacher"], t["hidden.mask"])
    out["hidden_adapt"] = hidden_mse_loss(t["hidden_adapt.student"], t["hidden_adapt.teacher"], t["hidden_adapt.mask"],
                                          adapter=_linear(d["hidden_adapt.weight"]))
    out["cos_emb"] = cosine_loss(t["cos_emb.student"], t["cos_emb.teacher"])
    out["cos_tok"] = cosine_loss(t["cos_tok.student"], t["cos_tok.teacher"], t["cos_tok.mask"])
    out["mean_pool"] = mean_pool(t["mean_pool.hidden"], t["mean_pool.mask"])
    return {k: v.detach().numpy() for k, v in out.items()}


def main() -> None:
    inputs = make_inputs()
    outputs = compute(inputs)
    arrays = dict(inputs, **{f"out.{k}": v for k, v in outputs.items()})
    np.savez(OUT, **arrays)
    print(f"wrote {OUT} ({len(inputs)} inputs, {len(outputs)} outputs, seed {SEED})")
    for k, v in inputs.items():
        print(f"  input  {k:24s} {v.dtype}{list(v.shape)}" + (f" = {v.item()}" if v.ndim == 0 else ""))
    for k, v in outputs.items():
        shown = repr(float(v)) if v.ndim == 0 else f"{v.dtype}{list(v.shape)} sum={float(v.sum())!r}"
        print(f"  output out.{k:20s} {shown}")


if __name__ == "__main__":
    main()
