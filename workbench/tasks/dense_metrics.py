"""Metrics of dense text detection: per-image IoU of the text mask and box F1 at IoU >= 0.5, with
bootstrap CIs over images (workbench.tasks.dense). Pure numpy + scipy.

- ``mask_iou``: |pred AND true| / |pred OR true| per image; an image where both are empty scores 1.
  The task's metric "mean IoU" is the mean over test images, its CI the bootstrap percentile CI of that mean.
- Boxes: the predicted boxes are the bounding boxes of the 8-connected components of the predicted mask
  (:func:`mask_boxes`); each is matched to at most one true word box and vice versa, greedily by IoU,
  highest first, a match needing box IoU >= 0.5. Box F1 = 2 TP / (2 TP + FP + FN) pooled over the images;
  its CI: the same pooled F1 over images resampled with replacement (2,000 resamples, seed 0, percentile).
"""
from __future__ import annotations

import numpy as np

BOX_IOU = 0.5  # a predicted box matches a true box at this box IoU or more


def mask_iou(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per-image IoU of binary masks ``pred``, ``true`` [N, H, W] (1.0 where both are empty)."""
    p, t = np.asarray(pred).astype(bool), np.asarray(true).astype(bool)
    inter = (p & t).reshape(len(p), -1).sum(1)
    union = (p | t).reshape(len(p), -1).sum(1)
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1)).astype(np.float64)


def mask_boxes(mask: np.ndarray) -> np.ndarray:
    """Bounding boxes [k, 4] (x0, y0, x1, y1, end-exclusive) of the 8-connected components of one binary
    mask [H, W], in scan order."""
    from scipy import ndimage

    labels, _ = ndimage.label(np.asarray(mask).astype(bool), structure=np.ones((3, 3), bool))
    return np.asarray([(s[1].start, s[0].start, s[1].stop, s[0].stop) for s in ndimage.find_objects(labels)
                       if s is not None], np.int64).reshape(-1, 4)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [len(a), len(b)] of end-exclusive boxes (x0, y0, x1, y1)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-12)


def match_counts(pred_boxes: np.ndarray, true_boxes: np.ndarray, thr: float = BOX_IOU) -> tuple[int, int, int]:
    """(TP, FP, FN) of one image: one-to-one greedy matching by box IoU (highest first), IoU >= ``thr``."""
    iou = box_iou(pred_boxes, true_boxes)
    tp = 0
    if iou.size:
        used_p, used_t = set(), set()
        for flat in np.argsort(-iou, axis=None, kind="stable"):
            i, j = divmod(int(flat), iou.shape[1])
            if iou[i, j] < thr:
                break
            if i not in used_p and j not in used_t:
                used_p.add(i)
                used_t.add(j)
                tp += 1
    return tp, len(pred_boxes) - tp, len(true_boxes) - tp


def _f1(c: np.ndarray) -> float:
    tp, fp, fn = c[..., 0], c[..., 1], c[..., 2]
    den = 2 * tp + fp + fn
    return np.where(den == 0, 1.0, 2 * tp / np.maximum(den, 1))


def box_f1(pred_masks: np.ndarray, true_boxes: list, resamples: int = 2000, seed: int = 0) -> dict:
    """Box F1 at IoU >= 0.5 of predicted masks [N, H, W] against the true boxes of each image (pooled over
    images), with its bootstrap CI over images and the pooled precision / recall / counts."""
    counts = np.asarray([match_counts(mask_boxes(m), b) for m, b in zip(pred_masks, true_boxes)], np.float64)
    counts = counts.reshape(-1, 3)
    total = counts.sum(0)
    f1 = float(_f1(total))
    if len(counts) > 1:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, len(counts), (resamples, len(counts)))
        boot = _f1(counts[idx].sum(1))
        ci = (float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5)))
    else:
        ci = (f1, f1)
    tp, fp, fn = (int(v) for v in total)
    return {"f1": f1, "ci95": ci, "precision": tp / (tp + fp) if tp + fp else 1.0,
            "recall": tp / (tp + fn) if tp + fn else 1.0, "tp": tp, "fp": fp, "fn": fn}


def dense_quality(logits: np.ndarray, true_masks: np.ndarray, true_boxes: list) -> dict:
    """The task's quality of per-pixel logits [N, 2, H, W] (text = class 1): Quality JSON with metric
    "mean IoU" (per-image mask IoU, bootstrap CI over images) plus box F1 (its CI, precision, recall)."""
    from ..evaluate import Quality, bootstrap_mean_ci

    pred = np.asarray(logits).argmax(1)
    ious = mask_iou(pred, true_masks)
    f = box_f1(pred, true_boxes)
    q = Quality("mean IoU", float(ious.mean()), bootstrap_mean_ci(ious), int(len(ious))).to_json()
    q.update(box_f1=f["f1"], box_f1_ci95=list(f["ci95"]), box_precision=f["precision"], box_recall=f["recall"],
             box_counts={"tp": f["tp"], "fp": f["fp"], "fn": f["fn"]},
             box_rule="boxes of the predicted mask's 8-connected components vs the word boxes, one-to-one at IoU >= 0.5")
    return q
