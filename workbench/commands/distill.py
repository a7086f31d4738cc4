"""`workbench distill`: one teacher into one student (or QAT/QAD of a trained student), and `--list-layers`.

``--device`` picks where it trains (workbench.distill.device); ``--nproc-per-node N`` re-runs the same
command under torchrun in N processes (workbench.distill.ddp): each one is a rank that joins the
process group here, trains its share of every batch, and only rank 0 writes and prints.
"""
from __future__ import annotations

import click

from ..errors import RecipeError, WorkbenchError


class RanksFailed(WorkbenchError):
    """torchrun ended with a failed or killed rank (its own error line was printed by that rank)."""

    def __init__(self, code: int):
        self.exit_code = code if 0 < code < 256 else 1
        super().__init__(f"torchrun exited with code {code}: a training process failed or was killed (its "
                         "error is above); run the same command again to resume from the last checkpoint")


def distill_command(config, list_layers, quiet, options: dict, argv: list[str] | None = None) -> None:
    """The body of `workbench distill`: build the job from --config and the options, run it (here, or under
    torchrun with --nproc-per-node), print the card. ``argv``: the command line, re-used by torchrun."""
    from ..distill import ddp
    from ..distill.device import parse_device, resolve, using
    from ..distill.run import load_job, run_distill, summary_lines
    from ..progress import Progress

    options = dict(options)
    device = parse_device(options.pop("device", None) or "auto")
    nproc = options.pop("nproc_per_node", None)
    if list_layers:
        print_layers(list_layers, options.get("task") or "digits")
        return
    job = load_job(config, options)
    if nproc is not None and not ddp.under_torchrun():
        resolve(device)  # a cuda device that is not there: one line now, not one per rank
        if nproc > 1:
            check_multi_process(job)
        code = ddp.launch(ddp.strip_option(list(argv or []), "--nproc-per-node"), nproc)
        if code != 0:
            raise RanksFailed(code)
        return
    local = ddp.init_from_env(resolve(device))
    try:
        main = ddp.is_main()
        progress = Progress(quiet=quiet or not main)
        rank, ranks = ddp.world()
        if ranks > 1:
            progress.info(f"torchrun: {ranks} processes ({'gloo' if local == 'cpu' else 'nccl'}), this is rank 0: "
                          "it validates, checkpoints and writes")
        with using(local):
            card = run_distill(job, progress)
    finally:
        ddp.shutdown()
    if not main:
        return
    for line in summary_lines(card):
        click.echo(line)
    if card.get("kind") == "workbench qat card":
        click.echo(f"written: {card['out']}/ (card.json, student.int8.onnx = the deployable QAT artifact, "
                   "student.ptq.onnx, student.fp32.onnx, student.onnx + student.safetensors = fine-tuned float)")
    else:
        click.echo(f"written: {card['out']}/ (card.json, student weights, student.onnx)")


def check_multi_process(job) -> None:
    """Several processes train image classifiers (the engine's batches split over the ranks); refuse other
    jobs in one line before torchrun starts."""
    from pathlib import Path

    from ..tasks import load_task, task_type

    if job.qat:
        raise RecipeError("--nproc-per-node above 1 does not apply to --qat; fine-tune in one process "
                          "(--nproc-per-node 1, or leave it out)")
    kind = task_type(load_task(job.task, Path(job.base_dir) if job.base_dir else None, command="distill"))
    if kind.name != "image-classification":
        raise RecipeError(f"--nproc-per-node above 1 distils image classifiers; {job.task} is {kind.what}: "
                          "train it in one process per device (--nproc-per-node 1 or leave it out)")


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
