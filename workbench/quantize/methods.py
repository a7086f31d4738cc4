"""A quantization method = a name + a validated options dict.

    method = METHODS.get("static").with_options(calibration="percentile", per_channel=False)
    method = make_method("static", calibration="entropy")          # the same, by name
    method = parse_method("static?calibration=entropy&calib_samples=128")  # a spec string (recipes, auto)

Every configured method has a deterministic ``describe`` (one line for the lineage), a ``spec``
(round-trips through :func:`parse_method`, only non-default options), and a ``key`` (content hash
of the name and ALL resolved options, defaults included, so changing a default changes the key).
``auto`` can enumerate candidates as ``make_method(name, **opts)`` over option grids.

Options are declared per method as :class:`Option` rows; values are checked and coerced (CLI strings
such as ``"true"``, ``"Conv,MatMul"`` or ``"128"`` are accepted), and every bad value is a one-line
RecipeError listing the valid ones.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from ..errors import QuantizationError, RecipeError
from ..fileio import atomic_path
from ..registry import Registry

_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
_NONE = ("none", "all", "unset", "default", "")

# Every method, by name. Each module that defines methods registers them when imported (ort_ptq,
# optimum_ptq, and the exporter-applied ones below); the package __init__ imports those modules, and
# Python always runs it before any submodule, so the registry is full whenever this module is usable.
METHODS: Registry = Registry("quantization method")


@dataclass(frozen=True)
class Option:
    """One option of a method: kind is 'bool', 'choice', 'int', 'float' or 'names' (a tuple of strings).

    ``choices``: allowed values ('choice', and 'int' when given); ``lo``/``hi``: bounds of a number;
    ``optional``: None is allowed (written 'none'/'all' on the command line).
    """

    name: str
    kind: str
    default: object
    help: str
    choices: tuple = ()
    lo: float | None = None
    hi: float | None = None
    optional: bool = False

    def valid(self) -> str:
        """The valid values, in words (for error messages and --help)."""
        none = " or none" if self.optional else ""
        if self.kind == "bool":
            return "true or false"
        if self.choices:
            return "one of: " + ", ".join(str(c) for c in self.choices) + none
        if self.kind == "names":
            return "a comma-separated list of names (empty = all)"
        rng = []
        if self.lo is not None:
            rng.append(f">= {self.lo:g}")
        if self.hi is not None:
            rng.append(f"<= {self.hi:g}")
        what = "a whole number" if self.kind == "int" else "a number"
        return f"{what} {' and '.join(rng)}".strip() + none

    def coerce(self, value, method: str):
        def bad():
            raise RecipeError(f"quantization method {method}: option {self.name}={value!r} is not valid; "
                              f"use {self.valid()}")

        if isinstance(value, str):
            text = value.strip()
            if self.optional and text.lower() in _NONE:
                return None
        else:
            text = None
        if value is None:
            if self.optional or self.kind == "names":
                return None if self.optional else ()
            bad()
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            if text is not None and text.lower() in _TRUE + _FALSE:
                return text.lower() in _TRUE
            bad()
        if self.kind == "names":
            items = text.split(",") if text is not None else value
            if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
                bad()
            return tuple(dict.fromkeys(i.strip() for i in items if i.strip()))  # order kept, duplicates dropped
        if self.kind == "choice":
            if text is None:
                bad()
            low = {str(c).lower(): c for c in self.choices}
            if text.lower() not in low:
                bad()
            return low[text.lower()]
        conv = int if self.kind == "int" else float
        try:
            if isinstance(value, bool):
                raise ValueError
            num = conv(text) if text is not None else value
            if self.kind == "int" and (not isinstance(num, int) or isinstance(num, bool)):
                if isinstance(num, float) and num.is_integer():
                    num = int(num)
                else:
                    raise ValueError
            num = conv(num)
        except (TypeError, ValueError):
            bad()
        if self.choices and num not in self.choices:
            bad()
        if (self.lo is not None and num < self.lo) or (self.hi is not None and num > self.hi):
            bad()
        return num


@dataclass(frozen=True)
class Method:
    """A quantization method with its options resolved. Writes a new ONNX file from an fp32 one.

    ``run(src, dst, calib, input_name, progress, options)`` does the work; ``describer(options)``
    gives the one-line lineage text. ``settings`` holds the resolved options as sorted pairs (hashable).
    """

    name: str
    precision: str  # "int8", "fp16", "int4"
    needs_calibration: bool
    run: Callable = field(repr=False, compare=False)
    schema: tuple[Option, ...] = field(default=(), repr=False)
    settings: tuple = ()
    describer: Callable = field(default=None, repr=False, compare=False)
    check: Callable | None = field(default=None, repr=False, compare=False)  # cross-option checks
    # the exporter (format) that applies the method: "onnx" (ONNX -> ONNX by ``apply``); "executorch" /
    # "litert": applied while converting the PyTorch model (workbench.export; ``apply`` refuses)
    applied_by: str = "onnx"

    def __post_init__(self):
        if not self.settings or {k for k, _ in self.settings} != {o.name for o in self.schema}:
            resolved = {o.name: o.coerce(o.default, self.name) if o.default is not None else None
                        for o in self.schema}
            resolved.update(dict(self.settings))
            object.__setattr__(self, "settings", tuple(sorted(resolved.items())))

    # -- options ---------------------------------------------------------------------------------
    @property
    def options(self) -> dict:
        """Every option with its value (defaults filled in)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.settings}

    @property
    def defaults(self) -> dict:
        return {o.name: (list(o.default) if isinstance(o.default, tuple) else o.default) for o in self.schema}

    def with_options(self, **options) -> "Method":
        """A copy with some options changed; unknown names or bad values raise a one-line RecipeError."""
        by_name = {o.name: o for o in self.schema}
        unknown = sorted(set(options) - set(by_name))
        if unknown:
            raise RecipeError(f"quantization method {self.name} has no option {', '.join(unknown)}; "
                              f"valid: {', '.join(sorted(by_name)) or '(none)'}")
        new = dict(self.settings)
        for k, v in options.items():
            new[k] = by_name[k].coerce(v, self.name)
        if self.check is not None:
            self.check(new, self.name)
        return replace(self, settings=tuple(sorted(new.items())))

    def option_help(self) -> list[str]:
        """'name: help (valid values; default X)' per option."""
        return [f"{o.name}: {o.help} ({o.valid()}; default {_fmt(o.default)})" for o in self.schema]

    # -- identity --------------------------------------------------------------------------------
    @property
    def describe(self) -> str:
        """One deterministic line for the lineage, e.g. 'quantize(ORT static QDQ int8: U8S8 per-channel, ...)'."""
        return self.describer(self.options) if self.describer else f"quantize({self.spec})"

    @property
    def changed(self) -> dict:
        """The options that differ from the defaults."""
        base = dict(replace(self, settings=()).settings)
        return {k: v for k, v in self.settings if base.get(k) != v}

    @property
    def spec(self) -> str:
        """``name`` or ``name?key=value&...`` with the non-default options (sorted); parse_method reads it back."""
        ch = self.changed
        if not ch:
            return self.name
        return self.name + "?" + "&".join(f"{k}={_fmt(v)}" for k, v in sorted(ch.items()))

    @property
    def key(self) -> str:
        """Content key: a hash of the name, precision and every resolved option (defaults included)."""
        raw = json.dumps({"method": self.name, "precision": self.precision, "options": self.options},
                         sort_keys=True, default=str)
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    # -- work ------------------------------------------------------------------------------------
    def apply(self, src: str | Path, dst: str | Path, calib=None, input_name: str = "input",
              progress=None) -> tuple[str, ...]:
        """Quantize ``src`` into ``dst`` (atomically). ``calib``: an array (single-input model) or a dict
        input name -> array, samples along axis 0; ``progress(fraction)`` during calibration.

        Returns the notes of the graph preparation (:mod:`.graph_prep`: Constant weights moved, opset
        raised, per-tensor fallback ...), also stamped into ``dst``'s metadata for its diagnostics. A file
        onnxruntime cannot load is never written: QuantizationError, one line saying why and what to try."""
        if self.applied_by != "onnx":
            _exporter_applies(self)
        from .graph_prep import load_error, stamp
        from .ort_logs import quiet

        dst = Path(dst)
        with atomic_path(dst, suffix=".onnx") as tmp:
            try:
                with quiet():
                    notes = tuple(n for n in (self.run(Path(src), tmp, calib, input_name, progress, self.options)
                                              or ()) if n)
                err = load_error(tmp)
                if err:
                    raise QuantizationError(f"the {self.name} model of {Path(src).name} does not load in "
                                            f"onnxruntime: {err}; try other options or another method")
                stamp(tmp, notes)
                return notes
            except (QuantizationError, RecipeError):
                raise
            except MemoryError:
                raise QuantizationError(f"{self.name} quantization of {Path(src).name} ran out of memory; "
                                        "use fewer calibration samples (calib_samples=N) or calibration=minmax") from None
            except Exception as e:
                from .graph_prep import short_ort_error

                first = short_ort_error(e)
                raise QuantizationError(f"{self.name} quantization of {Path(src).name} failed: {first}") from None


