"""Image classification tasks from the user's own data: an image folder or .npz arrays.

``images:DIR`` — one sub-folder per class (``DIR/cat/*.jpg``, ``DIR/dog/*.png``). If ``DIR`` has
``train/`` (and optionally ``val/``, ``test/``) sub-folders those are the splits; otherwise a
stratified 70/10/20 split with seed 0. Options: ``size`` (square side, default 64), ``grey``
(convert to one channel, default false).

``npz:FILE`` — arrays ``x_train, y_train, x_val, y_val, x_test, y_test`` (N, C, H, W) or (N, H, W)
images with integer labels, or (N, F) flat feature vectors (tabular data, embeddings); or just
``x, y`` (split stratified 70/10/20, seed 0).

Both are scaled to [0, 1] when integer-typed and standardised per channel with the training
split's mean and std (flat features: per feature); the metric is accuracy.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import TaskError
from .base import Task

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SPLIT_SEED = 0


def split_stratified(y: np.ndarray, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of a stratified 70/10/20 split (falls back to unstratified when a class is tiny)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    counts = np.bincount(y)
    strat = y if counts[counts > 0].min() >= 5 else None
    try:
        i_train, i_rest = train_test_split(idx, test_size=0.3, stratify=strat, random_state=seed)
        strat_rest = y[i_rest] if strat is not None else None
        i_val, i_test = train_test_split(i_rest, test_size=2 / 3, stratify=strat_rest, random_state=seed)
    except ValueError as e:  # too few examples for three splits
        raise TaskError(f"cannot split {len(y)} examples into train/val/test: {str(e).splitlines()[0][:160]}; "
                        "add more examples (at least ~10 per class)") from None
    return np.sort(i_train), np.sort(i_val), np.sort(i_test)


def _standardise(splits: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list, list]:
    tr = splits["train"]
    axes = (0, 2, 3) if tr.ndim == 4 else (0,)  # images: per channel; flat features: per feature
    mean = tr.mean(axis=axes, keepdims=True)
    std = tr.std(axis=axes, keepdims=True) + 1e-6
    out = {k: ((v - mean) / std).astype(np.float32) for k, v in splits.items()}
    return out, [round(float(m), 6) for m in mean.ravel()], [round(float(s), 6) for s in std.ravel()]


def _make_task(name: str, description: str, xs: dict, ys: dict, classes: list[str], options: dict) -> Task:
    for split in ("train", "val", "test"):
        if len(ys[split]) == 0:
            raise TaskError(f"{name}: the {split} split is empty; add more examples (at least ~10 per class)")
    if len(classes) < 2:
        raise TaskError(f"{name}: found {len(classes)} class(es); a classification task needs at least 2")
    xs, mean, std = _standardise(xs)
    return Task(name=name, description=description, metric="accuracy", num_classes=len(classes), input_name="input",
                sample_shape=tuple(xs["train"].shape[1:]), x_train=xs["train"], y_train=ys["train"],
                x_val=xs["val"], y_val=ys["val"], x_test=xs["test"], y_test=ys["test"],
                options={**options, "classes": classes, "normalise_mean": mean, "normalise_std": std})


def _to_float_images(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim not in (2, 4):
        raise TaskError(f"{what}: inputs must be (N, C, H, W) or (N, H, W) images or (N, F) feature vectors, "
                        f"got shape {x.shape}")
    if x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):  # NHWC -> NCHW
        x = x.transpose(0, 3, 1, 2)
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    elif np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32) / float(max(1, x.max()))
    return np.ascontiguousarray(x, dtype=np.float32)


def load_npz_task(path: str) -> Task:
    """The ``npz:FILE`` task: images or flat features with integer labels (see the module docstring)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise TaskError(f"npz task file {p} not found")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:
        raise TaskError(f"cannot read {p}: {str(e).splitlines()[0][:200]}; is it a numpy .npz?") from None
    if {"x_train", "y_train", "x_val", "y_val", "x_test", "y_test"} <= set(arrays):
        xs = {s: _to_float_images(arrays[f"x_{s}"], f"{p.name}[x_{s}]") for s in ("train", "val", "test")}
        ys = {s: np.asarray(arrays[f"y_{s}"]).astype(np.int64).ravel() for s in ("train", "val", "test")}
        how = "its own train/val/test arrays"
    elif {"x", "y"} <= set(arrays):
        x, y = _to_float_images(arrays["x"], f"{p.name}[x]"), np.asarray(arrays["y"]).astype(np.int64).ravel()
        if len(x) != len(y):
            raise TaskError(f"{p.name}: x has {len(x)} rows but y has {len(y)}")
        if len(y) and y.min() < 0:
            raise TaskError(f"{p.name}: labels must be integers >= 0")
        parts = split_stratified(y)
        xs = dict(zip(("train", "val", "test"), (x[i] for i in parts)))
        ys = dict(zip(("train", "val", "test"), (y[i] for i in parts)))
        how = "stratified 70/10/20 split (seed 0)"
    else:
        raise TaskError(f"{p.name} has arrays {sorted(arrays)}; expected x_train, y_train, x_val, y_val, x_test, "
                        "y_test (or just x and y)")
    for s in ("train", "val", "test"):
        if len(xs[s]) != len(ys[s]):
            raise TaskError(f"{p.name}: x_{s} has {len(xs[s])} rows but y_{s} has {len(ys[s])}")
        if xs[s].shape[1:] != xs["train"].shape[1:]:
            raise TaskError(f"{p.name}: x_{s} images are {xs[s].shape[1:]}, x_train's are {xs['train'].shape[1:]}")
    y_all = np.concatenate(list(ys.values()))
    if y_all.min() < 0:
        raise TaskError(f"{p.name}: labels must be integers >= 0")
    classes = [str(c) for c in range(int(y_all.max()) + 1)]
    return _make_task(f"npz:{p.name}", f"arrays from {p.name}, {how}", xs, ys, classes, {"file": str(p)})


