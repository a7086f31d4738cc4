"""Distilling an image classifier: any teacher source into any student, with logit (Hinton KD),
hint (FitNets) and attention-transfer losses, cached teacher outputs, and the engine's trainer.

Teacher outputs come from the on-disk cache (``OutputCache``), keyed by the teacher's weights hash,
the task's content fingerprint and the augmentation (discrete pixel shifts, so every (view, example)
pair has exactly one cached output and the cache stays exact under augmentation):
- logits for every (view, example) — always cached;
- attention-transfer maps (channel-pooled |a|^p, tiny) of the tapped teacher layers — cached;
- hint features (full feature maps) — cached in float16 when they fit ``feature_cache_mb``,
  otherwise the teacher runs on each batch (the run says which).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import RecipeError
from .classifier_train import ArrayTargets, accuracy, attention_map, classifier_step
from .engine import FitConfig, fit
from .loss_config import LossConfig, parse_layer_pairs

__all__ = ["ClassifierData", "LossConfig", "TeacherTargets", "check_feature_layers", "distil_classifier",
           "parse_layer_pairs"]


def check_feature_layers(teacher, student, losses: LossConfig, x: np.ndarray) -> None:
    """Fail early (before any output is written) on feature-loss layers that do not exist or do not run,
    attention layers that are not conv maps, and hint pairs that no adapter can match."""
    if not losses.uses_features or teacher.module is None or student.module is None:
        return
    import torch

    from .features import feature_shapes
    from .losses import make_adapter

    hint = losses.hint_layers if losses.hint > 0 else ()
    att = losses.attention_layers if losses.attention > 0 else ()
    sample = torch.from_numpy(np.ascontiguousarray(x[:2]))
    s_shapes = feature_shapes(student.module, [s for s, _ in hint + att], sample)
    t_shapes = feature_shapes(teacher.module, [t for _, t in hint + att], sample)
    for s, t in att:
        for who, name, shape in (("student", s, s_shapes[s]), ("teacher", t, t_shapes[t])):
            if len(shape) != 3:
                raise RecipeError(f"attention transfer needs conv feature maps (C, H, W), but the {who}'s layer "
                                  f"{name!r} outputs {shape}; pick a convolutional layer (see --list-layers)")
    with torch.random.fork_rng(devices=[]):  # a trial adapter must not move the global RNG
        for s, t in hint:
            make_adapter(s_shapes[s], t_shapes[t])


@dataclass
class ClassifierData:
    """The task's training images under discrete shift views, plus the labelled subset in use."""

    task: object
    shift: int
    subset: np.ndarray | None = None
    _views: object = field(default=None, repr=False)

    @property
    def views(self):
        """The shift views of the training images (built on first use)."""
        if self._views is None:
            import torch

            from .views import ShiftViews

            self._views = ShiftViews(torch.from_numpy(self.task.x_train), self.shift)
        return self._views

    @property
    def pool(self) -> np.ndarray:
        """The training example indices in use: the labelled subset, or every example."""
        return self.subset if self.subset is not None else np.arange(len(self.task.y_train))