# -- methods applied by an exporter while it converts the PyTorch model (not ONNX -> ONNX) -----------
def _exporter_applies(method, *_args, **_kw):
    """``run``/``apply`` of an exporter-applied method: one line saying where the method applies."""
    name = getattr(method, "name", "this method")
    fmt = getattr(method, "applied_by", "its format")
    raise QuantizationError(f"quantization method {name} quantizes while exporting to {fmt}, not an ONNX file; "
                            f"use: workbench export MODEL --to {fmt} --int8 {name}")


_CALIB_N = Option("calib_samples", "int", None, "calibration inputs used, evenly spaced over the data given "
                  "(none = the caller's default: [quantize] calib_samples in a recipe, 256 for workbench export)",
                  lo=1, optional=True)
PT2E = Method("pt2e", "int8", True, _exporter_applies, (
    Option("per_channel", "bool", True, "one weight scale per output channel"), _CALIB_N),
    describer=lambda o: ("quantize(PT2E XNNPACKQuantizer, symmetric int8, "
                         f"{'per-channel' if o['per_channel'] else 'per-tensor'} weights, static activations)"),
    applied_by="executorch")
LITERT_DYNAMIC = Method("litert-dynamic", "int8", False, _exporter_applies, (),
                        describer=lambda o: "quantize(ai-edge-quantizer dynamic_wi8_afp32: int8 per-channel weights, "
                                            "dynamic activations)", applied_by="litert")
