"""`workbench bench`: any ONNX models through the one measurement harness."""
from __future__ import annotations

import click


@click.command()
@click.argument("models", nargs=-1, required=True)
@click.option("--runtime", default="ort", show_default=True, help="Runtime adapter (see `workbench doctor`).")
@click.option("--threads", default="1", show_default=True, help="Comma-separated thread counts, e.g. 1,2.")
@click.option("--shape", "shapes", multiple=True, metavar="NAME=DIMxDIM...",
              help="Shape of an input (input_ids=1x128) or size of a symbolic dim (batch=1, sequence=128); "
                   "repeatable. Unset symbolic dims default to 1 (batch-like), 128 (sequence-like), 224 (height/width) "
                   "or 1.")
@click.option("--inputs", metavar="X.npz", help=".npz of input name -> array (default: generated per dtype with a "
              "fixed seed: floats normal, token ids within the vocabulary, masks ones).")
@click.option("--task", metavar="SPEC", help="Realistic inputs from a task's test split (batch 1 unless --shape "
              "sets one): digits, images:DIR?size=64&grey=true (resized as the spec says), npz:FILE.")
@click.option("--rounds", default=3, show_default=True, type=int,
              help="With 2+ models: interleaved rounds (A B A B in fresh processes), where the harness supports it; "
                   "the minimum when rounds are adaptive (see --max-rounds).")
@click.option("--max-rounds", type=int, metavar="N", help="Cap on interleaved rounds: rounds are added beyond --rounds "
              "until each ratio's 95% CI is tight (half-width <= 1% at two successive rounds); rounds disturbed by "
              "a noise guard are replaced. Default 10 (or --rounds if larger); --max-rounds equal to --rounds: fixed.")
@click.option("--max-s", type=float, metavar="SECONDS", help="Cap on each model's timed seconds per thread count "
              "(default: the harness's); timing stops earlier once the median's CI is within +-2%.")
@click.option("--json", "json_out", metavar="OUT.json", help="Write the measurements as JSON (atomically).")
def bench(models, runtime, threads, shapes, inputs, task, rounds, max_rounds, max_s, json_out):
    """Measure any ONNX models through the harness: median and p90 with 95% CIs; with 2+ models, each
    model's ratio vs the first with its CI and verdict.

    Examples: workbench bench model.onnx --shape batch=1 --shape sequence=128;
    workbench bench fp32.onnx int8.onnx --task digits --threads 1,2 --json bench.json
    """
    from ..pipeline.bench import bench_models
    from ..errors import RecipeError

    try:
        thread_list = [int(t) for t in threads.split(",") if t.strip()]
    except ValueError:
        raise RecipeError(f"--threads must be comma-separated whole numbers such as 1,2; got {threads!r}") from None
    bench_models(list(models), runtime, thread_list, inputs, json_out, shapes=list(shapes), task=task, rounds=rounds,
                 max_s=max_s, max_rounds=max_rounds)
