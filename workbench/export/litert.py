"""PyTorch -> LiteRT ``.tflite`` via litert-torch; int8 with ai-edge-quantizer.

    fp32          litert_torch.convert(model, sample_kwargs={input_name: x}).export(path)
    int8-dynamic  dynamic-range: int8 per-channel weights, activations quantized on the fly
                  (ai_edge_quantizer.recipe.dynamic_wi8_afp32)
    int8-full     full integer: int8 weights AND activations, int8 model inputs/outputs, calibrated
                  on task inputs (ai_edge_quantizer.recipe.static_wi8_ai8)

The model has a fixed batch of 1 (``sample``'s shape) and one signature whose input is named
``input_name``. A multi-input model (a transformer) takes ``sample`` as a dict of input name -> array: the
signature's inputs get those names, the forward is called with them in the dict's order, and the model is
exported at the sample's fixed sequence length (shorter token inputs are right-padded by the runtime
adapter; the artifact's ``notes`` say so). litert-torch downcasts 64-bit inputs to 32-bit, so token ids and
masks are int32 in the .tflite (the adapter casts int64 feeds; ``fixed_inputs`` records the dtypes).
Parity with PyTorch goes through the workbench's LiteRT adapter: fp32 within ``atol + rtol*|ref|``; int8 by
top-1 agreement (max |diff| recorded).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ExportError, RuntimeUnavailable
from ..fileio import atomic_path
from .base import ExportOptions, Exporter, evenly_spaced
from .mobile_common import (ExportRecord, Parity, _one_line, calibration_rows, check_parity, fixed_shapes,
                            quiet_native_output, require, sequence_note, token_inputs)

PRECISIONS = ("fp32", "int8-dynamic", "int8-full")


@dataclass(frozen=True)
class LiteRTExport(ExportRecord):
    """What one LiteRT export wrote: the .tflite, its quantizer and its parity with PyTorch."""

    path: str
    precision: str
    size_bytes: int
    parity: Parity | None = None
    quantizer: str = ""
    made_in_s: float = 0.0
    fixed_inputs: dict = field(default_factory=dict)  # input name -> {"shape", "dtype"} in the .tflite
    notes: str = ""  # e.g. the fixed sequence length of a transformer's token inputs


def _float_tflite(model, x, input_name: str) -> bytes:
    """The fp32 .tflite of ``model``: ``x`` one tensor (its input named ``input_name``) or a dict of input name ->
    tensor (the forward called with them in that order, the signature's inputs named after them)."""
    import litert_torch
    import torch

    class _Named(torch.nn.Module):
        """Gives the signature input the task's name (litert-torch names inputs after forward's kwargs)."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, **kwargs):
            return self.inner(*(kwargs[n] for n in names))

    feeds = dict(x) if isinstance(x, dict) else {input_name: x}
    names = list(feeds)
    wrapped = _Named(model).eval()
    return bytes(litert_torch.convert(wrapped, sample_args=(), sample_kwargs=feeds).model_content())


def _quantize(float_model: bytes, precision: str, calibration, input_name: str, batch: int,
              length: int | None = None) -> tuple[bytes, str]:
    from ai_edge_quantizer import quantizer, recipe

    if precision == "int8-dynamic":
        q = quantizer.Quantizer(float_model, recipe.dynamic_wi8_afp32())
        res = q.quantize(enable_progress_report=False)
        return bytes(res.quantized_model), "ai-edge-quantizer dynamic_wi8_afp32 (int8 per-channel weights, dynamic activations)"
    q = quantizer.Quantizer(float_model, recipe.static_wi8_ai8())
    if isinstance(calibration, dict):  # token feeds: one example at a time, padded, in the model's int32
        data = [{k: v.astype(np.int32) if np.issubdtype(v.dtype, np.integer) else v for k, v in row.items()}
                for row in calibration_rows(calibration, length)]
        batch = 1
    else:
        calib = np.ascontiguousarray(calibration, dtype=np.float32)
        data = [{input_name: calib[s:s + batch]} for s in range(0, len(calib) - batch + 1, batch)]
    signature = next(iter(_signatures(float_model)))
    result = q.calibrate({signature: data}, num_threads=1)
    res = q.quantize(result, enable_progress_report=False)
    return (bytes(res.quantized_model),
            f"ai-edge-quantizer static_wi8_ai8 (full integer, int8 I/O), calibrated on {len(data) * batch} inputs")


def _signatures(model_content: bytes) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=model_content).get_signature_list()


def export_litert(model, sample, path: str | Path, *, precision: str = "fp32",
                  calibration=None, input_name: str = "input",
                  check_inputs=None, atol: float = 1e-4, rtol: float = 1e-3,
                  min_top1: float | None = None) -> LiteRTExport:
    """Export ``model`` (put in eval mode) to a .tflite at ``path`` (written atomically); see the module doc.

    ``precision`` "int8-full" needs ``calibration`` inputs (e.g. task.x_val[:256]). ``sample``, ``calibration``
    and ``check_inputs`` are dicts of input name -> array for a multi-input model.
    """
    if precision not in PRECISIONS:
        raise ExportError(f"unknown LiteRT precision {precision!r}; use one of: {', '.join(PRECISIONS)}")
    if precision == "int8-full" and (calibration is None or len(calibration) == 0):
        raise ExportError("LiteRT full-integer int8 needs calibration inputs; pass calibration=<a few hundred "
                          "examples of the task, e.g. task.x_val[:256]> or use precision='int8-dynamic'")
    require("litert")
    import importlib.util

    for mod, dist in (("litert_torch", "litert-torch==0.10.0"), ("ai_edge_quantizer", "ai-edge-quantizer")):
        if precision == "fp32" and mod == "ai_edge_quantizer":
            continue
        if importlib.util.find_spec(mod) is None:
            raise RuntimeUnavailable(f"LiteRT export needs {dist}, which is not installed; install it with: "
                      'pip install -c constraints.txt -e ".[litert]"')
    path = Path(path)
    if path.suffix.lower() != ".tflite":
        raise ExportError(f"LiteRT models end in .tflite, not {path.suffix or 'nothing'}; name the output "
                          f"{path.with_suffix('.tflite').name}")
    t0 = time.perf_counter()
    import torch

    model.eval()
    multi = isinstance(sample, dict)
    sample = token_inputs(sample) if multi else np.ascontiguousarray(sample, dtype=np.float32)
    x = {k: torch.from_numpy(v) for k, v in sample.items()} if multi else torch.from_numpy(sample)
    length = sample["attention_mask"].shape[1] if multi and "attention_mask" in sample else None
    quant = ""
    try:
        with quiet_native_output(), torch.no_grad():
            content = _float_tflite(model, x, input_name)
            if precision != "fp32":
                content, quant = _quantize(content, precision, calibration, input_name, len(sample), length)
    except (ExportError, RuntimeUnavailable):
        raise
    except Exception as e:
        raise ExportError(f"LiteRT export ({precision}) failed for {path.name}: {type(e).__name__}: {_one_line(e)}; "
                          "simplify the model's forward or keep it on ONNX Runtime") from None
    with atomic_path(path, suffix=".tflite") as tmp:
        tmp.write_bytes(content)
        parity = check_parity(model, tmp, "litert", check_inputs if check_inputs is not None else sample,
                              input_name, atol=atol if precision == "fp32" else None, rtol=rtol,
                              min_top1=min_top1, what=f"LiteRT {precision} export {path.name}")
    return LiteRTExport(str(path), precision, path.stat().st_size, parity, quant, time.perf_counter() - t0,
                        _io(path, fixed_shapes(sample) if multi else {input_name: list(sample.shape)}),
                        sequence_note(sample))


def _io(path: Path, shapes: dict) -> dict:
    """Input name -> {"shape" (the fixed shape it was exported with), "dtype" in the .tflite (token ids: int32)}."""
    from ..runtimes import get_runtime

    specs = get_runtime("litert").load(str(path), 1).input_specs()
    return {s.name: {"shape": shapes.get(s.name, list(s.shape)), "dtype": s.dtype} for s in specs}


class LiteRTExporter(Exporter):
    """``.tflite`` through litert-torch (batch 1): fp32, or int8 by the ``litert-dynamic`` (dynamic-range) or
    ``litert-full`` (full integer, int8 I/O, calibrated on ``options.calibration``) quantization method."""

    name = "litert"
    runtime = "litert"
    format = "tflite"
    suffix = ".tflite"
    needs = (("litert_torch", 'pip install -c constraints.txt -e ".[litert]"'),
             ("ai_edge_quantizer", 'pip install -c constraints.txt -e ".[litert]"'))
    how = "export(litert .tflite via litert-torch, batch 1)"
    multi_input = True  # a transformer's token inputs, at a fixed sequence length (int32 in the model)

    def recipe_int8(self, mobile) -> tuple[str, ...]:
        """``[mobile] int8`` with ``litert_int8`` = ["dynamic", "full"]: litert-dynamic, litert-full."""
        return tuple(f"litert-{x}" for x in mobile.litert_int8) if mobile.int8 else ()

    def precision_word(self, method) -> str:
        """LiteRT's converter takes "fp32", "int8-dynamic" or "int8-full" (the method's name after ``litert-``)."""
        return "fp32" if method is None else "int8-" + method.name.split("-", 1)[1]

    def _export(self, model, example, out: Path, options: ExportOptions) -> dict:
        m = options.method
        calib = None
        if m is not None and m.needs_calibration:
            calib = evenly_spaced(options.calibration, m.options.get("calib_samples"))
        res = export_litert(model, example, out, precision=self.precision_word(m), calibration=calib,
                            input_name=options.input_name, check_inputs=options.check_inputs, atol=options.atol,
                            rtol=options.rtol, min_top1=options.min_top1)
        export = {k: v for k, v in res.to_json().items() if k not in ("path", "size_bytes", "made_in_s")}
        return {"export": export, "parity": res.parity, "quantizer": res.quantizer}