LITERT_FULL = Method("litert-full", "int8", True, _exporter_applies, (_CALIB_N,),
                     describer=lambda o: "quantize(ai-edge-quantizer static_wi8_ai8: full integer, int8 I/O)",
                     applied_by="litert")
EXPORTER_METHODS = (PT2E, LITERT_DYNAMIC, LITERT_FULL)
for _m in EXPORTER_METHODS:  # PT2E (executorch) and LiteRT int8: applied by their exporter (workbench.export)
    METHODS.register(_m.name, _m)


def _fmt(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    return f"{v:g}" if isinstance(v, float) else str(v)


def make_method(name: str, **options) -> Method:
    """The registered method ``name`` with ``options`` applied (validated)."""
    base = METHODS.get(name)
    return base.with_options(**options) if options else base


def parse_method(text: str) -> Method:
    """A method from a spec string: ``static``, ``static?calibration=entropy&per_channel=false``."""
    from ..specs import parse_spec

    if isinstance(text, Method):
        return text
    spec = parse_spec(text, "quantization method")
    if spec.target:
        raise RecipeError(f"quantization method {text!r}: write NAME or NAME?key=value&..., "
                          "e.g. static?calibration=entropy")
    return make_method(spec.kind, **spec.options)


def parse_option_pairs(pairs) -> dict:
    """``["calibration=entropy", "per_channel=false"]`` (CLI ``--option``) -> dict of raw strings."""
    out: dict = {}
    for p in pairs or ():
        k, eq, v = str(p).partition("=")
        if not eq or not k.strip():
            raise RecipeError(f"--option expects KEY=VALUE, got {p!r}; e.g. --option calibration=entropy")
        if k.strip() in out:
            raise RecipeError(f"--option {k.strip()} is given twice; give it once")
        out[k.strip()] = v.strip()
    return out
