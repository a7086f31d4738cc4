"""Text tasks: an unlabelled sentence corpus (embedding distillation); text classification lives in
:mod:`.text_classification`.

``pydoc_corpus()``: English prose that ships with every CPython (``pydoc_data.topics``, the
language reference), cut into sentences and split BY DOCUMENT (topic), so that no held-out
sentence shares a document with a training sentence. ``load_text_corpus(path)``: the same from a
user's .txt (documents = blank-line-separated blocks) or .jsonl (field ``text``, one document per
line).

Every result has ``fingerprint()``: a content hash (sha256 of texts, labels and options) that keys
the teacher-output cache. numpy only at import time.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import TaskError

SPLITS = ("train", "val", "test")
SPLIT_RULE = ("documents ordered by sha256(seed|name); the first documents go to test until it holds >= "
              "test_frac of all sentences, the next to val until >= val_frac, the rest to train")

_SENT_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[]?[A-Z])")
_HEADING_RULE = re.compile(r"^[*=\-~^#]{3,}$")
_START = re.compile(r"^([A-Z]|[\"“*(][\w_.*]+)")  # a capital, or a quoted / starred term
_NEUTRAL = set("\"'“”‘’*().,;:")
_BULLET = re.compile(r"^(\*|-|\+|\d+\.|\(\d+\))\s+")
_CODE_MARKS = (">>>", "::=", "...:", "$ ", "def ", "class ", "import ", "return ", "lambda:", "{}", "[]")


# --------------------------------------------------------------------------- corpus

@dataclass(frozen=True, eq=False)
class TextCorpus:
    """Sentences of an unlabelled corpus, split by document. ``*_docs`` name each sentence's document."""

    name: str
    description: str
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    train_docs: tuple[str, ...]
    val_docs: tuple[str, ...]
    test_docs: tuple[str, ...]
    options: dict = field(default_factory=dict)
    metric: str = "cosine"  # mean cosine of student vs teacher sentence embeddings (higher is better)

    def texts(self, split: str) -> tuple[str, ...]:
        """The sentences of a split (train, val or test)."""
        if split not in SPLITS:
            raise TaskError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        return getattr(self, split)

    def docs(self, split: str) -> tuple[str, ...]:
        """The source document of each sentence of a split (the same order as texts)."""
        self.texts(split)
        return getattr(self, f"{split}_docs")

    def fingerprint(self) -> str:
        """sha256 of the name, options and every split's sentences and documents."""
        h = hashlib.sha256(json.dumps({"name": self.name, "options": self.options}, sort_keys=True,
                                      default=str).encode())
        for s in SPLITS:
            h.update(f"|{s}|{len(self.texts(s))}|".encode())
            for text, doc in zip(self.texts(s), self.docs(s)):
                h.update(doc.encode() + b"\x1f" + text.encode() + b"\x1e")
        return h.hexdigest()[:16]

    def summary(self) -> dict:
        """The corpus as recorded in results and cards: name, metric, options, fingerprint and split sizes."""
        out = {"name": self.name, "description": self.description, "metric": self.metric,
               "options": dict(self.options), "fingerprint": self.fingerprint(), "split_rule": SPLIT_RULE}
        for s in SPLITS:
            texts = self.texts(s)
            words = [len(t.split()) for t in texts]
            out[f"n_{s}"] = len(texts)
            out[f"docs_{s}"] = len(set(self.docs(s)))
            out[f"median_words_{s}"] = float(np.median(words)) if words else 0.0
        return out