class TeacherTargets(ArrayTargets):
    """Teacher logits / AT maps / hint features per (view, example), from the cache or computed;
    ``get`` (from :class:`ArrayTargets`) serves them to :func:`classifier_step`."""

    def __init__(self, teacher, data: ClassifierData, losses: LossConfig, cache, progress=None,
                 feature_cache_mb: float = 1024):
        self.teacher, self.data, self.losses, self.cache, self.progress = teacher, data, losses, cache, progress
        self.arrays: dict[str, np.ndarray] = {}
        self.online_hint = False
        self.cache_keys: dict[str, str] = {}
        self.feature_cache_mb = feature_cache_mb

    def _key(self, what: str, **extra) -> str:
        return self.cache.key(what=what, teacher=self.teacher.sha256, task=self.data.task.fingerprint(),
                              shift=self.data.shift, **extra)

    def prepare(self) -> dict:
        """Fill (or reuse) every cached target; returns {name: 'hit'|'made'|'online'}."""
        status = {}
        v, n = self.data.views.n_views, len(self.data.task.y_train)
        if self.teacher.outputs:  # precomputed logits: identity view only
            self.arrays["logits"] = self.teacher.outputs["train"][None]
            return {"logits": "given"}
        specs: dict[str, tuple] = {}
        if self.losses.alpha > 0:
            specs["logits"] = (None,)
        at_layers = [t for _, t in self.losses.attention_layers] if self.losses.attention > 0 else []
        hint_layers = [t for _, t in self.losses.hint_layers] if self.losses.hint > 0 else []
        shapes = {}
        if at_layers or hint_layers:
            import torch

            from .features import feature_shapes

            shapes = feature_shapes(self.teacher.module, list(dict.fromkeys(at_layers + hint_layers)),
                                    torch.from_numpy(self.data.task.x_train[:2]))
        if hint_layers:
            mb = sum(int(np.prod(shapes[t])) for t in hint_layers) * 2 * v * n / 2 ** 20
            if mb > self.feature_cache_mb:
                self.online_hint = True
                if self.progress:
                    self.progress.info(f"  hint features would need {mb:.0f} MB of cache (> {self.feature_cache_mb:.0f} MB): "
                                       "the teacher runs on each batch for the hint loss instead")
        wanted = []
        if "logits" in specs:
            wanted.append(("logits", None))
        wanted += [(f"at:{t}", t) for t in dict.fromkeys(at_layers)]
        if not self.online_hint:
            wanted += [(f"hint:{t}", t) for t in dict.fromkeys(hint_layers)]
        for name, layer in wanted:
            key = self._key(name, p=self.losses.attention_p if name.startswith("at:") else None)
            self.cache_keys[name] = key
            got = self.cache.load(key)
            if got is not None:
                self.arrays[name] = got["a"]
                status[name] = "hit"
        todo = [(name, layer) for name, layer in wanted if name not in self.arrays]
        if todo:
            self._compute(todo, shapes)
            for name, _ in todo:
                status[name] = "made"
        if self.online_hint:
            status["hint"] = "online"
        return status

    def _compute(self, todo, shapes) -> None:
        import contextlib

        import torch

        from .device import placed
        from .features import FeatureTap

        views, n = self.data.views, len(self.data.task.y_train)
        layers = [layer for _, layer in todo if layer is not None]
        out_shapes = {}
        for name, layer in todo:
            if layer is None:
                out_shapes[name] = ((views.n_views, n, self.data.task.num_classes), "float32")
            elif name.startswith("at:"):
                out_shapes[name] = ((views.n_views, n, *shapes[layer][1:]), "float32")
            else:
                out_shapes[name] = ((views.n_views, n, *shapes[layer]), "float16")
        writers = {name: self.cache.writer(self.cache_keys[name], {"a": out_shapes[name]},
                                           parts={"what": name, "teacher": self.teacher.spec.text,
                                                  "task": self.data.task.name, "shift": self.data.shift})
                   for name, _ in todo}
        total, done, batch = views.n_views * n, 0, 64  # batch 64: fastest per image at 1 thread here
        bar = (self.progress.bar(f"teacher-output cache ({', '.join(n for n, _ in todo)}; {views.n_views} views x {n})", total)
               if self.progress else contextlib.nullcontext(lambda *a, **k: None))
        with contextlib.ExitStack() as stack:
            outs = {name: stack.enter_context(w)["a"] for name, w in writers.items()}
            update = stack.enter_context(bar)
            module = self.teacher.module
            tap = stack.enter_context(FeatureTap(module, layers)) if (module is not None and layers) else None
            if module is not None:  # on the job's device, autocast on CUDA; taps read back as fp32 on the host
                stack.enter_context(placed(module, autocast=True))
            for v in range(views.n_views):
                for s in range(0, n, batch):
                    idx = torch.arange(s, min(s + batch, n))
                    xb = views.get(idx, torch.full_like(idx, v))
                    if module is not None:
                        with torch.inference_mode():
                            if tap:
                                tap.clear()
                            logits = module(xb).numpy()
                    else:
                        logits = self.teacher.predict(xb.numpy())
                    for name, layer in todo:
                        if layer is None:
                            outs[name][v, s:s + len(idx)] = logits
                        elif name.startswith("at:"):
                            feat = tap.outputs[layer].float()
                            outs[name][v, s:s + len(idx)] = attention_map(feat, self.losses.attention_p).cpu().numpy()
                        else:
                            outs[name][v, s:s + len(idx)] = tap.outputs[layer].float().cpu().numpy().astype(np.float16)
                    done += len(idx)
                    update(done)
            del outs
        for name, _ in todo:
            self.arrays[name] = self.cache.load(self.cache_keys[name])["a"]


