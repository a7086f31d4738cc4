"""ONNX Runtime post-training quantization: static QDQ int8, dynamic int8, fp16.

Type choices come from measurements on this kind of CPU (x86-64 AVX2, no VNNI;
../shared/FINDINGS.md):
- static: QDQ, per-channel weights, activations uint8 / weights int8 (U8S8). ORT's default S8S8
  gives no speed-up without VNNI; U8S8 is ~1.9x faster but the AVX2 u8*s8 kernel sums pairs of
  products into int16 and saturates, so weights use 7 bits (reduce_range=True) to stay accurate.
- dynamic: weights uint8 (QUInt8 ran 1.1x vs fp32 where QInt8 ran 3.6x slower on conv nets).
  On conv nets ORT turns Conv into ConvInteger, which is SLOWER than fp32 on this CPU; the
  workbench measures and reports that instead of hiding it.
- fp16: weights and activations in float16 with fp32 inputs/outputs; halves the file, but the CPU
  EP has few fp16 kernels, so expect Casts and no speed-up.
"""
from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import QuantizationError
from ..fileio import atomic_path


@dataclass(frozen=True)
class Method:
    name: str
    precision: str
    describe: str  # one line for the lineage
    needs_calibration: bool
    run: callable = field(repr=False, compare=False)

    def apply(self, src: str | Path, dst: str | Path, calib: np.ndarray | None = None, input_name: str = "input",
              progress=None) -> None:
        dst = Path(dst)
        with atomic_path(dst, suffix=".onnx") as tmp:
            try:
                with _quiet():
                    self.run(Path(src), tmp, calib, input_name, progress)
            except QuantizationError:
                raise
            except Exception as e:
                raise QuantizationError(f"{self.name} quantization of {Path(src).name} failed: "
                                        f"{str(e).splitlines()[0][:300]}") from None


class _CalibReader:
    """Feeds calibration samples one at a time, reporting progress."""

    def __init__(self, data: np.ndarray, input_name: str, progress=None):
        self.data, self.input_name, self.progress, self.i = data, input_name, progress, 0

    def get_next(self):
        if self.i >= len(self.data):
            return None
        x = np.ascontiguousarray(self.data[self.i:self.i + 1], dtype=np.float32)
        self.i += 1
        if self.progress:
            self.progress(self.i / len(self.data))
        return {self.input_name: x}

    def rewind(self):
        self.i = 0


def _static(src: Path, dst: Path, calib, input_name, progress):
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if calib is None or len(calib) == 0:
        raise QuantizationError("static quantization needs calibration data; give the task's training samples")
    pre = dst.with_name(dst.name + ".pre.onnx")
    try:
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(dst), _CalibReader(calib, input_name, progress),
                        quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    finally:
        pre.unlink(missing_ok=True)


def _dynamic(src: Path, dst: Path, calib, input_name, progress):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QUInt8, per_channel=False)


def _fp16(src: Path, dst: Path, calib, input_name, progress):
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))


STATIC = Method("static", "int8", "quantize(ORT static QDQ int8: U8S8 per-channel, reduce_range, MinMax calibration)",
                True, _static)
DYNAMIC = Method("dynamic", "int8", "quantize(ORT dynamic int8: uint8 weights, per-tensor)", False, _dynamic)
FP16 = Method("fp16", "fp16", "quantize(fp16 weights and activations, fp32 I/O)", False, _fp16)


@contextlib.contextmanager
def _quiet():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)
