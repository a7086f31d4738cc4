"""Distillation losses.

Every loss takes torch tensors (student first, teacher second), returns a differentiable scalar
tensor and says which paper it comes from. Shape problems that come from a recipe (a layer whose
features cannot be matched) raise :class:`~workbench.errors.RecipeError`.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import RecipeError

# log(0) guard for probabilities (float32 can represent it; log(1e-12) ~ -27.6)
_EPS = 1e-12


# ---------------------------------------------------------------- logits
def kd_soft_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network": soft-target loss.

    ``T^2 * KL(softmax(teacher / T) || softmax(student / T))`` over the class dim (1), summed over
    classes and averaged over the batch ("batchmean"). The T^2 factor keeps the gradients' scale
    independent of the temperature.
    """
    t = float(temperature)
    return F.kl_div(F.log_softmax(student_logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
                    reduction="batchmean", log_target=True) * (t * t)


def hinton_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                   temperature: float, alpha: float) -> torch.Tensor:
    """Hinton et al. 2015: alpha * T^2 * KL(p_teacher^T || p_student^T) + (1 - alpha) * CE(student, labels).

    ``alpha`` weights the soft-target term (the usual convention; torchdistill's KDLoss uses the opposite).
    The T^2 factor keeps the soft-target gradients' scale independent of the temperature.
    """
    soft = kd_soft_loss(student_logits, teacher_logits, temperature)
    hard = F.cross_entropy(student_logits, labels)
    return alpha * soft + (1.0 - alpha) * hard


