"""Distillation losses of dense prediction (per-pixel maps; workbench.pipeline.families.dense).

- ``pixel_kd_loss``: Hinton's soft-target loss applied at every pixel: the [B, C, H, W] logits are read as
  B*H*W examples of C classes, ``T^2 * KL(softmax(teacher / T) || softmax(student / T))`` averaged over pixels
  (workbench.distill.losses.kd_soft_loss on the flattened maps).
- ``hint_loss``: FitNets' feature hint on the neck: MSE between a 1x1-conv adapter of the student's bottleneck
  and the teacher's bottleneck (bilinearly resized when their sizes differ).
- ``dense_loss``: alpha * pixel KD + (1 - alpha) * per-pixel cross-entropy with the true mask + beta * hint;
  the labels-only twin is the cross-entropy alone.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .losses import kd_soft_loss


def _flat(logits: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B*H*W, C]."""
    return logits.permute(0, 2, 3, 1).reshape(-1, logits.shape[1])


def pixel_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-pixel Hinton KD of [B, C, H, W] logit maps, averaged over pixels (see the module docstring)."""
    return kd_soft_loss(_flat(student_logits), _flat(teacher_logits), temperature)


def hint_loss(adapter, student_neck: torch.Tensor, teacher_neck: torch.Tensor) -> torch.Tensor:
    """MSE of ``adapter(student_neck)`` (a 1x1 conv to the teacher's channels) to ``teacher_neck``."""
    s = adapter(student_neck)
    if s.shape[-2:] != teacher_neck.shape[-2:]:
        s = F.interpolate(s, size=teacher_neck.shape[-2:], mode="bilinear", align_corners=False)
    return F.mse_loss(s, teacher_neck)


def dense_loss(student_logits, masks, *, teacher_logits=None, temperature: float = 1.0, alpha: float = 0.5,
               hint=None, beta: float = 0.0) -> torch.Tensor:
    """The training loss of one batch: cross-entropy with ``masks`` [B, H, W] (int64) alone (the twin), or
    mixed with per-pixel KD (``teacher_logits``) and, with ``hint`` = (adapter, student_neck, teacher_neck)
    and ``beta`` > 0, the neck's feature hint."""
    ce = F.cross_entropy(student_logits, masks)
    if teacher_logits is None:
        return ce
    loss = alpha * pixel_kd_loss(student_logits, teacher_logits, temperature) + (1.0 - alpha) * ce
    if hint is not None and beta > 0:
        loss = loss + beta * hint_loss(*hint)
    return loss
