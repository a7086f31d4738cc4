"""Argument checks shared by `workbench quantize` with a fixed method and with ``--method auto``: the output
path, --threads / --rounds, --json, the task -- all before anything is written."""
from __future__ import annotations

from pathlib import Path

from ..errors import OutputError, RecipeError

DEFAULT_CALIB_SAMPLES = 256  # evenly spaced over the calibration data given


def default_output(model: str | Path, method: str) -> Path:
    """``dir/name.onnx`` -> ``dir/name.<method>.onnx``."""
    p = Path(model)
    stem = p.name[:-5] if p.name.lower().endswith(".onnx") else p.name
    return p.with_name(f"{stem}.{method}.onnx")


def check_run_args(src: Path, out, method_name: str, json_out, task, threads, rounds):
    """Checks shared by `workbench quantize` with a fixed method and with auto, before anything is written:
    whole-number --threads/--rounds, a writable output that is not the input, a writable --json, the task.
    Returns (output path, loaded task or None)."""
    from ..pipeline.bench import check_writable

    for name, v in (("--threads", threads), ("--rounds", rounds)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise RecipeError(f"{name} must be a whole number >= 1, got {v!r}")
    dst = Path(out) if out else default_output(src, method_name)
    _check_out(dst, src)
    if json_out:
        check_writable(json_out)
    task_obj = None
    if task is not None:
        from ..tasks import load_task

        task_obj = load_task(task)
    return dst, task_obj


def _check_out(out: Path, model: Path) -> None:
    from ..fileio import probe_writable

    if out.resolve() == model.resolve():
        raise RecipeError(f"--out {out} is the input model; the input is never overwritten — choose another file")
    if out.is_dir():
        raise OutputError(f"--out {out} is a folder; give a file path such as {default_output(model, 'static').name}")
    if out.suffix.lower() != ".onnx":
        raise RecipeError(f"--out {out} must end in .onnx")
    folder = out.resolve().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        probe_writable(folder)
    except OSError as e:
        raise OutputError(f"cannot write --out {out}: {e.strerror or e} in {folder}; choose a writable path") from None