def distil_classifier(teacher, student, task, losses: LossConfig, cfg: FitConfig, *, out_dir: Path,
                      cache, shift: int = 1, subset: np.ndarray | None = None, progress=None,
                      feature_cache_mb: float = 1024, key_extra: str = "") -> dict:
    """Train ``student`` (a LoadedModel with a module) from ``teacher`` (any LoadedModel) on ``task``.

    Returns a result dict (accuracies, history, cache status, seconds). ``out_dir`` receives the
    per-epoch checkpoint. The student module is left holding its best-epoch weights. ``teacher`` may be
    None when the losses need none (alpha 0, no feature losses: plain training, e.g. QAT).
    """
    import torch

    from . import losses as L
    from .features import FeatureTap, feature_shapes

    if student.module is None:
        raise RecipeError(f"student {student.spec} is not trainable; use zoo:, torchvision:, hf: or py:")
    if teacher is None and losses.uses_teacher:
        raise RecipeError("this loss needs a teacher (alpha > 0 or feature losses); give one or set alpha to 0")
    if losses.uses_features and not teacher.white_box:
        raise RecipeError(f"teacher {teacher.spec} is a black box ({teacher.kind}:): only output-level losses apply; "
                          "drop hint/attention (set their weights to 0) or give a white-box teacher")
    check_feature_layers(teacher, student, losses, task.x_train)
    if teacher is not None and teacher.outputs and shift:
        if progress:
            progress.info("  precomputed teacher outputs cover un-augmented images only: augmentation (shift) turned off")
        shift = 0
    data = ClassifierData(task, shift, subset)
    targets = TeacherTargets(teacher, data, losses, cache, progress, feature_cache_mb)
    t0 = time.perf_counter()
    from .ddp import is_main, main_first

    with main_first():  # under torchrun rank 0 fills the cache, the other ranks then read it
        status = targets.prepare() if losses.uses_teacher else {}
    cache_s = time.perf_counter() - t0

    model = student.module
    modules = {"student": model}
    s_layers = list(dict.fromkeys([s for s, _ in losses.hint_layers] if losses.hint > 0 else [])
                    | dict.fromkeys([s for s, _ in losses.attention_layers] if losses.attention > 0 else []))
    adapters = torch.nn.ModuleDict()
    if losses.hint > 0:
        s_shapes = feature_shapes(model, [s for s, _ in losses.hint_layers], torch.from_numpy(task.x_train[:2]))
        t_shapes = feature_shapes(teacher.module, [t for _, t in losses.hint_layers], torch.from_numpy(task.x_train[:2]))
        for i, (s, t) in enumerate(losses.hint_layers):
            adapters[str(i)] = L.make_adapter(s_shapes[s], t_shapes[t])
        modules["adapters"] = adapters
    labels = torch.from_numpy(task.y_train.astype(np.int64))
    pool = torch.from_numpy(data.pool.astype(np.int64))
    tap = FeatureTap(model, s_layers) if s_layers else None
    t_tap = FeatureTap(teacher.module, [t for _, t in losses.hint_layers]) if targets.online_hint else None
    step = classifier_step(model, data.views, labels, pool, losses, targets, cfg.seed, tap=tap, adapters=adapters,
                           teacher_module=teacher.module if t_tap else None, teacher_tap=t_tap)

    def evaluate() -> float:
        """Validation accuracy of the student (the engine keeps the best pass by it)."""
        return accuracy(model, task.x_val, task.y_val)

    key = "|".join([student.spec.text, student.sha256, teacher.sha256 if teacher is not None else "no-teacher", task.fingerprint(), str(shift),
                    str(losses.to_json()), str(None if subset is None else subset.tolist()), key_extra])
    if is_main():  # other ranks write nothing
        out_dir.mkdir(parents=True, exist_ok=True)
    try:
        if tap:
            tap.__enter__()
        if t_tap:
            t_tap.__enter__()
        res = fit(modules, step, len(pool), evaluate, cfg, checkpoint=out_dir / "checkpoint.pt", key=key,
                  progress=progress, metric_name="val_accuracy", describe=f"distilling {student.spec} ({losses.describe()})")
    finally:
        if tap:
            tap.__exit__(None, None, None)
        if t_tap:
            t_tap.__exit__(None, None, None)
    return {"fit": res.to_json(), "cache": status, "cache_seconds": round(cache_s, 3),
            "online_hint": targets.online_hint, "n_train": int(len(pool)),
            "val_accuracy": res.best_metric, "test_accuracy_torch": accuracy(model, task.x_test, task.y_test)}
