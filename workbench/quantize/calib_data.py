"""Calibration data for static quantization: which axis of each input holds the samples, and the
feeds ORT's calibrator gets, one sample a step.

A real model's inputs do not all carry their samples on axis 0: an LSTM state ``[2, batch, 128]``
has its batch on axis 1, a sample rate ``sr`` is a 0-d scalar with no batch at all. Per input, the
samples lie (:class:`CalibData`'s ``axes``):

- on an axis ``k`` of an array of the input's rank: sample ``i`` is ``take(a, [i], axis=k)`` (size 1
  there: ``state [2, 64, 128]`` -> ``[2, 1, 128]``);
- on a new leading axis (``"stack"``): the array has one more dim than the input and sample ``i``
  is ``a[i]`` (``sr`` saved as 64 values -> one 0-d value a step);
- nowhere (None): the array is the input itself and is fed as is on every step (a 0-d ``sr``).

The axis comes from ``--calib-axis NAME=K`` (``NAME=none``: fed as is), else from the model's
symbolic dims (:func:`workbench.measure.model_inputs.batch_axes`), else from the data (an array that
is the input's fixed shape is fed as is; one that differs only where the input has a fixed 1 is
sliced there). Every array is checked against the model before ORT sees it, so a mismatch is one line
naming the input and the fix, not ORT's message.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import QuantizationError, RecipeError

# Calibration samples are fed to ORT's calibrator in chunks of this many: the calibrator keeps every
# intermediate tensor of a chunk in memory before folding it into ranges / histograms.
CALIB_CHUNK = 32
STACK = "stack"  # samples along a new leading axis
_AXIS_RE = re.compile(r"^([^=\s]+)=(-?\d+|none)$", re.IGNORECASE)


def _dims(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _fits(shape, spec_shape) -> bool:
    return len(shape) == len(spec_shape) and all(not (isinstance(d, int) and d > 0) or d == v
                                                 for d, v in zip(spec_shape, shape))


def _where(axis) -> str:
    return "fed as is on every step" if axis is None else ("one per row of axis 0" if axis == STACK
                                                           else f"samples on axis {axis}")


class CalibData(dict):
    """Calibration inputs: a mapping input name -> array (in the model's dtypes), plus where each input's
    samples lie (``axes``: an axis, ``"stack"`` or None = fed as is) and how many there are (``n``).

    A dict, so code that only reads the arrays keeps working; code that picks samples uses
    :meth:`sample` / :meth:`subset` (or :func:`calib_count` / :func:`take_samples`), never ``v[i]``."""

    def __init__(self, arrays: dict, axes: dict, n: int):
        super().__init__(arrays)
        self.axes, self.n = dict(axes), int(n)

    @property
    def arrays(self) -> dict:
        """The arrays as a plain dict."""
        return dict(self)

    def sample(self, i: int) -> dict:
        """The feeds of step ``i``: each input sliced to one sample (size 1 on its axis), or as is."""
        out = {}
        for k, a in self.items():
            ax = self.axes[k]
            v = a if ax is None else (a[i] if ax == STACK else np.take(a, [i], axis=ax))
            v = np.asarray(v)
            out[k] = v if v.flags.c_contiguous else v.copy(order="C")
        return out

    def subset(self, idx) -> "CalibData":
        """Only the samples ``idx`` (inputs fed as is stay whole)."""
        idx = np.asarray(idx, dtype=np.int64)
        arrays = {k: a if self.axes[k] is None else (a[idx] if self.axes[k] == STACK else np.take(a, idx, axis=self.axes[k]))
                  for k, a in self.items()}
        return CalibData(arrays, self.axes, len(idx))

    def head(self, count: int) -> "CalibData":
        """The first ``count`` samples."""
        return self.subset(np.arange(min(count, self.n)))

    def describe(self) -> str:
        """'x [64, 16] samples on axis 0, state [2, 64, 8] samples on axis 1, sr [] fed as is on every step'."""
        return ", ".join(f"{k} {_dims(a.shape)} {_where(self.axes[k])}" for k, a in self.items())


def calib_count(calib) -> int:
    """How many calibration samples ``calib`` holds: a CalibData's ``n``, an array's length, or the
    axis-0 length of a plain dict's first array that has one."""
    if isinstance(calib, CalibData):
        return calib.n
    if isinstance(calib, dict):
        return next((len(v) for v in calib.values() if np.ndim(v)), 1) if calib else 0
    return len(calib)


def take_samples(calib, idx):
    """Samples ``idx`` of a CalibData (on each input's own axis), an array or a dict (axis 0)."""
    if isinstance(calib, CalibData):
        return calib.subset(idx)
    if isinstance(calib, dict):
        return {k: np.asarray(v)[idx] for k, v in calib.items()}
    return np.asarray(calib)[idx]


def parse_calib_axes(items) -> dict:
    """``["state=1", "sr=none"]`` (``--calib-axis``) or a dict -> {input name: axis or None}."""
    if not items:
        return {}
    if isinstance(items, dict):
        pairs = [(str(k), v, f"{k}={v}") for k, v in items.items()]
    else:
        pairs = []
        for text in [items] if isinstance(items, str) else items:
            m = _AXIS_RE.match(str(text).strip())
            if not m:
                raise RecipeError(f"--calib-axis expects NAME=AXIS (a whole number, or none for an input fed as is), "
                                  f"got {text!r}; e.g. --calib-axis state=1 --calib-axis sr=none")
            pairs.append((m.group(1), m.group(2), text))
    out = {}
    for name, v, text in pairs:
        v = None if v is None or str(v).lower() == "none" else v
        if v is not None and (isinstance(v, bool) or not str(v).lstrip("-").isdigit()):
            raise RecipeError(f"--calib-axis {text}: the axis must be a whole number or none")
        if name in out:
            raise RecipeError(f"--calib-axis {name} is given twice; give it once")
        out[name] = None if v is None else int(v)
    return out


def calib_layout(specs, arrays: dict, given: dict | None, what: str) -> tuple[dict, int]:
    """({input: axis | "stack" | None}, sample count) for ``arrays`` fed to ``specs``; QuantizationError /
    RecipeError (one line, with the fix) when an array does not fit its input."""
    from ..measure.model_inputs import batch_axes

    given = dict(given or {})
    by_name = {s.name: s for s in specs}
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        raise RecipeError(f"--calib-axis {unknown[0]}=... names no input of {what} (inputs: "
                          f"{', '.join(by_name)}); use one of those names")
    detected = batch_axes(specs)
    axes, counts = {}, {}
    for s in specs:
        a = arrays[s.name]
        shape, r = tuple(a.shape), len(s.shape)
        fix = (f"save it as {_dims(s.shape)} with the samples along one axis (and say which with --calib-axis "
               f"{s.name}=K), as {_dims(s.shape)} itself to feed it as is (--calib-axis {s.name}=none), or with one "
               "more leading axis of samples")
        bad = f"calibration array {s.name!r} has shape {_dims(shape)} but input {s.name!r} of {what} is {_dims(s.shape)}"
        if s.name in given:
            ax = given[s.name]
            if ax is None:
                if not _fits(shape, s.shape):
                    raise QuantizationError(f"{bad}; with --calib-axis {s.name}=none it is fed as is, so it must fit")
            else:
                if len(shape) != r:
                    raise QuantizationError(f"{bad}; --calib-axis {s.name}={ax} needs an array of the input's rank {r}")
                if not -r <= ax < r:
                    raise RecipeError(f"--calib-axis {s.name}={ax} is outside the {r} axes of input {s.name!r} "
                                      f"{_dims(s.shape)}; give 0..{r - 1}")
                ax %= r
                if not _fits(shape[:ax] + (1,) + shape[ax + 1:], s.shape):
                    raise QuantizationError(f"{bad}: one sample along axis {ax} does not fit; {fix}")
        elif len(shape) == r + 1 and _fits(shape[1:], s.shape):
            ax = STACK
        elif len(shape) != r:
            raise QuantizationError(f"{bad}; {fix}")
        elif detected.get(s.name) is not None and _fits(_one(shape, detected[s.name]), s.shape):
            ax = detected[s.name]
        elif _fits(shape, s.shape):
            ax = None
        else:
            ones = [i for i, (d, v) in enumerate(zip(s.shape, shape)) if d == 1 and v != 1]
            if len(ones) != 1 or not _fits(_one(shape, ones[0]), s.shape):
                raise QuantizationError(f"{bad}: no axis of it holds the samples; {fix}")
            ax = ones[0]
        axes[s.name] = ax
        if ax is not None:
            counts[s.name] = shape[0] if ax == STACK else shape[ax]
    if len(set(counts.values())) > 1 or 0 in counts.values():
        got = ", ".join(f"{k} {v} ({_where(axes[k])})" for k, v in counts.items())
        raise QuantizationError(f"calibration inputs must hold the same number (>= 1) of samples; got {got}; "
                                "save the same number for every input, or feed one as is with --calib-axis NAME=none")
    return axes, next(iter(counts.values()), 1)


def _one(shape, ax) -> tuple:
    return tuple(shape[:ax]) + (1,) + tuple(shape[ax + 1:])


def model_input_specs(path: Path) -> list:
    """The model's graph inputs (InputSpec list) without loading external weights."""
    from ..errors import ArtifactError
    from ..measure.model_inputs import read_model_inputs

    try:
        return list(read_model_inputs(str(path)).specs)
    except ArtifactError as e:
        raise QuantizationError(str(e)) from None


def calib_set(specs, calib, what: str, axes: dict | None = None, input_name: str | None = None) -> CalibData:
    """``calib`` (an array for a one-input model, a dict naming every input, or a CalibData) checked
    against ``specs`` -> CalibData in the model's dtypes, each input's sample axis resolved."""
    names = [s.name for s in specs]
    if isinstance(calib, CalibData):
        if axes:
            calib = dict(calib.arrays)
        else:
            return calib
    if isinstance(calib, dict):
        missing = [n for n in names if n not in calib]
        extra = [k for k in calib if k not in names]
        if missing or extra:
            raise QuantizationError(f"calibration data has arrays {sorted(calib)} but {what} has inputs "
                                    f"{names}; give one array per input, named like the inputs")
        data = dict(calib)
    else:
        if len(names) != 1:
            raise QuantizationError(f"{what} has {len(names)} inputs ({', '.join(names)}); give calibration "
                                    "data as a dict input name -> array")
        data = {names[0] if input_name not in names else input_name: calib}
    by_name = {s.name: s for s in specs}
    arrays = {}
    for k, v in data.items():
        dt = by_name[k].dtype
        arrays[k] = np.asarray(v).astype(np.float32 if dt == "str" else dt, copy=False)
    layout, n = calib_layout(specs, arrays, axes, what)
    return CalibData(arrays, layout, n)


def generated_calib(specs, shapes, n: int, what: str) -> CalibData:
    """``n`` generated calibration samples (--calib-random): each input generated with ``n`` on its batch
    axis, or once and fed as is when it has none (a 0-d sample rate); ``shapes``: ``--shape`` items.
    Sized before anything is allocated (one line naming the input and the fix)."""
    from ..measure.inputs import generate, parse_shapes, resolve_shapes
    from ..measure.model_inputs import batch_axes
    from ..measure.sizing import shape_fix, too_big

    dims, _, _ = resolve_shapes(specs, parse_shapes(shapes), what)
    found = batch_axes(specs)
    arrays, axes = {}, {}
    for s in specs:
        shape, ax = tuple(dims[s.name]), found[s.name]
        full = shape if ax is None else shape[:ax] + (n,) + shape[ax + 1:]
        fix = shape_fix(s, shape) if s.dtype == "str" or too_big(shape, s.dtype) else \
            f"calibrate on fewer samples (--calib-samples N; {n} asked for) or {shape_fix(s, shape)}"
        arrays[s.name], _ = generate(s, full, fix=fix)
        axes[s.name] = ax
    return CalibData(arrays, axes, n if any(a is not None for a in axes.values()) else 1)


def calibration_feeds(path: Path, calib, input_name: str, samples: int | None, axes: dict | None = None) -> CalibData:
    """Check ``calib`` against the model's inputs -> CalibData in the model's dtypes.

    An array is the single input of a one-input model (its name need not match ``input_name``);
    a dict must name every input; a CalibData keeps its axes unless ``axes`` ({input: axis or None},
    ``--calib-axis``) says otherwise. ``samples``: keep that many, evenly spaced over the data
    (deterministic; a class-sorted folder still yields every class).
    """
    if calib is None or (not isinstance(calib, dict) and len(calib) == 0):
        raise QuantizationError("static quantization needs calibration data; give the task's training samples")
    data = calib_set(model_input_specs(path), calib, Path(path).name, axes, input_name=input_name)
    n = data.n
    if samples is None or samples >= n:
        return data
    return data.subset(np.unique(np.linspace(0, n - 1, samples).round().astype(int)))


class CalibReader:
    """Feeds calibration samples one at a time (each input sliced to one sample on its own axis, or fed
    as is) and reports progress.

    Supports ORT's strided collection (``__len__`` / ``set_range``) so the calibrator folds one chunk at
    a time into its ranges; ``__len__`` is rounded up to a multiple of the chunk (ORT insists on it);
    the last chunk is short. ``data``: a CalibData, or a dict of arrays with samples on axis 0.
    """

    def __init__(self, data, progress=None, chunk: int | None = None):
        if not isinstance(data, CalibData):
            data = CalibData({k: np.asarray(v) for k, v in data.items()}, {k: 0 for k in data},
                             len(next(iter(data.values()))))
        self.data, self.progress, self.chunk = data, progress, chunk or CALIB_CHUNK
        self.n = data.n
        self.i, self.end = 0, self.n

    def __len__(self):
        return -(-self.n // self.chunk) * self.chunk

    def set_range(self, start_index: int, end_index: int):
        """ORT's strided collection: feed samples start..end next."""
        self.i, self.end = start_index, min(end_index, self.n)

    def get_next(self):
        """The next sample's feeds, or None at the end of the range."""
        if self.i >= self.end:
            return None
        feeds = self.data.sample(self.i)
        self.i += 1
        if self.progress:
            self.progress(self.i / self.n)
        return feeds

    def rewind(self):
        """Back to the first sample."""
        self.i, self.end = 0, self.n

