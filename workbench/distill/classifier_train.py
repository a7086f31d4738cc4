"""Training an image or feature classifier with the one engine (:func:`~.engine.fit`): from labels
only, with Hinton KD from cached teacher logits, and with the FitNets hint and attention-transfer
terms, over discrete shift views (:class:`~.views.ShiftViews`).

:func:`train_classifier` is what ``workbench run`` (every student) and ``workbench train`` call;
``workbench distill`` (:func:`~.classify.distil_classifier`) builds its batches with the same
:func:`classifier_step`, so every classifier is trained by one loop.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import RecipeError
from .engine import FitConfig, FitResult, fit
from .loss_config import LABELS_ONLY, LossConfig


@dataclass(frozen=True)
class ClassifierResult:
    """One trained classifier: wall time, the mean loss of its last pass, its validation accuracy (None
    without a validation split) and the engine's full record."""

    seconds: float
    final_loss: float
    val_accuracy: float | None
    fit: FitResult

    def to_json(self) -> dict:
        """JSON-ready form for unit results and cards."""
        return {"seconds": self.seconds, "final_loss": self.final_loss, "val_accuracy": self.val_accuracy,
                "fit": self.fit.to_json()}


class ArrayTargets:
    """Teacher logits held as one array (n_views, n_examples, classes), served per (view, example)
    batch; an array with one view (precomputed outputs) serves it for every view."""

    def __init__(self, logits: np.ndarray | None):
        self.arrays = {} if logits is None else {"logits": logits}
        self.online_hint = False

    def get(self, name: str, view: np.ndarray, idx: np.ndarray):
        """The targets ``name`` of examples ``idx`` under views ``view`` as a float32 tensor."""
        import torch

        a = self.arrays[name]
        if a.shape[0] == 1:
            view = np.zeros_like(view)
        return torch.from_numpy(np.ascontiguousarray(a[view, idx], dtype=np.float32))


def attention_map(feat, p: float):
    """Zagoruyko & Komodakis activation map: channel mean of |a|^p, (B, H, W)."""
    return feat.abs().pow(p).mean(dim=1)


def at_map_loss(student_map, teacher_map):
    """AT loss on precomputed maps: resize the student's map to the teacher's, L2-normalise, mean sq. diff."""
    import torch.nn.functional as F

    from .losses import _resize_spatial

    if student_map.shape[-2:] != teacher_map.shape[-2:]:  # exactly as attention_transfer_loss resizes
        student_map = _resize_spatial(student_map[:, None], teacher_map.shape[-2:])[:, 0]
    qs = F.normalize(student_map.flatten(1), dim=1)
    qt = F.normalize(teacher_map.flatten(1), dim=1)
    return (qs - qt).pow(2).mean()