def segment(text: str, min_words: int = 5, max_words: int = 60) -> list[str]:
    """Prose sentences of ``text``: paragraphs at blank lines; headings, code, grammar and
    doctest blocks dropped; a regex sentence splitter; sentences of ``min_words``..``max_words``
    words that start with a capital (or a quoted term) and end with . ! ? or : are kept, unless
    they hold table rules or are mostly symbols (letters < 75% of the characters other than
    quotes and punctuation)."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        lines = [ln.strip() for ln in block.strip("\n").splitlines() if ln.strip()]
        if not lines or _is_code(lines):
            continue
        lines = [ln for i, ln in enumerate(lines) if not _HEADING_RULE.match(ln)
                 and not (i + 1 < len(lines) and _HEADING_RULE.match(lines[i + 1]))]
        if not lines:
            continue
        para = " ".join(_BULLET.sub("", ln) for ln in lines)
        para = re.sub(r"\s+", " ", para).strip()
        for sent in _SENT_END.split(para):
            sent = sent.strip()
            n = len(sent.split())
            if not (min_words <= n <= max_words) or sent[-1] not in ".!?:" or not _START.match(sent):
                continue
            if any(m in sent for m in ("|", "+--", "==", ">>>")):  # table rows, doctests
                continue
            chars = [c for c in sent if not c.isspace() and c not in _NEUTRAL]
            if sum(c.isalpha() for c in chars) < 0.75 * len(chars):  # symbol-heavy: code or a formula
                continue
            out.append(sent)
    return out


def _is_code(lines: list[str]) -> bool:
    first = lines[0]
    if any(ln.startswith((">>>", "...", "%", "$")) or "::=" in ln for ln in lines):
        return True
    if first.endswith(":") and len(lines) == 1:  # "Note:", "For example:" -- a label, not a sentence
        return True
    codeish = sum(1 for ln in lines if ln.endswith((":", ")", "]", "}", ",")) and not ln.endswith(".")
                  and any(m in ln for m in ("(", "=", "[", "{", "def ", "class ")))
    return codeish > len(lines) / 2


def split_documents(doc_sizes: dict[str, int], seed: int, val_frac: float, test_frac: float) -> dict[str, str]:
    """Document -> split, deterministic (see SPLIT_RULE); every split gets >= 1 document when there are >= 3."""
    if not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
        raise TaskError(f"val_frac ({val_frac}) and test_frac ({test_frac}) must be in [0, 1) with a sum < 1")
    order = sorted(doc_sizes, key=lambda d: hashlib.sha256(f"{seed}|{d}".encode()).hexdigest())
    total = sum(doc_sizes.values()) or 1
    out, counts, i = {}, {"test": 0, "val": 0}, 0
    for split, frac in (("test", test_frac), ("val", val_frac)):
        while i < len(order) - 1 and frac > 0 and counts[split] < frac * total:
            out[order[i]] = split
            counts[split] += doc_sizes[order[i]]
            i += 1
    for d in order[i:]:
        out[d] = "train"
    return out


def build_corpus(name: str, description: str, documents: dict[str, str], *, seed: int = 0, val_frac: float = 0.1,
                 test_frac: float = 0.15, min_words: int = 5, max_words: int = 60, max_train: int | None = None,
                 max_val: int | None = None, max_test: int | None = None, options: dict | None = None,
                 extra_train: dict[str, str] | None = None) -> TextCorpus:
    """Segment ``documents`` (id -> text), dedupe sentences (first occurrence in document-id order wins,
    so no sentence is in two splits), split by document, then optionally subsample each split
    (seeded; ``max_train``, ``max_val``, ``max_test``). ``extra_train``: more documents
    (id -> text) whose sentences all go to the training split, after those of ``documents``; any
    sentence also found in ``documents`` is dropped from them, so nothing held out is trained on."""
    if not documents:
        raise TaskError(f"{name}: no documents; give a corpus with text in it")
    seen = set()

    def sentences(docs: dict[str, str]) -> dict[str, list[str]]:
        out = {}
        for doc in sorted(docs):
            kept = []
            for s in segment(docs[doc], min_words, max_words):
                k = s.lower()
                if k not in seen:
                    seen.add(k)
                    kept.append(s)
            if kept:
                out[doc] = kept
        return out

    per_doc = sentences(documents)
    n_total = sum(len(v) for v in per_doc.values())
    if n_total < 3 or len(per_doc) < 3:
        raise TaskError(f"{name}: only {n_total} usable sentence(s) in {len(per_doc)} document(s) after segmentation "
                        f"({min_words}-{max_words} words, prose only); give at least 3 documents of English prose")
    assign = split_documents({d: len(v) for d, v in per_doc.items()}, seed, val_frac, test_frac)
    extra = sentences(extra_train or {})
    parts: dict[str, tuple[list, list]] = {s: ([], []) for s in SPLITS}
    for doc in sorted(per_doc):
        texts, docs = parts[assign[doc]]
        texts.extend(per_doc[doc])
        docs.extend([doc] * len(per_doc[doc]))
    extra_part = ([s for d in sorted(extra) for s in extra[d]], [f"extra:{d}" for d in sorted(extra) for _ in extra[d]])
    for split, cap in (("train", max_train), ("val", max_val), ("test", max_test)):
        parts[split] = _subsample(parts[split], cap, [seed, SPLITS.index(split)])
    if extra_part[0]:  # the corpus's own training sentences first; extra ones fill up to max_train
        room = None if max_train is None else max(0, max_train - len(parts["train"][0]))
        extra_part = _subsample(extra_part, room, [seed, 99])
        parts["train"] = (parts["train"][0] + extra_part[0], parts["train"][1] + extra_part[1])
    opts = {"seed": seed, "val_frac": val_frac, "test_frac": test_frac, "min_words": min_words,
            "max_words": max_words, "max_train": max_train, "max_val": max_val, "max_test": max_test, **(options or {})}
    return TextCorpus(name, description, *(tuple(parts[s][0]) for s in SPLITS),
                      *(tuple(parts[s][1]) for s in SPLITS), options=opts)


EXTRA_TRAIN = ("stdlib-docstrings",)


def _subsample(part: tuple[list, list], cap: int | None, seed) -> tuple[list, list]:
    texts, docs = part
    if cap is None or len(texts) <= cap:
        return part
    keep = np.sort(np.random.default_rng(seed).choice(len(texts), size=cap, replace=False))
    return [texts[i] for i in keep], [docs[i] for i in keep]


def pydoc_corpus(seed: int = 0, val_frac: float = 0.1, test_frac: float = 0.15, min_words: int = 5,
                 max_words: int = 60, max_train: int | None = None, max_val: int | None = None,
                 max_test: int | None = None, extra_train: str | None = None) -> TextCorpus:
    """Sentences of CPython's ``pydoc_data.topics`` (the language reference; one document per topic).

    ``extra_train="stdlib-docstrings"`` adds the docstrings of the standard library's own .py files
    (read with ``ast``, nothing imported; one document per file; tests excluded) to the TRAINING split
    only -- more unlabelled English that ships with CPython. Val and test stay pydoc topics."""
    import sys

    from pydoc_data.topics import topics

    if extra_train is not None and extra_train not in EXTRA_TRAIN:
        raise TaskError(f"unknown extra_train {extra_train!r}; use one of {', '.join(EXTRA_TRAIN)} or leave it out")
    extra = stdlib_docstrings() if extra_train == "stdlib-docstrings" else None
    desc = (f"CPython {sys.version.split()[0]} pydoc_data.topics: language-reference prose, one document per topic, "
            "split by document" + (" (+ standard-library docstrings, training split only)" if extra else ""))
    return build_corpus("pydoc", desc, dict(topics), seed=seed, val_frac=val_frac, test_frac=test_frac,
                        min_words=min_words, max_words=max_words, max_train=max_train, max_val=max_val, max_test=max_test,
                        options={"python": sys.version.split()[0], "extra_train": extra_train}, extra_train=extra)


_SKIP_DIRS = {"test", "tests", "idlelib", "site-packages", "lib2to3", "turtledemo", "__pycache__", "ensurepip",
              "tkinter", "dist-packages"}


def stdlib_docstrings() -> dict[str, str]:
    """Module, class and function docstrings of the standard library's .py files (path -> text), via ``ast``."""
    import ast
    import os
    import sysconfig

    root = sysconfig.get_paths()["stdlib"]
    out = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("test"))
        for f in sorted(files):
            if not f.endswith(".py") or f.startswith("test"):
                continue
            path = os.path.join(folder, f)
            try:
                with open(path, encoding="utf-8") as fh:
                    tree = ast.parse(fh.read())
            except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
                continue
            docs = [ast.get_docstring(n) for n in ast.walk(tree)
                    if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
            text = "\n\n".join(d for d in docs if d)
            if text:
                out[os.path.relpath(path, root)] = text
    return out


def load_text_corpus(path: str | Path, **options) -> TextCorpus:
    """A user's corpus: .txt (each block separated by blank lines is one document) or .jsonl (one JSON
    object per line; its ``text`` field is one document). ``options`` as for :func:`build_corpus`."""
    p = Path(path)
    if not p.is_file():
        raise TaskError(f"text corpus {path} not found; give a .txt (blank-line-separated documents) or a .jsonl "
                        "file (one {\"text\": ...} per line)")
    suffix = p.suffix.lower()
    raw = _read_text(p)
    if suffix == ".txt":
        blocks = [b.strip() for b in re.split(r"\n\s*\n", raw) if b.strip()]
        docs = {f"doc{i:06d}": b for i, b in enumerate(blocks)}
    elif suffix == ".jsonl":
        docs = {f"doc{i:06d}": str(r["text"]) for i, r in enumerate(_jsonl_rows(p, raw, ("text",)))}
    else:
        raise TaskError(f"text corpus {p.name}: unsupported file type {suffix or '(none)'}; use .txt or .jsonl")
    return build_corpus(p.stem, f"text corpus {p.name}", docs, options={"sha256": hashlib.sha256(raw.encode()).hexdigest()[:16]},
                        **options)


# --------------------------------------------------------------------------- text classification

def _read_text(p: Path) -> str:
    try:
        return p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise TaskError(f"{p.name} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except OSError as e:
        raise TaskError(f"cannot read {p}: {e.strerror}; check the path and its permissions") from None


def _jsonl_rows(p: Path, raw: str, required: tuple[str, ...]):
    for i, line in enumerate(raw.splitlines()):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise TaskError(f"{p.name} line {i + 1} is not valid JSON ({e.msg}); write one JSON object per line") from None
        if not isinstance(row, dict):
            raise TaskError(f"{p.name} line {i + 1} is not a JSON object; write one {{...}} per line")
        for k in required:
            if k not in row:
                raise TaskError(f"{p.name} line {i + 1} has no field {k!r}; every line needs one")
        yield row
