"""`workbench train`: a teacher trained from labels, written as safetensors + a card."""
from __future__ import annotations

from pathlib import Path

import click


def train_command(task, arch, seed, steps, batch_size, lr, shift, out, device=None) -> None:
    """The body of `workbench train`: validate the job, train it on ``device`` (auto|cpu|cuda[:N]; None = auto)
    with a progress bar, print the card's summary."""
    from ..distill.device import resolve, using
    from ..fileio import ensure_writable_dir
    from ..progress import Progress
    from ..distill.engine import FitConfig
    from ..pipeline.train import DEFAULT_FIT, TrainSpec, fit, parse_arch, prepare

    arch_name, arch_options = parse_arch(arch)
    budget = FitConfig(**{**DEFAULT_FIT.to_json(), "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed})
    where = resolve(device or "auto")  # cuda asked on a machine without one: one line, before anything is written
    job = prepare(TrainSpec(task=task, arch=arch_name, arch_options=arch_options, augment_shift=shift, fit=budget), out)
    ensure_writable_dir(Path(out).parent)
    progress = Progress()
    with using(where), progress.bar(f"training {job.arch} on {task} ({where})", steps) as update:
        card = fit(job, on_step=lambda s, loss: update(s, f"loss {loss:.4f}"))
    click.echo(f"{out}: {card['architecture']['arch']}, {card['architecture']['params']:,} params, test accuracy "
               f"{card['metrics']['test_accuracy']:.4f}, sha256 {card['sha256'][:12]}... "
               f"(card: {Path(out).with_suffix('.card.json')})")
    click.echo(f"use it as a teacher: --teacher \"{card['teacher_spec']}\" --task \"{task}\"")
