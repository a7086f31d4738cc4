"""The built-in dense-prediction data: small grayscale pages rendered with PIL from REAL text, with EXACT
ground truth (``dense:pages``; workbench.tasks.dense).

Text: the docstrings of a fixed list of Python standard-library modules and the Zen of Python (``this``),
which ship with every Python install: split into words (runs of letters, digits and ``'.,;:-()``).
Font: Pillow's bundled default font (``ImageFont.load_default(size=...)``, the same on every machine).

One page (``size`` x ``size`` pixels, seed ``seed``; page ``i`` draws from ``numpy.random.default_rng([seed, i])``):
  background grey level U(0.70, 1.0); 0-3 clutter strokes (straight lines 1-2 px, any grey 0.2-0.7) and
  0-2 filled ellipses ("blobs", grey 0.45-0.85) drawn first; then one text block: font size from
  {8, 9, 10, 11, 12, 13, 14}, left margin 0-12 px, right margin 0-12 px, top 0-10 px, line pitch = size + 1..4 px,
  words taken in order from a random place in the text; text grey 0.0-0.35. 5% of pages carry no text.
  Each word's glyphs are rendered once on their own (antialiased); its box is the exact extent of its
  non-zero ink. A word is placed only where its box, grown by 1 px, touches no earlier word's box and lies
  inside the page; so word boxes never touch and the text mask's 8-connected components ARE the word boxes.
  Then a Gaussian blur of radius U(0, 0.6) px and Gaussian noise of sd U(0.01, 0.05); values clipped to [0, 1].
Targets: ``mask`` [size, size] uint8 = 1 inside any word box (the union of the boxes), and the boxes
(x0, y0, x1, y1), end-exclusive, per page.
"""
from __future__ import annotations

import re

import numpy as np

FONT_SIZES = (8, 9, 10, 11, 12, 13, 14)
TEXT_MODULES = ("json", "re", "os", "collections", "functools", "itertools", "pathlib", "subprocess", "argparse",
                "logging", "string", "textwrap", "random", "statistics", "fractions", "decimal", "heapq", "bisect",
                "csv", "zipfile", "tarfile", "shutil", "tempfile", "datetime", "calendar", "difflib", "pickle",
                "inspect", "ast", "typing", "dataclasses", "contextlib", "abc", "enum", "math", "uuid")
_FONTS: dict = {}
_GLYPHS: dict = {}


def source_words() -> list[str]:
    """The words of the built-in pages, in order: the Zen of Python, then each of TEXT_MODULES' docstrings."""
    import codecs
    import importlib
    import io
    from contextlib import redirect_stdout

    with redirect_stdout(io.StringIO()):  # importing ``this`` prints the Zen
        import this
    texts = [codecs.decode(this.s, "rot13")]
    for name in TEXT_MODULES:
        doc = importlib.import_module(name).__doc__
        if doc:
            texts.append(doc)
    return re.findall(r"[A-Za-z0-9'.,;:()\-]+", "\n".join(texts))


def _font(size: int):
    if size not in _FONTS:
        from PIL import ImageFont

        _FONTS[size] = ImageFont.load_default(size=size)
    return _FONTS[size]


def glyphs(word: str, size: int) -> tuple[np.ndarray, int]:
    """(alpha [h, w] float32 in (0, 1], the ink cropped to its exact extent; its top offset from the line's
    top) of ``word`` in the default font at ``size``; None alpha when the word has no ink."""
    key = (word, size)
    if key not in _GLYPHS:
        from PIL import Image, ImageDraw

        font = _font(size)
        w = int(font.getlength(word)) + 2 * size
        layer = Image.new("L", (w, 3 * size), 0)
        ImageDraw.Draw(layer).text((size, size), word, fill=255, font=font)
        box = layer.getbbox()
        if box is None:
            _GLYPHS[key] = (None, 0)
        else:
            a = np.asarray(layer.crop(box), dtype=np.float32) / 255.0
            _GLYPHS[key] = (a, box[1] - size)
    return _GLYPHS[key]


