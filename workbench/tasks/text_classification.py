"""Text classification tasks: labelled texts from CSV / JSONL / a ``datasets.save_to_disk`` folder,
with their own train/val/test split column or a stratified split. ``fingerprint()`` keys the
teacher-output cache. numpy only at import time."""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import TaskError
from .text import SPLITS, _jsonl_rows, _read_text

@dataclass(frozen=True, eq=False)
class TextClassificationTask:
    """Labelled texts with fixed train / val / test splits; ``labels[i]`` is the name of class id i."""

    name: str
    description: str
    labels: tuple[str, ...]
    train_texts: tuple[str, ...]
    train_labels: np.ndarray
    val_texts: tuple[str, ...]
    val_labels: np.ndarray
    test_texts: tuple[str, ...]
    test_labels: np.ndarray
    options: dict = field(default_factory=dict)
    metric: str = "accuracy"

    @property
    def num_classes(self) -> int:
        """The number of distinct labels."""
        return len(self.labels)

    def split(self, name: str) -> tuple[tuple[str, ...], np.ndarray]:
        """The texts and labels of a split (train, val or test)."""
        if name not in SPLITS:
            raise TaskError(f"unknown split {name!r}; use one of {', '.join(SPLITS)}")
        return getattr(self, f"{name}_texts"), getattr(self, f"{name}_labels")

    def fingerprint(self) -> str:
        """Content hash of the labels, options and every split's texts and labels: keys every cache that depends on the
        data."""
        h = hashlib.sha256(json.dumps({"name": self.name, "labels": self.labels, "options": self.options},
                                      sort_keys=True, default=str).encode())
        for s in SPLITS:
            texts, y = self.split(s)
            h.update(f"|{s}|{len(texts)}|".encode())
            for t in texts:
                h.update(t.encode() + b"\x1e")
            h.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
        return h.hexdigest()[:16]

    def summary(self) -> dict:
        """The task as recorded in results and cards: name, metric, labels, options, fingerprint and split sizes."""
        out = {"name": self.name, "description": self.description, "metric": self.metric,
               "num_classes": self.num_classes, "labels": list(self.labels), "options": dict(self.options),
               "fingerprint": self.fingerprint()}
        for s in SPLITS:
            out[f"n_{s}"] = len(self.split(s)[0])
        return out


_SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                "dev": "val", "test": "test", "testing": "test"}


def load_text_classification(path: str | Path, text: str = "text", label: str = "label", split: str = "split",
                             seed: int = 0, fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)) -> TextClassificationTask:
    """Labelled texts from a .csv / .jsonl file or a ``datasets.save_to_disk`` folder.

    ``text`` / ``label`` name the columns. Labels are mapped to ids in sorted order (numerically
    when all are numbers). Splits: the file's ``split`` column (train / val|validation|dev / test),
    a DatasetDict's train / validation / test, else a seeded stratified split by ``fractions``.
    """
    p = Path(path)
    opts = {"text": text, "label": label, "seed": seed, "fractions": list(fractions)}
    if not p.exists():
        raise TaskError(f"text classification data {path} not found; give a .csv, a .jsonl or a folder written by "
                        "datasets' save_to_disk")
    if p.is_dir():
        rows_by_split, columns = _read_hf_dataset(p, text, label)
    else:
        suffix = p.suffix.lower()
        raw = _read_text(p)
        if suffix == ".csv":
            reader = csv.DictReader(raw.splitlines())
            columns = list(reader.fieldnames or [])
            rows = list(reader)
        elif suffix in (".jsonl", ".json"):
            rows = list(_jsonl_rows(p, raw, ()))
            columns = sorted({k for r in rows for k in r})
        else:
            raise TaskError(f"text classification data {p.name}: unsupported file type {suffix or '(none)'}; "
                            "use .csv, .jsonl or a datasets save_to_disk folder")
        opts["sha256"] = hashlib.sha256(raw.encode()).hexdigest()[:16]
        if not rows:
            raise TaskError(f"{p.name} has no rows; give a file with a header and at least a few labelled texts")
        for col in (text, label):
            if col not in columns:
                opt = "text" if col == text else "label"
                raise TaskError(f"{p.name} has no column {col!r} (columns: {', '.join(columns) or 'none'}); "
                                f"name the right one with {opt}=COLUMN")
        if split in columns:
            rows_by_split = {}
            for i, r in enumerate(rows):
                s = _SPLIT_NAMES.get(str(r.get(split, "")).strip().lower())
                if s is None:
                    raise TaskError(f"{p.name} row {i + 1}: split {r.get(split)!r} is not train, val (validation, "
                                    "dev) or test; fix the value or drop the split column")
                rows_by_split.setdefault(s, []).append(r)
        else:
            rows_by_split = {None: rows}
    texts_by_split = {}
    for s, rows in rows_by_split.items():
        texts, labels = [], []
        for r in rows:
            t, y = r.get(text), r.get(label)
            if t is None or y is None or str(t).strip() == "" or str(y).strip() == "":
                continue  # blank rows are skipped, not guessed
            texts.append(str(t))
            labels.append(y)
        texts_by_split[s] = (texts, labels)
    all_labels = [y for _, ys in texts_by_split.values() for y in ys]
    if not all_labels:
        raise TaskError(f"{p.name}: no row has both a text and a label; check the {text!r} and {label!r} columns")
    names = _sorted_labels(all_labels)
    if len(names) < 2:
        raise TaskError(f"{p.name}: only one class ({names[0]!r}) in column {label!r}; a classifier needs at least 2")
    index = {n: i for i, n in enumerate(names)}
    if None in texts_by_split:
        texts, labels = texts_by_split[None]
        y = np.array([index[str(v)] for v in labels], dtype=np.int64)
        parts = stratified_split(y, seed, fractions)
        splits = {s: ([texts[i] for i in parts[s]], y[parts[s]]) for s in SPLITS}
        opts["split_rule"] = f"stratified {fractions} per class, seeded"
    else:
        missing = [s for s in ("train", "test") if not texts_by_split.get(s, ([], []))[0]]
        if missing:
            raise TaskError(f"{p.name}: the split column names no {' or '.join(missing)} rows; add them or drop the "
                            "column to split automatically")
        splits = {s: (texts_by_split.get(s, ([], []))[0],
                      np.array([index[str(v)] for v in texts_by_split.get(s, ([], []))[1]], dtype=np.int64))
                  for s in SPLITS}
        opts["split_rule"] = "from the data's own splits"
    return TextClassificationTask(
        p.stem, f"text classification from {p.name} ({len(names)} classes)", tuple(names),
        tuple(splits["train"][0]), splits["train"][1], tuple(splits["val"][0]), splits["val"][1],
        tuple(splits["test"][0]), splits["test"][1], options=opts)


