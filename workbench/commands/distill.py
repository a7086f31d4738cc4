"""`workbench distill`: one teacher into one student (or QAT/QAD of a trained student), and `--list-layers`."""
from __future__ import annotations

import click

from ..errors import RecipeError


def distill_command(config, list_layers, quiet, options: dict) -> None:
    """The body of `workbench distill`: build the job from --config and the options, run it, print the card."""
    from ..distill.run import load_job, run_distill, summary_lines
    from ..progress import Progress

    if list_layers:
        print_layers(list_layers, options.get("task") or "digits")
        return
    job = load_job(config, options)
    progress = Progress(quiet=quiet)
    card = run_distill(job, progress)
    for line in summary_lines(card):
        click.echo(line)
    if card.get("kind") == "workbench qat card":
        click.echo(f"written: {card['out']}/ (card.json, student.int8.onnx = the deployable QAT artifact, "
                   "student.ptq.onnx, student.fp32.onnx, student.onnx + student.safetensors = fine-tuned float)")
    else:
        click.echo(f"written: {card['out']}/ (card.json, student weights, student.onnx)")


def print_layers(spec: str, task_spec: str) -> None:
    """`distill --list-layers`: print a model's tappable layer names (for --hint-layers), one per line."""
    from ..distill.features import list_layers
    from ..zoo.sources import SOURCES, load_model
    from ..specs import parse_spec
    from ..tasks import Task, load_task

    kind = parse_spec(spec).kind
    if kind in SOURCES and SOURCES.get(kind).black_box:
        raise RecipeError(f"{spec} is a black box: it has no layers to tap (feature losses need a PyTorch model)")
    task = load_task(task_spec)
    c = task.sample_shape[0] if isinstance(task, Task) else None
    n = task.num_classes if isinstance(task, Task) else None
    m = load_model(spec, in_channels=c, num_classes=n, role="student")
    if m.module is None:
        raise RecipeError(f"{spec} is a black box: it has no layers to tap")
    for name, kind in list_layers(m.module):
        click.echo(f"{name}\t{kind}")
