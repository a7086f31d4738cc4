"""One interface for every export format: ``Exporter.export(model, example, out, options) -> Artifact``.

One registered :class:`Exporter` per format, keyed by the name ``workbench export --to`` takes:

    onnx         .onnx through ONNX Runtime ("ort"); int8 by the ONNX -> ONNX quantization methods
    ort-mobile   .with_runtime_opt.ort (ORT format) from an .onnx; int8 = an ORT-quantized .onnx converted
    executorch   .pte (XNNPACK delegate); int8 by the ``pt2e`` method (PT2E, XNNPACK quantizer)
    litert       .tflite; int8 by ``litert-dynamic`` / ``litert-full`` (ai-edge-quantizer)

Every export checks parity with its PyTorch source through the runtime that will load the file:
fp32 within ``atol + rtol*|ref|`` (else one-line ParityError, nothing written); int8: max |diff| and
top-1 agreement recorded in ``artifact.extra["export"]["parity"]``. Which quantization methods an
exporter applies is the method's own ``applied_by`` (workbench.quantize.methods), never a list of names
here. What a runtime name needs (its exporter, artifact format, modules to install) is a lookup:
:func:`exporter_for_runtime`.

Imports run one way: export -> {evaluate, runtimes, quantize.methods}; nothing below imports export.
"""
from __future__ import annotations

import abc

import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import Artifact, sha256_file
from ..errors import ExportError
from ..registry import Registry

EXPORTERS: Registry = Registry("export format")


@dataclass(frozen=True)
class ExportOptions:
    """How one export runs. ``method``: a quantization Method this exporter applies (int8), None = fp32.
    ``check_inputs``: parity inputs (default: the example). ``calibration``: inputs for methods that
    calibrate (evenly spaced down to the method's ``calib_samples`` when set). ``onnx_source``: an
    existing .onnx to convert (ort-mobile) or quantize (onnx) instead of exporting the model again.
    A model with several inputs (a transformer's input_ids and attention_mask) passes ``check_inputs`` and the
    example as dicts (input name -> array) and ``parity_check``; only exporters with ``multi_input`` take it."""

    input_name: str = "input"
    check_inputs: Any = None
    atol: float = 1e-4
    rtol: float = 1e-3
    method: Any = None
    calibration: Any = None
    onnx_source: str | None = None
    min_top1: float | None = None
    progress: Any = None  # a workbench.progress reporter (bars while calibrating), or None
    # multi-input models (``check_inputs`` a dict of input name -> array): ``(path, atol or None) -> max |diff|``
    # checks the artifact against its PyTorch source (a task family's parity); exporters that convert an .onnx use it
    parity_check: Any = None


def evenly_spaced(x, n: int | None):
    """``n`` evenly spaced rows of ``x`` (all when ``n`` is None): the calibration rule every method shares.
    ``x``: an array, or a dict of input name -> array (the same rows of each: a transformer's token feeds)."""
    rows = len(next(iter(x.values()))) if isinstance(x, dict) else len(x)
    if n is None or n >= rows:
        return x
    idx = np.linspace(0, rows - 1, n).round().astype(int)
    return {k: np.asarray(v)[idx] for k, v in x.items()} if isinstance(x, dict) else x[idx]


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def param_count(model) -> int:
    """Parameters of a PyTorch module (0 for anything without ``parameters()``)."""
    params = getattr(model, "parameters", None)
    return int(sum(p.numel() for p in params())) if params else 0