def _touches(box, boxes) -> bool:
    """Whether ``box`` grown by 1 px on every side overlaps any of ``boxes`` (all end-exclusive)."""
    x0, y0, x1, y1 = box
    return any(x0 - 1 < b[2] and b[0] < x1 + 1 and y0 - 1 < b[3] and b[1] < y1 + 1 for b in boxes)


def render_page(words: list[str], size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One page (see the module docstring): (image [size, size] float32 in [0, 1], mask [size, size] uint8,
    boxes [k, 4] int32 as x0, y0, x1, y1 end-exclusive)."""
    from PIL import Image, ImageDraw, ImageFilter

    bg = rng.uniform(0.70, 1.0)
    base = Image.new("L", (size, size), int(round(bg * 255)))
    draw = ImageDraw.Draw(base)
    for _ in range(int(rng.integers(0, 4))):
        pts = [tuple(int(v) for v in rng.integers(0, size, 2)) for _ in range(2)]
        draw.line(pts, fill=int(rng.uniform(0.2, 0.7) * 255), width=int(rng.integers(1, 3)))
    for _ in range(int(rng.integers(0, 3))):
        cx, cy = rng.integers(0, size, 2)
        rx, ry = rng.integers(2, max(3, size // 6), 2)
        draw.ellipse([int(cx - rx), int(cy - ry), int(cx + rx), int(cy + ry)], fill=int(rng.uniform(0.45, 0.85) * 255))
    img = np.asarray(base, dtype=np.float32) / 255.0
    boxes: list = []
    if rng.random() >= 0.05:
        fs = int(rng.choice(FONT_SIZES))
        left, right, top = int(rng.integers(0, 13)), int(rng.integers(0, 13)), int(rng.integers(0, 11))
        pitch = fs + int(rng.integers(1, 5))
        ink = rng.uniform(0.0, 0.35)
        space = max(2, int(round(_font(fs).getlength(" "))))
        k = int(rng.integers(0, len(words)))
        y = top
        while y + fs <= size:
            x = left
            while True:
                a, dy = glyphs(words[k % len(words)], fs)
                if a is None:
                    k += 1
                    continue
                h, w = a.shape
                box = (x, y + dy, x + w, y + dy + h)
                if box[2] > size - right and x > left:
                    break  # the line is full: the word starts the next line
                k += 1
                if box[0] >= 0 and box[1] >= 0 and box[2] <= size and box[3] <= size and not _touches(box, boxes):
                    region = img[box[1]:box[3], box[0]:box[2]]
                    img[box[1]:box[3], box[0]:box[2]] = region * (1 - a) + ink * a
                    boxes.append(box)
                x = box[2] + space
                if x >= size - right:
                    break
            y += pitch
    out = Image.fromarray(np.clip(img * 255.0, 0, 255).round().astype(np.uint8))
    radius = float(rng.uniform(0.0, 0.6))
    if radius > 0.05:
        out = out.filter(ImageFilter.GaussianBlur(radius))
    img = np.asarray(out, dtype=np.float32) / 255.0 + rng.normal(0.0, rng.uniform(0.01, 0.05), (size, size))
    mask = np.zeros((size, size), np.uint8)
    for x0, y0, x1, y1 in boxes:
        mask[y0:y1, x0:x1] = 1
    return np.clip(img, 0.0, 1.0).astype(np.float32), mask, np.asarray(boxes, np.int32).reshape(-1, 4)


def render_pages(n: int, size: int, seed: int, words: list[str] | None = None, progress=None):
    """``n`` pages (page i from ``default_rng([seed, i])``): (images [n, 1, size, size] float32, masks
    [n, size, size] uint8, boxes: a list of [k_i, 4] int32 arrays)."""
    words = words if words is not None else source_words()
    x = np.empty((n, 1, size, size), np.float32)
    m = np.empty((n, size, size), np.uint8)
    boxes = []
    for i in range(n):
        x[i, 0], m[i], b = render_page(words, size, np.random.default_rng([seed, i]))
        boxes.append(b)
        if progress is not None and (i + 1) % 100 == 0:
            progress(i + 1)
    return x, m, boxes
