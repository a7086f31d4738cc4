"""A recipe's ``[train]`` section: where the students of a `workbench run` train, and the device spec
that `workbench run / distill / train --device` share.

``device``: auto, cpu, cuda or cuda:N (auto = cuda when the machine that trains has a GPU; `workbench
run --device` overrides it). ``nproc_per_node``: training processes per student; several apply to
`workbench distill --nproc-per-node N` only, so a recipe run takes 1. Neither is ever part of a content
key: the same recipe on another device reuses finished units.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import RecipeError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def parse_device(text, what: str = "--device") -> str:
    """The device spec ``text`` normalised ("auto", "cpu", "cuda", "cuda:N"); a RecipeError naming
    ``what`` when it is none of these. Nothing is checked against the machine here
    (workbench.distill.device.resolve does that where the training runs)."""
    if not isinstance(text, str) or not _DEVICE.match(text.strip().lower()):
        raise RecipeError(f"{what} {text!r} is not a device; use {DEVICE_CHOICES} (e.g. cuda:0)")
    return text.strip().lower()


@dataclass(frozen=True)
class TrainSection:
    """A recipe's ``[train]``: the device students train on and the processes per student (1)."""

    device: str = "auto"
    nproc_per_node: int = 1


def parse_train_section(name: str, cls, values: dict) -> TrainSection:
    """The [train] table: known keys only, the device spec checked and normalised (not resolved: the
    machine that trains resolves it), nproc_per_node other than 1 refused; one line naming the key."""
    valid = ("device", "nproc_per_node")
    for key in values:
        if key not in valid:
            raise RecipeError(f"unknown key {key!r} in [{name}]; valid keys: {', '.join(valid)}")
    device = parse_device(values.get("device", "auto"), f"[{name}] device")
    n = values.get("nproc_per_node", 1)
    if isinstance(n, bool) or not isinstance(n, int) or n != 1:
        raise RecipeError(f"[{name}] nproc_per_node = {n!r}: several training processes apply to `workbench "
                          "distill --nproc-per-node N` only; a `workbench run` trains each student in one "
                          "process (use 1 or leave it out)")
    return cls(device=device, nproc_per_node=1)
