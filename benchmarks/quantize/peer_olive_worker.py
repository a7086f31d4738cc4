"""Olive's side of benchmarks/quantize/peer_olive.py; runs in Olive's own venv (benchmarks/.venv-olive).

    benchmarks/.venv-olive/bin/python benchmarks/quantize/peer_olive_worker.py JOB.json OUT.json

JOB.json: {"model": fp32 .onnx, "calib_npz": .npz of input name -> [N, ...] calibration samples,
"work_dir": a folder for Olive's cache and outputs, "variants": ["static", "dynamic"], "threads": 1}.
Each variant is one Olive workflow with a single pass and Olive's own defaults for it, as
`olive quantize --implementation ort` would pick (OnnxStaticQuantization with the calibration data,
OnnxDynamicQuantization), on the CPU execution provider. OUT.json: per variant the quantized model's
path, the pass config Olive resolved, and the wall seconds the workflow took. Nothing is timed here
but Olive's own run time: latency is measured by the workbench's harness in the main venv.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PASSES = {"static": "OnnxStaticQuantization", "dynamic": "OnnxDynamicQuantization"}


def workflow(model: str, pass_type: str, calib_npz: str, out_dir: Path, cache_dir: Path) -> dict:
    """An Olive run config: the ONNX model, one quantization pass (Olive's defaults), CPU EP, no evaluation."""
    pass_cfg = {"type": pass_type}
    if pass_type == "OnnxStaticQuantization":
        pass_cfg["data_config"] = "calib"
    return {
        "input_model": {"type": "ONNXModel", "model_path": model},
        "systems": {"local_system": {"type": "LocalSystem", "accelerators": [
            {"device": "cpu", "execution_providers": ["CPUExecutionProvider"]}]}},
        "data_configs": [{"name": "calib", "type": "DataContainer",
                          "user_script": str(HERE / "peer_olive_data.py"),
                          "load_dataset_config": {"type": "npz_samples", "params": {"path": calib_npz}},
                          "dataloader_config": {"params": {"batch_size": 1}}}],
        "passes": {"quantize": pass_cfg},
        "host": "local_system", "target": "local_system",
        "cache_dir": str(cache_dir), "output_dir": str(out_dir),
        "evaluate_input_model": False, "log_severity_level": 3,
    }


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    os.environ.setdefault("OMP_NUM_THREADS", str(job.get("threads", 1)))
    os.environ["OLIVE_DISABLE_TELEMETRY"] = "1"  # nothing leaves this machine
    import olive
    from olive.workflows import run as olive_run

    work = Path(job["work_dir"])
    out = {"olive_version": getattr(olive, "__version__", None), "variants": {}}
    for v in job["variants"]:
        out_dir, cache_dir = work / f"olive-{v}", work / f"olive-{v}-cache"
        cfg = workflow(job["model"], PASSES[v], job["calib_npz"], out_dir, cache_dir)
        t0 = time.perf_counter()
        olive_run(cfg)
        seconds = time.perf_counter() - t0
        models = sorted(p for p in out_dir.rglob("*.onnx"))
        if not models:
            raise SystemExit(f"Olive wrote no .onnx under {out_dir} for {v}")
        runs = [json.loads(p.read_text()) for p in sorted(cache_dir.rglob("run.json"))]
        cfg_used = next((r.get("pass_config") for r in runs if r.get("pass_config")), {}) or {}
        keep = ("quant_mode", "quant_format", "precision", "activation_type", "per_channel", "reduce_range",
                "calibrate_method", "quant_preprocess", "activation_symmetric", "weight_symmetric")
        out["variants"][v] = {"path": str(models[0]), "pass": PASSES[v], "seconds": seconds,
                              "pass_config": {k: cfg_used.get(k) for k in keep if k in cfg_used}}
    import onnxruntime

    out["onnxruntime_version"] = onnxruntime.__version__
    Path(sys.argv[2]).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
