"""Several training processes (torchrun): launching, the process group, and what the engine needs of it.

``workbench distill ... --nproc-per-node N`` re-invokes the same command under
``python -m torch.distributed.run --standalone --nproc_per_node N`` (:func:`launch`); each process
(rank) joins the group (:func:`init_from_env`: gloo on the CPU, nccl on CUDA, one GPU per local rank).
The engine then gives every rank its contiguous share of every globally shuffled batch (:func:`share`:
the same global batch and order as one process), scales each rank's mean loss by its share of the
batch and sums the gradients over the ranks (:func:`all_reduce_`), so every rank takes the step one
process would take on the whole batch (within float summation order). Rank 0 alone evaluates,
checkpoints and writes; the others write nothing (:func:`is_main`, :func:`main_first`).

Outside torchrun (no ``WORLD_SIZE`` in the environment) every function is the one-process identity.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys

from ..errors import RecipeError


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def world() -> tuple[int, int]:
    """(rank, number of ranks) of this process: (0, 1) outside a process group."""
    dist = _dist()
    return (dist.get_rank(), dist.get_world_size()) if dist else (0, 1)


def is_main() -> bool:
    """Whether this process writes files and shows progress (rank 0, or the only process)."""
    return world()[0] == 0


def under_torchrun() -> bool:
    """Whether this process was started by torchrun (it sets WORLD_SIZE, RANK and LOCAL_RANK)."""
    return "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def init_from_env(device: str) -> str:
    """Join torchrun's process group (gloo for the CPU, nccl for CUDA) and return this rank's device
    (cuda:LOCAL_RANK on CUDA). Outside torchrun: ``device`` unchanged, no group."""
    if not under_torchrun() or _dist() is not None:
        return device
    import torch
    import torch.distributed as dist

    local = int(os.environ["LOCAL_RANK"])
    if device.startswith("cuda"):
        if local >= torch.cuda.device_count():
            raise RecipeError(f"--nproc-per-node asks for GPU {local} but this machine has "
                              f"{torch.cuda.device_count()}; use at most that many processes per node")
        device = f"cuda:{local}"
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=torch.device(device))
    else:
        dist.init_process_group("gloo")
    return device


def shutdown() -> None:
    """Leave the process group (when this process is in one)."""
    dist = _dist()
    if dist is not None:
        dist.destroy_process_group()


def share(n: int) -> slice:
    """This rank's contiguous part of a batch of ``n`` examples (the whole batch outside a group); parts
    differ in size by at most one and cover the batch in order."""
    rank, size = world()
    if size == 1:
        return slice(0, n)
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


def all_reduce_(params, loss) -> float:
    """Sum the gradients of ``params`` and the (already share-scaled) loss over the ranks, in one
    collective; returns the summed loss (the global batch's mean loss). A parameter without a gradient
    counts as zeros (every rank gets the same gradients back)."""
    import torch

    dist = _dist()
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    # the loss may live on the host (workbench.distill.device returns outputs there): onto the gradients' device
    flat = torch.cat([g.reshape(-1) for g in grads]
                     + [loss.detach().reshape(1).to(device=grads[0].device, dtype=grads[0].dtype)])
    dist.all_reduce(flat)
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        if p.grad is None:
            p.grad = g
        p.grad.copy_(flat[offset:offset + n].view_as(g))
        offset += n
    return float(flat[-1].item())


def broadcast_modules(modules: dict) -> None:
    """Every rank takes rank 0's weights and buffers (identical starting points after init or resume)."""
    dist = _dist()
    if dist is None:
        return
    for m in modules.values():
        for t in list(m.parameters()) + list(m.buffers()):
            dist.broadcast(t.data, src=0)


def broadcast_value(value: float | None, device: str = "cpu") -> float | None:
    """Rank 0's ``value`` (a validation metric, or None) on every rank; ``device``: this rank's training
    device (nccl moves CUDA tensors only)."""
    import math

    import torch

    dist = _dist()
    if dist is None:
        return value
    t = torch.tensor([math.nan if value is None else float(value), 0.0 if value is None else 1.0],
                     dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t[0]) if t[1].item() else None


def barrier() -> None:
    """Wait until every rank gets here (nothing outside a group)."""
    dist = _dist()
    if dist is not None:
        dist.barrier()


@contextlib.contextmanager
def main_first():
    """Rank 0 runs the body first (e.g. fills a cache), then the others (which then find it made)."""
    rank, size = world()
    if size > 1 and rank != 0:
        barrier()
    try:
        yield
    finally:
        if size > 1 and rank == 0:
            barrier()


def strip_option(argv: list[str], name: str) -> list[str]:
    """``argv`` without the option ``name`` and its value (``--name V`` or ``--name=V``)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == name:
            skip = True
            continue
        if a.startswith(name + "="):
            continue
        out.append(a)
    return out


def launch_command(argv: list[str], nproc: int) -> list[str]:
    """The torchrun command that runs ``workbench ARGV`` in ``nproc`` processes on this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "workbench.cli", *argv]


def launch(argv: list[str], nproc: int) -> int:
    """Run ``workbench ARGV`` under torchrun in ``nproc`` processes; returns its exit code (torchrun's:
    0 when every rank finished, non-zero when one failed or was killed, the others then stopped)."""
    if not isinstance(nproc, int) or nproc < 1:
        raise RecipeError(f"--nproc-per-node must be a whole number >= 1, got {nproc!r}")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("OMP_NUM_THREADS", "1")  # torchrun's own default; say it, not warn about it
    return subprocess.call(launch_command(argv, nproc), env=env)
