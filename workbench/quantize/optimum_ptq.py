"""optimum's ORTQuantizer with its presets, as a workbench method (``optimum?preset=avx512_vnni``).

Hugging Face users know these presets; offering them beside the workbench's own methods lets the
report and ``auto``'s comparison put them on the same chart, measured the same way. The presets are
dynamic int8 (``is_static=False``): weights quantized offline, activations at run time, suited to
transformer MatMuls. optimum is an optional extra: ``pip install -c constraints.txt -e ".[peer]"``
(optimum-onnx 0.1.0 pins optimum~=2.1 and transformers<4.58, which the workbench also uses).
"""
from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

from ..errors import QuantizationError
from .methods import METHODS, Method, Option

PRESETS = ("avx512_vnni", "avx512", "avx2", "arm64")
INSTALL = 'pip install -c constraints.txt -e ".[peer]"  (optimum-onnx[onnxruntime]==0.1.0)'


def available() -> bool:
    """Whether optimum's onnxruntime extra is installed (the optimum method needs it)."""
    try:
        return importlib.util.find_spec("optimum") is not None and importlib.util.find_spec("optimum.onnxruntime") is not None
    except (ImportError, ValueError):
        return False


def resolve_preset(preset: str) -> str:
    """``auto``: the preset for this CPU (arm64 on ARM; else avx512_vnni / avx512 / avx2 by its flags)."""
    if preset != "auto":
        return preset
    import platform

    if platform.machine().lower() in ("arm64", "aarch64"):
        return "arm64"
    from ..measure import collect_environment

    isa = collect_environment(["ort"]).get("isa", {})
    return "avx512_vnni" if isa.get("avx512_vnni") else "avx512" if isa.get("avx512f") else "avx2"


def _optimum(src: Path, dst: Path, calib, input_name, progress, options):
    if not available():
        raise QuantizationError(f"method optimum needs optimum's ORTQuantizer, which is not installed; install it with: "
                                f"{INSTALL}")
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    cfg = getattr(AutoQuantizationConfig, resolve_preset(options["preset"]))(is_static=False, per_channel=options["per_channel"])
    if options["operators"]:
        cfg.operators_to_quantize = list(options["operators"])
    # ORTQuantizer reads a model from a folder and writes <stem>_quantized.onnx into another one
    from ..fileio.containment import temp_prefix  # owner pid in the name: removed by a later run if we are killed

    with tempfile.TemporaryDirectory(prefix=temp_prefix("optimum")) as d:
        model_dir, out_dir = Path(d) / "model", Path(d) / "out"
        model_dir.mkdir()
        from .graph_prep import prepare_graph

        prep = prepare_graph(src, model_dir / "model.onnx")  # Constant weights -> initializers, shapes
        if prep.path != model_dir / "model.onnx":
            shutil.copyfile(src, model_dir / "model.onnx")
        ORTQuantizer.from_pretrained(model_dir, file_name="model.onnx").quantize(save_dir=out_dir,
                                                                                 quantization_config=cfg)
        made = out_dir / "model_quantized.onnx"
        if not made.is_file():
            raise QuantizationError(f"optimum's ORTQuantizer wrote no model for {src.name}")
        shutil.copyfile(made, dst)
    return list(prep.notes)


def _describe(o: dict) -> str:
    ops = f", operators {','.join(o['operators'])}" if o["operators"] else ""
    preset = o["preset"] if o["preset"] != "auto" else f"auto = {resolve_preset('auto')} on this CPU"
    return (f"quantize(optimum ORTQuantizer preset {preset}: dynamic int8, "
            f"{'per-channel' if o['per_channel'] else 'per-tensor'}{ops})")


OPTIONS = (
    Option("preset", "choice", "auto", "optimum's AutoQuantizationConfig preset (the CPU it targets; auto = "
           "this CPU's)", ("auto",) + PRESETS),
    Option("per_channel", "bool", True, "one weight scale per output channel"),
    Option("operators", "names", (), "operator types to quantize (empty = the preset's list)"),
)

OPTIMUM = Method("optimum", "int8", False, _optimum, OPTIONS, describer=_describe)
METHODS.register("optimum", OPTIMUM)  # optional extra: optimum's ORTQuantizer presets
