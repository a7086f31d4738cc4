"""The `workbench` command: a thin click group. Builds a Recipe, calls the pipeline, converts errors.

Only this module turns WorkbenchErrors into messages and exit codes: one line on stderr, exit 2.
Heavy libraries are imported inside the commands so `workbench --help` stays fast.
"""
from __future__ import annotations

import sys

import click

from .errors import WorkbenchError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="workbench")
def cli():
    """Distil, quantize, export, benchmark and report: compressed variants of one model on one chart."""


@cli.command()
@click.argument("recipe", required=False, type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Run directory (default: runs/<recipe name>). "
              "Running again into the same directory reuses finished work.")
@click.option("--quick", is_flag=True, help="Small budget: 2 seeds, fewer steps, 1 thread, short measurements.")
@click.option("--dry-run", is_flag=True, help="Check everything a run checks, print the resolved recipe and the plan; "
              "write nothing.")
@click.option("--wait", is_flag=True, help="If another run is writing to the same directory, wait for it to finish "
              "(default: exit 2 naming its pid).")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--mlflow", "mlflow_uri", metavar="URI", help="Also log every measurement to MLflow at URI "
              "(http://HOST:PORT or sqlite:///FILE.db): a parent run per workbench run, a child run per "
              "artifact x runtime x threads. Needs the mlflow extra (installed by make).")
@click.option("--mlflow-experiment", metavar="NAME", help="MLflow experiment (default: the recipe's name).")
@click.option("--backend", default="local", show_default=True, metavar="local|ray", help="Where the units run: "
              "local (this process) or ray (Ray tasks; measurements only on nodes declaring a `bench` resource). "
              "ray needs the cluster extra: pip install -e '.[cluster]'.")
@click.option("--address", metavar="auto|HOST:PORT", help="With --backend ray: the Ray cluster to use (default: start "
              "a local Ray instance whose one node also measures). The run directory must be on storage all nodes share.")
@click.option("--device", metavar="auto|cpu|cuda[:N]", help="Where the students train and the teacher's cached "
              "pass runs (overrides the recipe's [train] device; auto = cuda when torch sees a GPU). "
              "Never part of a content key. [recipe's, else auto]")
def run(recipe, out, quick, dry_run, wait, quiet, mlflow_uri, mlflow_experiment, backend, address, device):
    """Run a recipe (default: the built-in digits demo) and write results.json, report.md, report.html.

    Example: workbench run --quick --out runs/first
    """
    from .commands.run import run_command

    run_command(recipe, out, quick, dry_run, wait, quiet, mlflow_uri, mlflow_experiment, backend, address,
                device=device)


@cli.command()
@click.option("--task", default="digits", show_default=True, metavar="SPEC", help="Labelled task with array inputs: "
              "digits, images:DIR?size=64&grey=true, npz:FILE (images or flat features). Text tasks: use "
              "`workbench distill` with an hf: teacher.")
@click.option("--arch", default="auto", show_default=True, metavar="NAME[?K=V&...]", help="Architecture and options: "
              "resnet, cnn (e.g. \"cnn?width=16&depth=1\"), mlp (flat features; \"mlp?hidden=256,128\"); auto = resnet "
              "for images, mlp for flat features. Input channels and classes come from the task.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--steps", default=1000, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1))
@click.option("--lr", default=3e-3, show_default=True, type=float)
@click.option("--shift", default=2, show_default=True, type=click.IntRange(0, 4),
              help="Image augmentation: random integer shifts up to +-N px (flat features: none).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .safetensors file (a .card.json is written beside it).")
@click.option("--device", metavar="auto|cpu|cuda[:N]", help="Where training and the teacher's cached pass run: "
              "auto = cuda when torch sees a GPU, else cpu. [auto]")
def train(task, arch, seed, steps, batch_size, lr, shift, out, device):
    """Train a teacher from labels on your data (how models/digits-resnet.safetensors was made); writes
    safetensors + a card with the test accuracy and the teacher spec for `workbench distill` and recipes.

    Examples: workbench train --task digits --arch resnet --seed 0 --steps 1000 --out models/digits-resnet.safetensors;
    workbench train --task "images:data/photos?size=64" --arch resnet --steps 2000 --out models/photos.safetensors;
    workbench train --task npz:data.npz --arch cnn --out models/mine.safetensors
    """
    from .commands.train import train_command

    train_command(task, arch, seed, steps, batch_size, lr, shift, out, device=device)


@cli.command()
@click.option("--teacher", metavar="SPEC", help="Teacher: zoo:NAME, torchvision:NAME?weights=F, hf:DIR, "
              "py:module:factory?weights=F, onnx:FILE (black box) or outputs:FILE.npz (precomputed logits).")
@click.option("--student", metavar="SPEC", help="Student: zoo:cnn?width=8&depth=1, torchvision:NAME?width_mult=0.5, "
              "py:module:factory, or for hf: teachers drop:LAYERS (e.g. drop:0,2,4 or drop:every-other).")
@click.option("--task", metavar="SPEC", help="digits, images:DIR?size=64, npz:FILE, text:FILE.csv?text=COL&label=COL, "
              "corpus:pydoc or corpus:FILE.txt.")
@click.option("--config", type=click.Path(dir_okay=False), help="TOML file with a [distill] table of the same keys "
              "(CLI options override it).")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default runs/distill-<student>).")