def classifier_step(model, views, labels, pool, losses: LossConfig, targets, seed: int, *, tap=None,
                    adapters=None, teacher_module=None, teacher_tap=None):
    """The engine's ``step(idx, epoch) -> loss`` for a classifier: examples ``pool[idx]``, each under a
    random shift view (drawn from a per-epoch seed, so a resumed run draws the same ones), and the
    loss ``losses`` asks for. ``targets.get(name, views, examples)`` serves the teacher's cached
    logits / hint features / attention maps; ``tap`` records the student's feature layers;
    ``adapters`` match hint shapes; with ``targets.online_hint`` the teacher runs on each batch
    (``teacher_module`` under ``teacher_tap``)."""
    import torch
    import torch.nn.functional as F

    from . import losses as L

    gen, gen_epoch = torch.Generator(), [None]

    def step(idx, epoch, share=None):
        """The loss of batch ``pool[idx]`` in pass ``epoch`` (under torchrun: of the ``share`` of it that is
        this process's, the views drawn for the whole batch first, so every rank draws what one process would)."""
        if gen_epoch[0] != epoch:
            gen.manual_seed(seed * 1_000_003 + 17 + epoch)
            gen_epoch[0] = epoch
        ex = pool[idx]
        view = (torch.randint(0, views.n_views, (len(ex),), generator=gen) if views.n_views > 1
                else torch.full((len(ex),), views.identity_view))
        if share is not None:
            ex, view = ex[share], view[share]
        xb = views.get(ex, view)
        if tap:
            tap.clear()
        logits = model(xb)
        loss = F.cross_entropy(logits, labels[ex]) * (1 - losses.alpha) if losses.alpha < 1 else logits.sum() * 0
        vn, en = view.numpy(), ex.numpy()
        if losses.alpha > 0:
            loss = loss + losses.alpha * L.kd_soft_loss(logits, targets.get("logits", vn, en), losses.temperature)
        if losses.hint > 0:
            if targets.online_hint:
                with torch.no_grad():
                    teacher_tap.clear()
                    teacher_module(xb)
            for i, (s, t) in enumerate(losses.hint_layers):
                tf = teacher_tap.outputs[t] if targets.online_hint else targets.get(f"hint:{t}", vn, en)
                feat = tap.outputs[s]  # recorded inside the student: on its device (workbench.distill.device)
                loss = loss + losses.hint * L.hint_loss(feat, tf.to(feat.device), adapters[str(i)])
        if losses.attention > 0:
            for s, t in losses.attention_layers:
                sm = attention_map(tap.outputs[s], losses.attention_p)
                loss = loss + losses.attention * at_map_loss(sm, targets.get(f"at:{t}", vn, en).to(sm.device))
        return loss

    return step


def train_classifier(model, views, y, cfg: FitConfig, *, losses: LossConfig = LABELS_ONLY,
                     subset: np.ndarray | None = None, teacher_logits: np.ndarray | None = None,
                     val: tuple[np.ndarray, np.ndarray] | None = None, progress=None, on_step=None,
                     checkpoint: Path | None = None, key: str = "", describe: str = "training") -> ClassifierResult:
    """Train ``model`` in place with the engine on the examples of ``views`` (labels ``y``).

    ``losses`` is labels-only by default; with ``alpha > 0`` it is Hinton KD from ``teacher_logits``
    (n_views, n, classes). ``subset`` restricts training to those example indices (few-label regime);
    ``val`` = (x, y) is evaluated after every pass and the best pass's weights are kept (without it
    the final weights are). ``cfg`` gives the budget in epochs or steps. ``progress`` (a Progress)
    shows a bar; ``on_step(step, loss)`` hears the loss about 20 times; ``checkpoint`` + ``key`` make
    the run resumable.
    """
    import torch

    if losses.uses_features:
        raise RecipeError("hint / attention losses need the teacher's features: use `workbench distill` "
                          "(distil_classifier), which caches them")
    if losses.alpha > 0 and teacher_logits is None:
        raise RecipeError("KD training (alpha > 0) needs the teacher's logits")
    pool = torch.from_numpy(np.asarray(subset if subset is not None else np.arange(len(y)), dtype=np.int64))
    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
    step = classifier_step(model, views, labels, pool, losses, ArrayTargets(teacher_logits), cfg.seed)
    evaluate = (lambda: accuracy(model, *val)) if val is not None else None
    t0 = time.perf_counter()
    res = fit({"student": model}, step, len(pool), evaluate, cfg, checkpoint=checkpoint, key=key,
              progress=progress, metric_name="val_accuracy", describe=describe, on_step=on_step)
    return ClassifierResult(round(time.perf_counter() - t0, 3), res.final_loss,
                            res.best_metric if val is not None else None, res)


def predict(model, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """The model's outputs (logits) on ``x``, in eval mode, in batches."""
    import torch

    model.eval()
    outs = []
    with torch.inference_mode():
        for s in range(0, len(x), batch_size):
            outs.append(model(torch.from_numpy(np.ascontiguousarray(x[s:s + batch_size]))).numpy())
    return np.concatenate(outs)


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of the model on (x, y)."""
    return float((predict(model, x).argmax(1) == y).mean())
