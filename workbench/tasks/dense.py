"""Dense prediction: text detection as a per-pixel text mask (``dense:pages``, ``dense:FILE.npz``, ``dense:DIR``).

A task is grayscale images ``x`` [N, 1, H, W] float32 in [0, 1], a binary text mask per image [N, H, W]
(1 = text) and the true word boxes of each image, split into train / val / test. Models map an image to
per-pixel logits [N, 2, H, W] (class 1 = text); the metric is the mean per-image IoU of the predicted mask
(argmax) with a bootstrap CI over test images; box F1 at IoU >= 0.5 is reported beside it
(workbench.tasks.dense_metrics).

``dense:pages`` — built-in pages rendered from real text with exact ground truth (workbench.tasks.dense_pages
says exactly how). Options: ``size`` (pixels, default 64), ``n_train`` 600, ``n_val`` 100, ``n_test`` 200,
``seed`` 0 (the splits are disjoint page ranges of one seeded stream).

``dense:FILE.npz`` — arrays ``x_train``, ``mask_train``, ``x_val``, ``mask_val``, ``x_test``, ``mask_test``
(or ``x`` and ``mask``: split 70 / 10 / 20 % with seed 0). ``x``: [N, H, W] or [N, 1, H, W], floats in [0, 1]
or uint8 0-255 (colour: average the channels first); ``mask``: [N, H, W] of 0 / 1.

``dense:DIR`` — ``DIR/images/NAME.png`` and ``DIR/masks/NAME.png`` (same names, same size; any image format
Pillow reads; images made grey, mask = pixel > 0), split 70 / 10 / 20 % with seed 0; ``?size=S`` resizes
both to S x S (bilinear / nearest).

For user data the true boxes are the bounding boxes of the true mask's 8-connected components.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import TaskError

INPUT_NAME = "image"


@dataclass(frozen=True, eq=False)
class DenseTask:
    """Images with a per-pixel text mask and word boxes, split train / val / test (see the module docstring)."""

    name: str
    description: str
    x_train: np.ndarray  # [N, 1, H, W] float32
    mask_train: np.ndarray  # [N, H, W] uint8
    boxes_train: list
    x_val: np.ndarray
    mask_val: np.ndarray
    boxes_val: list
    x_test: np.ndarray
    mask_test: np.ndarray
    boxes_test: list
    options: dict = field(default_factory=dict)
    metric: str = "mean IoU"
    input_name: str = INPUT_NAME
    num_classes: int = 2  # per pixel: background, text

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """One image without the batch dimension, (1, H, W)."""
        return tuple(self.x_train.shape[1:])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """A batch of one, (1, 1, H, W): what models are exported and measured with."""
        return (1, *self.sample_shape)

    def split(self, split: str) -> tuple[np.ndarray, np.ndarray, list]:
        """(images, masks, boxes) of ``split`` ("train", "val", "test")."""
        return getattr(self, f"x_{split}"), getattr(self, f"mask_{split}"), getattr(self, f"boxes_{split}")

    def fingerprint(self) -> str:
        """Content hash of images, masks, boxes and options: keys every cache that depends on the data."""
        h = hashlib.sha256(f"{self.name}|{sorted((k, str(v)) for k, v in self.options.items())}".encode())
        for s in ("train", "val", "test"):
            x, m, b = self.split(s)
            for arr in (x, m, *b):
                h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()[:16]

    def summary(self) -> dict:
        """The task as recorded in results: name, generator / source description, sizes, fingerprint."""
        n_boxes = sum(len(b) for b in self.boxes_test)
        return {"name": self.name, "description": self.description, "metric": self.metric,
                "num_classes": self.num_classes, "n_train": int(len(self.x_train)), "n_val": int(len(self.x_val)),
                "n_test": int(len(self.x_test)), "input_name": self.input_name, "input_shape": list(self.input_shape),
                "test_boxes": int(n_boxes), "test_text_fraction": float(self.mask_test.mean()),
                "options": dict(self.options), "fingerprint": self.fingerprint()}


def boxes_of_masks(masks: np.ndarray) -> list:
    """True boxes of user masks: the bounding boxes of each mask's 8-connected components."""
    from .dense_metrics import mask_boxes

    return [mask_boxes(m).astype(np.int32) for m in masks]


def pages(size: int = 64, n_train: int = 600, n_val: int = 100, n_test: int = 200, seed: int = 0) -> DenseTask:
    """``dense:pages``: rendered pages with exact masks and word boxes (workbench.tasks.dense_pages)."""
    from .dense_pages import render_pages, source_words

    for k, v, lo in (("size", size, 24), ("n_train", n_train, 4), ("n_val", n_val, 2), ("n_test", n_test, 2)):
        if not isinstance(v, int) or v < lo:
            raise TaskError(f"dense:pages option {k}={v!r} must be an integer >= {lo}")
    words = source_words()
    x, m, b = render_pages(n_train + n_val + n_test, size, seed, words)
    a, c = n_train, n_train + n_val
    desc = (f"{n_train + n_val + n_test} grayscale {size}x{size} pages rendered with Pillow's default font from "
            f"{len(words)} words of real text (the Zen of Python + standard-library docstrings), sizes 8-14 px, "
            f"clutter lines/blobs, blur, noise; seed {seed}; exact word boxes; splits = page ranges "
            f"{n_train}/{n_val}/{n_test}")
    return DenseTask("dense:pages", desc, x[:a], m[:a], b[:a], x[a:c], m[a:c], b[a:c], x[c:], m[c:], b[c:],
                     options={"size": size, "n_train": n_train, "n_val": n_val, "n_test": n_test, "seed": seed})