class Exporter(abc.ABC):
    """One export format. Subclasses set the class attributes and implement :meth:`_export`.

    ``name`` (registry key), ``runtime`` (the adapter that loads the artifacts), ``format`` (artifact
    format), ``suffix`` (file name ending, e.g. ``.pte``), ``source`` ("pytorch": converts the model;
    "onnx": converts an .onnx), ``needs`` ((module, install line) the export needs beyond the runtime),
    ``how`` (lineage text of the conversion), ``multi_input`` (takes models with several inputs: the
    example and parity inputs as dicts, see :class:`ExportOptions`)."""

    name: str = ""
    runtime: str = ""
    format: str = ""
    suffix: str = ""
    source: str = "pytorch"
    needs: tuple[tuple[str, str], ...] = ()
    how: str = ""
    multi_input: bool = False  # converts models with several inputs (those that convert an .onnx: any inputs it has)

    def missing(self) -> str | None:
        """None when this format can be exported to and run here; else one line naming the install command."""
        from ..runtimes import RUNTIMES

        rt = RUNTIMES.get(self.runtime)
        if not rt.available():
            return f"runtime {self.runtime!r} is not installed; install it with: {rt.install_hint}"
        for module, hint in self.needs:
            if not _has(module):
                return (f"runtime {self.runtime!r} needs {module.split('.')[0]} to export its artifacts; "
                        f"install it with: {hint}")
        return None

    def applies(self, method) -> bool:
        """Whether this exporter applies quantization ``method`` (by the method's ``applied_by``)."""
        return getattr(method, "applied_by", "onnx") == (self.name if self.source == "pytorch" else "onnx")

    def recipe_int8(self, mobile) -> tuple[str, ...]:
        """The int8 method specs a recipe's ``[mobile]`` section asks of this format (none by default)."""
        return ()

    def precision_word(self, method) -> str:
        """The format's own word for the precision ``method`` gives ("fp32" without one), e.g. ExecuTorch's
        "int8" or LiteRT's "int8-dynamic": what its converter is called with and what records name."""
        return "fp32" if method is None else method.precision

    def export(self, model, example: np.ndarray | dict, out: str | Path, options: ExportOptions = ExportOptions()) -> Artifact:
        """Export ``model`` (a PyTorch module; put in eval mode) to ``out`` (written atomically), checking
        parity with it; ``example``: one input batch (batch 1 for the mobile formats). Returns the
        Artifact (absolute path, ``extra["export"]`` with the format's details and parity)."""
        out = Path(out)
        if not out.name.endswith(self.suffix):
            raise ExportError(f"{self.name} files end in {self.suffix}, not {out.name!r}; name the output "
                              f"MODEL{self.suffix}")
        if options.method is not None and not self.applies(options.method):
            raise ExportError(f"{self.name} does not apply quantization method {options.method.name} (it is applied "
                              f"by {getattr(options.method, 'applied_by', 'onnx')}); choose a method of this format")
        if options.method is not None and options.method.needs_calibration and (
                options.calibration is None or len(options.calibration) == 0) and not options.onnx_source:
            raise ExportError(f"{options.method.name} needs calibration inputs; pass a few hundred examples of the "
                              "task (ExportOptions.calibration)")
        if isinstance(example, dict) and not self.multi_input:
            raise ExportError(f"{self.name} converts single-input models; this model takes inputs "
                              f"{', '.join(example)}; export it to onnx or ort-mobile instead")
        t0 = time.perf_counter()
        if not isinstance(example, dict):  # token ids stay integers; images are float32
            example = np.ascontiguousarray(example, dtype=np.float32)
        made = self._export(model, example, out, options)
        took = time.perf_counter() - t0
        lineage = (self.how,) + ((f"quantize({made['quantizer']})",) if made.get("quantizer") else ())
        parity = made.get("parity")
        return Artifact(id=out.name[: -len(self.suffix)], path=str(out), format=self.format, sha256=sha256_file(out),
                        size_bytes=out.stat().st_size, params=param_count(model),
                        precision=options.method.precision if options.method else "fp32",
                        lineage=lineage, made_in_s=round(took, 2),
                        parity_max_abs=parity.max_abs if parity is not None else made.get("max_abs"),
                        extra={"export": made["export"], "runtime": self.runtime})

    @abc.abstractmethod
    def _export(self, model, example: np.ndarray, out: Path, options: ExportOptions) -> dict:
        """Write ``out``; return {"export": dict for the record, "parity": Parity | None, "quantizer": str,
        "max_abs": float (when there is no Parity)}."""


def exporter_for_runtime(runtime: str) -> Exporter:
    """The registered exporter whose artifacts ``runtime`` loads; a one-line ExportError naming the runtimes
    that have one when none does."""
    for name in EXPORTERS.names():
        exp = EXPORTERS.get(name)
        if exp.runtime == runtime:
            return exp
    known = ", ".join(EXPORTERS.get(n).runtime for n in EXPORTERS.names())
    raise ExportError(f"no exporter makes artifacts for runtime {runtime!r}; runtimes with one: {known}")