def stratified_split(y: np.ndarray, seed: int, fractions=(0.7, 0.1, 0.2)) -> dict[str, np.ndarray]:
    """Per class: shuffle (seeded), then round(test) to test, round(val) to val, the rest (>= 1) to train."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise TaskError(f"split fractions must be three numbers >= 0 summing to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    out = {s: [] for s in SPLITS}
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        n = len(members)
        n_test = min(int(round(fractions[2] * n)), max(0, n - 1))
        n_val = min(int(round(fractions[1] * n)), max(0, n - 1 - n_test))
        out["test"].append(members[:n_test])
        out["val"].append(members[n_test:n_test + n_val])
        out["train"].append(members[n_test + n_val:])
    return {s: np.sort(np.concatenate(v)).astype(np.int64) for s, v in out.items()}


def _sorted_labels(values) -> list[str]:
    names = sorted({str(v) for v in values})
    try:
        return sorted(names, key=float)
    except ValueError:
        return names


def _read_hf_dataset(p: Path, text: str, label: str):
    try:
        import datasets
    except ImportError:
        raise TaskError("reading a datasets folder needs the `datasets` package; pip install datasets, or export the "
                        "data to .csv / .jsonl") from None
    try:
        ds = datasets.load_from_disk(str(p))
    except Exception as e:  # FileNotFoundError, a folder that is not a dataset ...
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise TaskError(f"cannot read {p} with datasets.load_from_disk: {first}; give a folder written by "
                        "Dataset.save_to_disk / DatasetDict.save_to_disk") from None
    parts = dict(ds) if isinstance(ds, datasets.DatasetDict) else {None: ds}
    rows_by_split, columns = {}, []
    for name, d in parts.items():
        columns = list(d.column_names)
        for col in (text, label):
            if col not in columns:
                opt = "text" if col == text else "label"
                raise TaskError(f"{p.name}{'/' + name if name else ''} has no column {col!r} (columns: "
                                f"{', '.join(columns)}); name the right one with {opt}=COLUMN")
        feat = d.features.get(label)
        names = getattr(feat, "names", None)
        ys = [names[v] if names and isinstance(v, int) and 0 <= v < len(names) else v for v in d[label]]
        rows = [{text: t, label: y} for t, y in zip(d[text], ys)]
        if name is None:
            rows_by_split[None] = rows
            continue
        s = _SPLIT_NAMES.get(name.lower())
        if s is None:
            continue  # e.g. "unsupervised": not part of a labelled task
        rows_by_split.setdefault(s, []).extend(rows)
    if None not in rows_by_split and not rows_by_split:
        raise TaskError(f"{p.name}: the DatasetDict has no train / validation / test split (has: "
                        f"{', '.join(str(k) for k in parts)}); rename the splits")
    if None not in rows_by_split and "test" not in rows_by_split:  # e.g. only "train": split it like a file
        rows_by_split = {None: [r for rows in rows_by_split.values() for r in rows]}
    return rows_by_split, columns