def _images(name: str, x) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3 or x.shape[0] < 1:
        raise TaskError(f"{name}: images must be [N, H, W] or [N, 1, H, W] (grey), got shape {list(x.shape)}")
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    x = x.astype(np.float32)
    if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise TaskError(f"{name}: image values must be finite and in [0, 1] (or uint8 0-255)")
    return x[:, None]


def _masks(name: str, m, x: np.ndarray) -> np.ndarray:
    m = np.asarray(m)
    if m.shape != (x.shape[0], *x.shape[2:]):
        raise TaskError(f"{name}: masks must be [N, H, W] = {[x.shape[0], *x.shape[2:]]} like the images, got {list(m.shape)}")
    if not np.isin(m, (0, 1)).all():
        raise TaskError(f"{name}: mask values must be 0 (background) or 1 (text)")
    return m.astype(np.uint8)


def _split3(n: int, seed: int = 0) -> tuple:
    order = np.random.default_rng(seed).permutation(n)
    a, b = int(round(0.7 * n)), int(round(0.8 * n))
    if a < 1 or b - a < 1 or n - b < 1:
        raise TaskError(f"{n} images are too few to split 70/10/20 %; give at least 10 (or explicit splits)")
    return order[:a], order[a:b], order[b:]


def _from_arrays(name: str, desc: str, splits: dict, options: dict) -> DenseTask:
    parts = []
    for s in ("train", "val", "test"):
        x = _images(f"{name} x_{s}", splits[s][0])
        m = _masks(f"{name} mask_{s}", splits[s][1], x)
        parts += [x, m, boxes_of_masks(m)]
    shapes = {tuple(p.shape[1:]) for p in parts[0::3]}
    if len(shapes) > 1:
        raise TaskError(f"{name}: every split's images must have one size, got {sorted(shapes)}")
    return DenseTask(name, desc, *parts, options=options)


def load_npz(path: str) -> DenseTask:
    """``dense:FILE.npz`` (see the module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise TaskError(f"dense task file {p} not found; give an .npz with x_train/mask_train/... (or x, mask)")
    with np.load(p, allow_pickle=False) as z:
        keys = set(z.files)
        if {"x_train", "mask_train", "x_val", "mask_val", "x_test", "mask_test"} <= keys:
            splits = {s: (z[f"x_{s}"], z[f"mask_{s}"]) for s in ("train", "val", "test")}
        elif {"x", "mask"} <= keys:
            x, m = z["x"], z["mask"]
            if len(x) != len(m):
                raise TaskError(f"{p.name}: x has {len(x)} images but mask has {len(m)}")
            splits = dict(zip(("train", "val", "test"), ((x[i], m[i]) for i in _split3(len(x)))))
        else:
            raise TaskError(f"{p.name} has arrays {sorted(keys)}; a dense task needs x_train, mask_train, x_val, "
                            "mask_val, x_test, mask_test (or x and mask)")
    return _from_arrays(f"dense:{p.name}", f"images and text masks from {p.name}", splits, {"file": p.name})


def load_dir(path: str, size: int | None = None) -> DenseTask:
    """``dense:DIR`` of ``images/`` and ``masks/`` with the same file names (see the module docstring)."""
    from PIL import Image, UnidentifiedImageError

    root = Path(path)
    imgs, msks = root / "images", root / "masks"
    if not imgs.is_dir() or not msks.is_dir():
        raise TaskError(f"dense task folder {root} needs sub-folders images/ and masks/ (same file names)")
    names = sorted(f.name for f in imgs.iterdir() if f.is_file())
    missing = [n for n in names if not (msks / n).is_file()]
    if not names or missing:
        raise TaskError(f"{root}: " + (f"masks/ lacks {missing[0]} (and {len(missing) - 1} more)" if missing
                                        else "images/ is empty"))
    xs, ms = [], []
    for n in names:
        try:
            im, mk = Image.open(imgs / n).convert("L"), Image.open(msks / n).convert("L")
        except (UnidentifiedImageError, OSError) as e:
            raise TaskError(f"{root}: cannot read {n}: {e}") from None
        if size is not None:
            im, mk = im.resize((size, size), Image.BILINEAR), mk.resize((size, size), Image.NEAREST)
        if im.size != mk.size or (xs and im.size != xs[0].shape[::-1]):
            raise TaskError(f"{root}: {n} is {im.size}, not the size of the other images/masks; add ?size=S")
        xs.append(np.asarray(im, np.uint8))
        ms.append((np.asarray(mk) > 0).astype(np.uint8))
    x, m = np.stack(xs), np.stack(ms)
    splits = dict(zip(("train", "val", "test"), ((x[i], m[i]) for i in _split3(len(x)))))
    return _from_arrays(f"dense:{root.name}", f"{len(x)} images and text masks from {root}", splits,
                        {"dir": root.name, **({"size": size} if size else {})})


BUILTIN = {"pages": pages}


def load_dense(target: str, **options) -> DenseTask:
    """The dense task ``target`` names: a built-in (``pages``), an .npz file or a folder."""
    if target in BUILTIN:
        return BUILTIN[target](**options)
    extra = set(options) - {"size"}
    if extra:
        raise TaskError(f"dense:{target}: options {', '.join(sorted(extra))} apply to dense:pages only; "
                        "a file or folder takes ?size=S (folders)")
    p = Path(target)
    if p.is_dir():
        return load_dir(target, **options)
    if options:
        raise TaskError(f"dense:{target}: ?size= applies to image folders; resize the arrays in the .npz yourself")
    if p.suffix != ".npz":
        raise TaskError(f"dense:{target} is neither a built-in ({', '.join(BUILTIN)}), a folder nor an .npz file")
    return load_npz(target)