def _read_image(path: Path, size: int, grey: bool) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("L" if grey else "RGB").resize((size, size), Image.BILINEAR)
            a = np.asarray(im, dtype=np.float32) / 255.0
    except Exception as e:
        raise TaskError(f"cannot read image {path}: {str(e).splitlines()[0][:160]}; remove or fix the file") from None
    return a[None] if grey else a.transpose(2, 0, 1)


def _scan(folder: Path, suffixes) -> dict[str, list[Path]]:
    return {d.name: sorted(f for f in d.rglob("*") if f.suffix.lower() in suffixes)
            for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")}


def folder_splits(root: Path, suffixes, read_one, empty_shape: tuple, found: str, advice: str):
    """(xs, ys, classes, how) of a folder of labelled files: one sub-folder per label under ``root`` (or
    under its ``train/`` (``val/``, ``test/``) folders), files ending in ``suffixes`` read by ``read_one(path)``
    into one array each (``empty_shape``: an empty split's per-example shape). A split the folder lacks is
    carved out of train, stratified; no split folders: a stratified 70/10/20 split (seed 0). Fewer than 2 labels
    with files: a TaskError saying "{root}: found N {found}; {advice}"."""
    has_splits = (root / "train").is_dir()
    scans = ({s: _scan(root / s, suffixes) for s in ("train", "val", "test") if (root / s).is_dir()} if has_splits
             else {"all": _scan(root, suffixes)})
    classes = sorted({c for sc in scans.values() for c, files in sc.items() if files})
    if len(classes) < 2:
        raise TaskError(f"{root}: found {len(classes)} {found}; {advice}")
    cid = {c: i for i, c in enumerate(classes)}

    def read(scan):
        files = [(f, cid[c]) for c, fs in scan.items() for f in fs if c in cid]
        x = np.stack([read_one(f) for f, _ in files]) if files else np.zeros((0, *empty_shape), np.float32)
        return x, np.array([c for _, c in files], dtype=np.int64)

    if has_splits:
        xs, ys = {}, {}
        for s in scans:
            xs[s], ys[s] = read(scans[s])
        if "val" not in xs or "test" not in xs:  # carve the missing splits out of train, stratified
            x, y = xs.pop("train"), ys.pop("train")
            i_tr, i_va, i_te = split_stratified(y)
            for s, part in (("val", i_va), ("test", i_te)):  # a split the folder has keeps its share in train
                if s in xs:
                    i_tr = np.sort(np.concatenate([i_tr, part]))
            xs.setdefault("val", x[i_va]), ys.setdefault("val", y[i_va])
            xs.setdefault("test", x[i_te]), ys.setdefault("test", y[i_te])
            xs["train"], ys["train"] = x[i_tr], y[i_tr]
        return xs, ys, classes, "the folder's own splits"
    x, y = read(scans["all"])
    parts = split_stratified(y)
    xs = dict(zip(("train", "val", "test"), (x[i] for i in parts)))
    ys = dict(zip(("train", "val", "test"), (y[i] for i in parts)))
    return xs, ys, classes, "stratified 70/10/20 split (seed 0)"


def load_image_folder_task(path: str, size: int = 64, grey: bool = False) -> Task:
    """The ``images:DIR`` task: one sub-folder per class, resized to ``size`` squares (see the module docstring)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise TaskError(f"image folder {root} not found; give a folder with one sub-folder per class")
    if not isinstance(size, int) or not 8 <= size <= 1024:
        raise TaskError(f"images: size must be an integer between 8 and 1024, got {size!r}")
    xs, ys, classes, how = folder_splits(root, IMAGE_SUFFIXES, lambda f: _read_image(f, size, grey),
                                         (1 if grey else 3, size, size), "class folder(s) with images",
                                         "put each class's images in its own sub-folder (at least 2 classes)")
    return _make_task(f"images:{root.name}", f"image folder {root} ({len(classes)} classes, {size}x{size}"
                      f"{', grey' if grey else ''}), {how}", xs, ys, classes,
                      {"folder": str(root), "size": size, "grey": bool(grey)})
