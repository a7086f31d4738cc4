"""`workbench export`: a PyTorch model to the deployment formats, parity-checked, evaluated and measured."""
from __future__ import annotations

import click


@click.command()
@click.argument("model_spec", metavar="MODEL_SPEC")
@click.option("--to", "to", default="onnx", show_default=True, metavar="FORMATS",
              help="Comma-separated formats: onnx, ort-mobile, executorch, litert.")
@click.option("--int8", "int8", metavar="METHODS", help="Also int8, by comma-separated quantization methods, each "
              "applied by the formats it belongs to: static, dynamic (onnx, ort-mobile), pt2e (executorch), "
              "litert-dynamic, litert-full (litert); options as METHOD?key=value, e.g. pt2e?per_channel=false.")
@click.option("--task", "task", required=True, metavar="SPEC", help="Inputs and labels: digits, "
              "images:DIR?size=64&grey=true, npz:FILE. Parity and calibration use its inputs; accuracy its labels.")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default: exports/<model name>).")
@click.option("--threads", default=1, show_default=True, type=int, help="Threads of every runtime when measuring.")
@click.option("--rounds", default=3, show_default=True, type=int, help="Interleaved rounds per runtime.")
@click.option("--max-s", type=float, metavar="SECONDS", help="Cap on each artifact's timed seconds per round.")
@click.option("--no-measure", is_flag=True, help="Export, check and evaluate only; no latency.")
def export(model_spec, to, int8, task, out, threads, rounds, max_s, no_measure):
    """Export a PyTorch model (torchvision:NAME, py:FILE.py:FN, zoo:NAME) to phone formats: parity-checked
    artifacts, accuracy through each runtime, latency through the harness; a table and export.json.

    Example: workbench export torchvision:mobilenet_v3_small --to onnx,executorch,litert --int8 pt2e,litert-dynamic
    --task "images:photos?size=64"
    """
    from ..export.standalone import export_model

    export_model(model_spec, to, int8, task, out, threads=threads, rounds=rounds, max_s=max_s,
                 measure=not no_measure, echo=click.echo)