# ---------------------------------------------------------------- helpers
def _check_batch(name: str, a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape[0] != b.shape[0]:
        raise RecipeError(f"{name}: student batch size {a.shape[0]} != teacher batch size {b.shape[0]}; "
                          f"feed the same examples to both models")


def _resize_spatial(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resize the last two dims of a (B, C, H, W) tensor to ``size``.

    Shrinking (both dims >= target) uses adaptive average pooling; anything else (growing, or one dim
    up and one down) uses bilinear interpolation (align_corners=False).
    """
    h, w = int(size[0]), int(size[1])
    if tuple(x.shape[-2:]) == (h, w):
        return x
    if x.shape[-2] >= h and x.shape[-1] >= w:
        return F.adaptive_avg_pool2d(x, (h, w))
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)


def _masked_mean(values: torch.Tensor, attention_mask: torch.Tensor | None, what: str) -> torch.Tensor:
    """Mean of ``values`` (B, L, ...) over all entries, or over real tokens (mask (B, L), 1 = real)."""
    if attention_mask is None:
        return values.mean()
    mask = attention_mask.to(device=values.device, dtype=values.dtype)
    if tuple(mask.shape) != tuple(values.shape[:2]):
        raise RecipeError(f"{what}: attention_mask has shape {tuple(mask.shape)} but the features need "
                          f"(batch, length) = {tuple(values.shape[:2])}; pass the tokenizer's attention_mask")
    mask = mask.reshape(mask.shape + (1,) * (values.dim() - 2))
    per_token = values[0, 0].numel() if values.dim() > 2 else 1
    return (values * mask).sum() / (mask.sum() * per_token).clamp_min(1.0)


# ---------------------------------------------------------------- intermediate features
def make_adapter(student_shape: Sequence[int], teacher_shape: Sequence[int]) -> nn.Module:
    """Trainable regressor mapping student features onto the teacher's, as in FitNets (Romero et al. 2015).

    Shapes exclude the batch dim. Conv maps (C, H, W) get a 1x1 ``Conv2d(Cs, Ct, bias=False)``;
    vectors (D,) and token sequences (L, D) get ``Linear(Ds, Dt, bias=False)``; equal channel dims give
    ``nn.Identity``. Weights use Kaiming-normal init with gain 1 (fan-in), which keeps the features' scale.
    Spatial sizes may differ (:func:`hint_loss` resizes); ranks must agree.
    """
    s, t = tuple(int(d) for d in student_shape), tuple(int(d) for d in teacher_shape)
    if len(s) != len(t) or len(s) not in (1, 2, 3):
        raise RecipeError(f"cannot adapt student features of shape {s} to teacher features of shape {t} "
                          f"(shapes without batch); pair conv maps (C, H, W) with conv maps and vectors (D,) "
                          f"or sequences (L, D) with the same rank")
    if len(s) == 2 and s[0] != t[0]:
        raise RecipeError(f"cannot adapt student sequence features {s} to teacher {t}: sequence lengths "
                          f"{s[0]} != {t[0]}; use the same tokenizer/padding for student and teacher")
    cs, ct = (s[0], t[0]) if len(s) == 3 else (s[-1], t[-1])
    if cs == ct:
        return nn.Identity()
    layer: nn.Module
    if len(s) == 3:
        layer = nn.Conv2d(cs, ct, kernel_size=1, bias=False)
    else:
        layer = nn.Linear(cs, ct, bias=False)
    nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="linear")
    return layer


def hint_loss(student_feat: torch.Tensor, teacher_feat: torch.Tensor,
              adapter: nn.Module | None = None) -> torch.Tensor:
    """FitNets hint loss (Romero et al. 2015, "FitNets: Hints for Thin Deep Nets"): MSE(adapter(s), t).

    ``adapter`` (see :func:`make_adapter`) maps the student's channels to the teacher's; ``None`` means
    identity. For 4-D maps whose spatial sizes still differ, the student map is resized to the
    teacher's H x W (adaptive average pooling when larger, bilinear interpolation when smaller).
    The mean is over all elements.
    """
    _check_batch("hint_loss", student_feat, teacher_feat)
    s = adapter(student_feat) if adapter is not None else student_feat
    if s.dim() == 4 and teacher_feat.dim() == 4 and s.shape[1] == teacher_feat.shape[1]:
        s = _resize_spatial(s, teacher_feat.shape[-2:])
    if s.shape != teacher_feat.shape:
        raise RecipeError(f"hint_loss: student features {tuple(s.shape)} (after the adapter) do not match "
                          f"teacher features {tuple(teacher_feat.shape)}; build an adapter with "
                          f"make_adapter(student_shape, teacher_shape)")
    return F.mse_loss(s, teacher_feat)


def _attention_map(x: torch.Tensor, p: float, size: Sequence[int] | None) -> torch.Tensor:
    a = x.abs().pow(p).mean(dim=1, keepdim=True)  # (B, 1, H, W)
    if size is not None:
        a = _resize_spatial(a, size)
    return F.normalize(a.flatten(1), dim=1)


def attention_transfer_loss(student_feat: torch.Tensor, teacher_feat: torch.Tensor, p: float = 2) -> torch.Tensor:
    """Activation-based attention transfer (Zagoruyko & Komodakis 2017, "Paying More Attention to Attention").

    Each (B, C, H, W) map becomes ``q = normalize(flatten(mean_c |a|^p))`` (L2 per example); the loss is
    ``(q_s - q_t)^2`` averaged over batch and positions, as in the authors' reference code
    ``(at(x) - at(y)).pow(2).mean()``. Channel counts may differ; if the spatial sizes differ, the
    student's map is resized to the teacher's H x W before flattening. Invariant to positive scaling.
    """
    for who, f in (("student", student_feat), ("teacher", teacher_feat)):
        if f.dim() != 4:
            raise RecipeError(f"attention_transfer_loss needs 4-D (batch, channels, H, W) conv features; the "
                              f"{who}'s have shape {tuple(f.shape)}; tap convolutional layers instead")
    _check_batch("attention_transfer_loss", student_feat, teacher_feat)
    q_s = _attention_map(student_feat, p, teacher_feat.shape[-2:])
    q_t = _attention_map(teacher_feat, p, None)
    return (q_s - q_t).pow(2).mean()


# ---------------------------------------------------------------- transformers
def attention_map_loss(student_attn: torch.Tensor, teacher_attn: torch.Tensor,
                       attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Self-attention distribution transfer (MiniLM, Wang et al. 2020): KL(teacher || student).

    Inputs are attention probabilities (B, heads, L, L) as returned by HF ``output_attentions=True``
    (each query row already softmaxed). When the head counts differ, both sides are first averaged
    over heads. The KL is summed over keys and averaged over batch, heads and query rows; with
    ``attention_mask`` (B, L), 1 = real token, padded query rows are left out of the mean.
    Student probabilities are clamped at 1e-12 before the log; 0 * log 0 counts as 0.
    """
    for who, a in (("student", student_attn), ("teacher", teacher_attn)):
        if a.dim() != 4 or a.shape[-1] != a.shape[-2]:
            raise RecipeError(f"attention_map_loss needs (batch, heads, L, L) attention probabilities; the "
                              f"{who}'s have shape {tuple(a.shape)}; run the model with output_attentions=True")
    _check_batch("attention_map_loss", student_attn, teacher_attn)
    if student_attn.shape[-1] != teacher_attn.shape[-1]:
        raise RecipeError(f"attention_map_loss: sequence lengths differ (student {student_attn.shape[-1]}, "
                          f"teacher {teacher_attn.shape[-1]}); tokenize both with the same padding")
    s, t = student_attn, teacher_attn
    if s.shape[1] != t.shape[1]:
        s, t = s.mean(dim=1, keepdim=True), t.mean(dim=1, keepdim=True)
    kl = (torch.xlogy(t, t) - t * torch.log(s.clamp_min(_EPS))).sum(dim=-1)  # (B, H, L)
    return _masked_mean(kl.transpose(1, 2), attention_mask, "attention_map_loss")  # (B, L, H)


def hidden_mse_loss(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor,
                    attention_mask: torch.Tensor | None = None, adapter: nn.Module | None = None) -> torch.Tensor:
    """Hidden-state MSE (TinyBERT, Jiao et al. 2020): MSE(adapter(h_s), h_t) for (B, L, D) states.

    ``adapter`` (e.g. ``make_adapter((L, Ds), (L, Dt))``) maps the student's width to the teacher's.
    The mean is over all elements, or over real tokens (and all D) when ``attention_mask`` (B, L) is given.
    """
    _check_batch("hidden_mse_loss", student_hidden, teacher_hidden)
    s = adapter(student_hidden) if adapter is not None else student_hidden
    if s.shape != teacher_hidden.shape:
        raise RecipeError(f"hidden_mse_loss: student hidden states {tuple(s.shape)} (after the adapter) do not "
                          f"match the teacher's {tuple(teacher_hidden.shape)}; build an adapter with "
                          f"make_adapter(student_shape, teacher_shape)")
    return _masked_mean((s - teacher_hidden).pow(2), attention_mask, "hidden_mse_loss")


def cosine_loss(student: torch.Tensor, teacher: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Cosine embedding loss, 1 - cos(s, t) along the last dim (as in DistilBERT, Sanh et al. 2019).

    Averaged over rows for (B, D) embeddings, or over tokens for (B, L, D) states (real tokens only
    when ``attention_mask`` (B, L) is given).
    """
    _check_batch("cosine_loss", student, teacher)
    if student.shape != teacher.shape:
        raise RecipeError(f"cosine_loss: student {tuple(student.shape)} and teacher {tuple(teacher.shape)} "
                          f"shapes differ; map the student with make_adapter first")
    dist = 1.0 - F.cosine_similarity(student, teacher, dim=-1, eps=1e-8)
    if attention_mask is not None and dist.dim() < 2:
        raise RecipeError("cosine_loss: attention_mask only applies to (batch, length, dim) token states; "
                          "drop it for (batch, dim) embeddings")
    return _masked_mean(dist, attention_mask, "cosine_loss")


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Sentence-transformers mean pooling (Reimers & Gurevych 2019): (B, L, D) -> (B, D).

    Sum of the real tokens' states divided by their count (at least 1e-9); a plain mean over L when
    ``attention_mask`` is None.
    """
    if attention_mask is None:
        return hidden.mean(dim=1)
    mask = attention_mask.to(device=hidden.device, dtype=hidden.dtype).unsqueeze(-1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1e-9)


__all__ = ["kd_soft_loss", "hinton_kd_loss", "make_adapter", "hint_loss", "attention_transfer_loss",
           "attention_map_loss", "hidden_mse_loss", "cosine_loss", "mean_pool"]
