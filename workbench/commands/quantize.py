"""`workbench quantize`: quantize any ONNX model and compare it with fp32."""
from __future__ import annotations

import click


@click.command()
@click.argument("model")
@click.option("--method", required=True, type=click.Choice(["static", "dynamic", "fp16", "int4", "optimum", "auto"]),
              help="static: int8 calibrated on data (QDQ or QOperator); dynamic: int8 weights, activations "
                   "quantized at run time; fp16; int4: weight-only MatMulNBits for MatMul weights; optimum: optimum's "
                   "ORTQuantizer presets (dynamic; extra peer); auto: propose "
                   "candidates for this graph and CPU, measure them interleaved with fp32, keep the fastest within "
                   "--max-drop (fp32 itself, said loudly, when none is faster).")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Method option, repeatable. static: format=qdq|qoperator, calibration=minmax|entropy|percentile, "
                   "percentile=99.999, per_channel, reduce_range, symmetric_activations, symmetric_weights "
                   "(true/false), activation_type=u8|s8, weight_type=s8|u8, op_types=Conv,MatMul, exclude_nodes=A,B. "
                   "dynamic: per_channel, reduce_range, weight_type, op_types, exclude_nodes. fp16: keep_io_types. "
                   "int4: block_size=16|32|64|128|256, symmetric, accuracy_level=0..4, exclude_nodes. "
                   "optimum: preset=auto|avx512_vnni|avx512|avx2|arm64, per_channel, operators=MatMul,Attention.")
@click.option("--task", metavar="SPEC", help="Task whose training split calibrates (static), whose test split feeds "
              "the measurement and, with labels, gives fp32 vs quantized accuracy (digits, npz:FILE, images:DIR ...).")
@click.option("--calib-samples", type=int, metavar="N", help="Calibration samples, evenly spaced over the data [256].")
@click.option("--calib", "calib_npz", metavar="X.npz", help="Calibration inputs: one array per model input, samples "
              "along its batch axis (e.g. input_ids and attention_mask for a transformer; see --calib-axis).")
@click.option("--calib-random", is_flag=True, help="Static only: calibrate on generated inputs (not realistic; "
              "for trying the pipeline, not for shipping).")
@click.option("--calib-axis", "calib_axes", multiple=True, metavar="NAME=AXIS", help="Static: the axis input NAME "
              "holds its calibration samples on (state=1 for an LSTM state [2, batch, 128]; sr=none feeds a 0-d "
              "input as is on every step). Default: the model's batch axis (a dim named batch/N or shared by the "
              "inputs); an array with one more leading axis than the input is one sample per row.")
@click.option("--inputs", metavar="X.npz", help="Measurement inputs (default: --task's first test example, or generated).")
@click.option("--shape", "shapes", multiple=True, metavar="NAME=DIMxDIM...", help="Input shape or symbolic dim, "
              "as for `workbench bench`.")
@click.option("--out", type=click.Path(dir_okay=False), help="Output .onnx (default: MODEL.<method>.onnx beside the "
              "input; the input is never overwritten).")
@click.option("--threads", default=1, show_default=True, type=int)
@click.option("--rounds", default=3, show_default=True, type=int, help="Interleaved rounds (fp32, variant) in fresh "
              "processes.")
@click.option("--max-s", type=float, metavar="SECONDS", help="Cap on each model's timed seconds.")
@click.option("--no-measure", is_flag=True, help="Only quantize and check that the result loads.")
@click.option("--max-drop", type=float, metavar="POINTS", help="auto, task WITH labels: accuracy budget in percentage "
              "POINTS vs fp32 (0.5 = half a point). [0.5]")
@click.option("--fidelity", type=click.Choice(["top1", "cosine", "snr"]), help="Without labels, quality is fidelity to "
              "fp32 on held-out data (a quarter of --calib, >= 32 samples, never calibrated on; or the task's test "
              "split): top1 = top-1 agreement (Wilson CI), cosine = mean cosine, snr = SNR in dB (bootstrap CI). "
              "Default from the output's shape: [batch, classes] -> top1; embeddings / dense maps -> cosine; one "
              "number per sample -> snr.")
@click.option("--min-fidelity", type=float, metavar="X", help="Without labels: the budget, judged on the LOWER 95% "
              "bound: top-1 agreement >= X [0.85], mean cosine >= X [0.99], SNR >= X dB [30]. auto keeps only "
              "candidates that meet it; a fixed method reports within / OUTSIDE.")
@click.option("--tokenizer", metavar="DIR", help="Text tasks (text:FILE.csv, corpus:...): the folder of the model's "
              "tokenizer (hf:DIR accepted) [the model's folder, or MODEL-stem/ beside it].")
@click.option("--sensitivity", is_flag=True, help="static/dynamic: per-node sensitivity table (output error vs fp32 "
              "when only that node is quantized), most sensitive first; also in --json.")
@click.option("--json", "json_out", metavar="OUT.json", help="Write the summary, measurements and diagnostics as JSON.")
def quantize(model, method, options, task, calib_samples, calib_npz, calib_random, calib_axes, inputs, shapes, out,
             threads, rounds, max_s, no_measure, max_drop, fidelity, min_fidelity, tokenizer, sensitivity, json_out):
    """Quantize any ONNX model, then compare it with fp32: size, latency ratio with CI and verdict,
    accuracy drop, graph format, time in int8 kernels, CPU ISA, and why it is or is not faster.

    Examples: workbench quantize model.onnx --method static --task digits;
    workbench quantize model.onnx --method static --task digits --option calibration=entropy --option format=qoperator;
    workbench quantize bert.onnx --method dynamic --shape sequence=128;
    workbench quantize model.onnx --method auto --task digits --max-drop 0.5;
    workbench quantize model.onnx --method auto --calib crops.npz --min-fidelity 0.9;
    workbench quantize bert.onnx --method static --task text:reviews.csv --tokenizer hf:bert-dir;
    workbench quantize model.onnx --method static --task digits --sensitivity
    """
    from ..quantize.standalone import quantize_model

    quantize_model(model, method, list(options), task=task, calib_samples=calib_samples, calib_npz=calib_npz,
                   calib_random=calib_random, inputs=inputs, shapes=list(shapes), out=out, threads=threads,
                   rounds=rounds, measure=not no_measure, json_out=json_out, max_s=max_s, max_drop=max_drop,
                   sensitivity=sensitivity, fidelity=fidelity, min_fidelity=min_fidelity, tokenizer=tokenizer,
                   calib_axes=list(calib_axes))
