"""PyTorch -> ONNX via torch.onnx.export (dynamo exporter), with a parity check through ONNX Runtime; the
``onnx`` exporter of the one export interface (:mod:`.base`)."""
from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from pathlib import Path

import numpy as np

from ..errors import ExportError, ParityError
from ..fileio import atomic_path
from .base import Exporter

OPSET = 18


def export_onnx(model, sample: np.ndarray, path: str | Path, input_name: str = "input",
                check_inputs: np.ndarray | None = None, atol: float = 1e-4, rtol: float = 1e-3) -> float:
    """Export ``model`` (eval mode, dynamic batch) to a single-file ONNX model at ``path``.

    The outputs of the ONNX model under ONNX Runtime are compared with PyTorch's on
    ``check_inputs`` (default: ``sample``); raises ParityError naming the max difference when
    |onnx - torch| > atol + rtol * |torch| anywhere. Returns the max abs difference.
    """
    import torch

    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(sample))
    path = Path(path)
    with atomic_path(path, suffix=".onnx") as tmp:
        try:
            with _quiet():
                torch.onnx.export(
                    model, (x,), str(tmp), dynamo=True, external_data=False, opset_version=OPSET,
                    input_names=[input_name], output_names=["logits"],
                    dynamic_shapes=({0: torch.export.Dim("batch", max=4096)},),
                    optimize=True, verbose=False,
                )
        except Exception as e:
            first = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()[0][:300]
            raise ExportError(f"torch.onnx.export failed for {path.name}: {first}; "
                              "simplify the model's forward or report the unsupported operator") from None
        strip_source_locations(tmp)
        diff = onnx_parity(model, tmp, check_inputs if check_inputs is not None else sample, input_name,
                           atol=atol, rtol=rtol, what=f"ONNX export {path.name}")
    return diff


SOURCE_KEYS = ("pkg.torch.onnx.stack_trace",)  # file paths and line numbers of the Python source


def strip_source_locations(path: str | Path) -> None:
    """Remove the exporter's per-node source locations (file:line of the model's Python code) from the
    ONNX file at ``path``, so the same weights and graph give the same bytes after an unrelated edit of
    the source: artifacts are content-addressed, and everything made from them is keyed by their sha256."""
    import onnx

    model = onnx.load(str(path))

    def strip(graph) -> None:
        for node in graph.node:
            keep = [p for p in node.metadata_props if p.key not in SOURCE_KEYS]
            if len(keep) != len(node.metadata_props):
                del node.metadata_props[:]
                node.metadata_props.extend(keep)
            for attr in node.attribute:
                if attr.HasField("g"):
                    strip(attr.g)
                for g in attr.graphs:
                    strip(g)

    strip(model.graph)
    onnx.save(model, str(path))


def onnx_parity(model, onnx_path, inputs: np.ndarray, input_name: str = "input", atol: float | None = 1e-4,
                rtol: float = 1e-3, what: str = "ONNX model") -> float:
    """Max |ORT(onnx_path)(inputs) - model(inputs)|; raises ParityError when out of tolerance (atol=None: never)."""
    import torch

    from ..runtimes import get_runtime

    with torch.inference_mode():
        ref = model(torch.from_numpy(np.ascontiguousarray(inputs))).numpy()
    sess = get_runtime("ort").load(str(onnx_path), 1)
    out = sess.run({input_name: np.ascontiguousarray(inputs, dtype=np.float32)})[0]
    diff = np.abs(out.astype(np.float64) - ref)
    max_abs = float(diff.max())
    if atol is not None and np.any(diff > atol + rtol * np.abs(ref)):
        raise ParityError(what, max_abs, atol)
    return max_abs


@contextlib.contextmanager
def _quiet():
    """The dynamo exporter prints progress lines and warnings; keep the terminal for our own progress."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lvl in zip(loggers, levels):
            lg.setLevel(lvl)


class OnnxExporter(Exporter):
    """``.onnx`` for ONNX Runtime: fp32 by :func:`export_onnx` (parity checked), int8/fp16 by an ONNX -> ONNX
    quantization method (workbench.quantize) applied to the fp32 file (``options.onnx_source`` when given),
    its parity with PyTorch recorded (max |diff|, top-1 agreement)."""

    name = "onnx"
    runtime = "ort"
    format = "onnx"
    suffix = ".onnx"
    how = "export(onnx, torch.onnx dynamo exporter, dynamic batch)"

    def _export(self, model, example, out, options):
        import tempfile

        from .mobile_common import check_parity

        checks = options.check_inputs if options.check_inputs is not None else example
        if options.method is None:
            diff = export_onnx(model, example, out, options.input_name, checks, atol=options.atol, rtol=options.rtol)
            return {"export": {"exporter": self.how, "opset": OPSET, "parity_max_abs": diff}, "max_abs": diff}
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
            src = options.onnx_source
            if src is None:
                src = Path(tmp) / "fp32.onnx"
                export_onnx(model, example, src, options.input_name, checks, atol=options.atol, rtol=options.rtol)
            calib = options.calibration
            n = options.method.options.get("calib_samples")
            if calib is not None and n:
                from .base import evenly_spaced

                calib = evenly_spaced(calib, n)
            notes = options.method.apply(src, out, calib, options.input_name)
        parity = check_parity(model, out, "ort", checks, options.input_name, atol=None, rtol=options.rtol,
                              min_top1=options.min_top1, what=f"{options.method.name} quantized {out.name}")
        return {"export": {"exporter": self.how, "method": options.method.spec, "notes": list(notes),
                           "parity": parity.to_json()}, "parity": parity, "quantizer": options.method.describe[9:-1]}