@click.option("--alpha", type=float, help="Weight of the KD (soft-target) term; CE gets 1-alpha. [0.9]")
@click.option("--temperature", type=float, help="KD temperature. [4]")
@click.option("--hint", type=float, help="Weight of the FitNets hint loss. [0]")
@click.option("--hint-layers", metavar="S:T,...", help="Student:teacher layer pairs for the hint loss.")
@click.option("--attention", type=float, help="Weight of attention transfer (CNN activation maps). [0]")
@click.option("--attention-layers", metavar="S:T,...", help="Student:teacher layer pairs for attention transfer.")
@click.option("--embedding-cosine", type=float, help="Sentence embeddings: weight of the cosine loss. [1]")
@click.option("--hidden-mse", type=float, help="Transformers: weight of the hidden-state MSE. [1]")
@click.option("--max-len", type=int, help="Transformers: max tokens per text. [128]")
@click.option("--epochs", type=click.IntRange(1), help="Budget in passes over the training data (or --steps). [20]")
@click.option("--steps", type=click.IntRange(1), help="Budget in optimiser steps instead of --epochs (the last pass may "
              "be partial; validation then runs about 20 times in all).")
@click.option("--batch-size", type=click.IntRange(1), help="[64]")
@click.option("--lr", type=float, help="[3e-3]")
@click.option("--optimizer", type=click.Choice(["adamw", "sgd"]), help="[adamw]")
@click.option("--schedule", type=click.Choice(["cosine", "linear", "constant"]), help="[cosine]")
@click.option("--patience", type=click.IntRange(0), help="Early stopping after this many validations without gain: "
              "epochs with --epochs (one validation per epoch); with --steps, of the about 20 validations; 0 = off. [5]")
@click.option("--seed", type=int, help="[0]")
@click.option("--shift", type=click.IntRange(0), help="Image augmentation: random integer shifts up to +-N px. [1]")
@click.option("--few", type=click.IntRange(0), help="Use only N labelled examples per class. [all]")
@click.option("--qat", metavar="METHOD", help="Quantization-aware fine-tuning of a TRAINED student for an ORT static "
              "int8 method (e.g. static, static?per_channel=false): with the KD loss from --teacher (QAD) or, "
              "with --alpha 0, labels only (QAT); compared with PTQ of the same student.")
@click.option("--no-measure", "measure", flag_value=False, default=None,
              help="--qat: skip the interleaved latency measurement of fp32 / PTQ / QAT.")
@click.option("--cache", metavar="DIR", help="Teacher-output cache folder (default $WORKBENCH_CACHE or "
              "~/.cache/workbench/teacher-outputs).")
@click.option("--list-layers", "list_layers", metavar="SPEC", help="Print a model's layer names (for --hint-layers) "
              "and exit; needs --task for the input size.")
@click.option("--device", metavar="auto|cpu|cuda[:N]", help="Where the student trains and the teacher's cached "
              "pass runs (autocast bf16/fp16 on CUDA; outputs stored fp32): auto = cuda when torch sees a GPU. [auto]")
@click.option("--nproc-per-node", "nproc_per_node", type=click.IntRange(1), metavar="N",
              help="Train in N processes under torchrun (DDP: gloo on cpu, nccl on cuda, one GPU each): every rank "
                   "takes its share of each batch, rank 0 validates, checkpoints and writes. N > 1: image "
                   "classifiers.")
@click.option("--quiet", is_flag=True)
def distill(config, list_layers, quiet, **options):
    """Distil a teacher into a student on a task; writes student weights, student.onnx (parity-checked)
    and card.json with the student's metric measured on the ONNX artifact.

    Examples: workbench distill --teacher zoo:digits-resnet --student "zoo:cnn?width=8&depth=1" --task digits;
    workbench distill --teacher hf:models/minilm --student drop:0,2,4 --task corpus:pydoc --epochs 3;
    workbench distill --qat static --teacher zoo:digits-resnet --student "zoo:cnn?width=8&weights=S.safetensors"
    --task digits --epochs 5 --lr 5e-4
    """
    from .commands.distill import distill_command

    root = click.get_current_context().find_root()
    distill_command(config, list_layers, quiet, options, argv=(root.obj or {}).get("argv"))  # torchrun re-runs it


@cli.command()
def doctor():
    """Versions, CPU ISA flags that decide int8 speed, and which runtimes are installed."""
    from .commands.doctor import doctor_command

    doctor_command()


def _add_commands() -> None:
    """Add the commands that live in workbench/commands/ to the group."""
    from .commands.bench import bench
    from .commands.export import export
    from .commands.quantize import quantize
    from .commands.report import report

    for command in (report, bench, quantize, export):
        cli.add_command(command)


_add_commands()


def main(argv=None) -> int:
    """The console entry point: runs a command and turns every ending into one line and an exit code.

    SIGTERM and SIGHUP end a command like Ctrl-C (workbench.fileio.containment): measurement workers are
    killed, temp files removed, and the exit code is 128 + the signal (143, 129; Ctrl-C 130).
    """
    from .fileio.containment import run_contained
    from .measure.lifeline import kill_all

    return run_contained(_main, argv, on_stop=kill_all)


def _main(argv) -> int:
    try:
        cli.main(args=argv, prog_name="workbench", standalone_mode=False,
                 obj={"argv": list(argv) if argv is not None else sys.argv[1:]})  # torchrun re-runs the command
    except WorkbenchError as e:
        click.echo(f"error: {e}", err=True)
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return 2 if e.exit_code == 1 else e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
