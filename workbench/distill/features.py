"""Capture intermediate features of named submodules (for feature-based distillation losses)."""
from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Iterable

import torch
from torch import nn

from ..errors import RecipeError

_MAX_SUGGESTIONS = 12


def _suggestions(model: nn.Module, bad: list[str]) -> list[str]:
    names = [n for n, _ in model.named_modules() if n]
    close: list[str] = []
    for b in bad:
        close += difflib.get_close_matches(b, names, n=_MAX_SUGGESTIONS, cutoff=0.5)
    # close matches first, but leave room for the top-level children (a map of the model)
    children = [n for n, _ in model.named_children()]
    picks = list(dict.fromkeys(close))[:max(_MAX_SUGGESTIONS - len(children), _MAX_SUGGESTIONS // 2)]
    return list(dict.fromkeys(picks + children))[:_MAX_SUGGESTIONS]


def resolve_layers(model: nn.Module, names: Iterable[str]) -> dict[str, nn.Module]:
    """Map each ``model.named_modules()`` name to its module; unknown names raise :class:`RecipeError`."""
    modules = dict(model.named_modules())
    wanted = list(dict.fromkeys(names))
    bad = [n for n in wanted if n not in modules]
    if bad:
        listed = ", ".join(_suggestions(model, bad)) or "(the model has no submodules)"
        raise RecipeError(f"unknown layer {', '.join(repr(b) for b in bad)} in {type(model).__name__}; "
                          f"use a named_modules() name, e.g. {listed}")
    return {n: modules[n] for n in wanted}


def _first_tensor(out: Any) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, Mapping):  # e.g. HF ModelOutput
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        for o in out:
            if isinstance(o, torch.Tensor):
                return o
    return None


class FeatureTap:
    """Context manager capturing the outputs of named submodules with forward hooks.

    >>> with FeatureTap(model, ["features.1", "features.3"]) as tap:
    ...     logits = model(x)
    ...     feats = tap.outputs  # {name: tensor} in the given order

    A module returning a tuple/list/mapping contributes its first tensor. Outputs are cloned when
    captured (``clone=True``, the default) so a following in-place op (``ReLU(inplace=True)`` after a
    BatchNorm) cannot overwrite them; clones keep the autograd graph. ``detach=True`` cuts the graph
    (for teachers). If a module runs twice in one forward, the last output wins. Outputs are cleared
    at each ``__enter__``; call :meth:`clear` between batches inside one ``with`` block.
    Hooks are removed on exit, also when the block raises.
    """

    def __init__(self, model: nn.Module, names: Iterable[str], *, detach: bool = False, clone: bool = True):
        self.model = model
        self.modules = resolve_layers(model, names)
        self.detach = detach
        self.clone = clone
        self._captured: dict[str, torch.Tensor] = {}
        self._handles: list[Any] = []

    @property
    def names(self) -> list[str]:
        return list(self.modules)

    @property
    def outputs(self) -> dict[str, torch.Tensor]:
        """Captured outputs, in the order the names were given (layers that did not run are absent)."""
        return {n: self._captured[n] for n in self.modules if n in self._captured}

    def clear(self) -> None:
        self._captured.clear()

    def _hook(self, name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            t = _first_tensor(output)
            if t is None:
                raise RecipeError(f"layer {name!r} ({type(module).__name__}) returned {type(output).__name__}, "
                                  f"which holds no tensor to capture; tap a layer that outputs a tensor")
            if self.detach:
                t = t.detach()
            if self.clone:
                t = t.clone()
            self._captured[name] = t
        return hook

    def __enter__(self) -> "FeatureTap":
        self._remove()
        self.clear()
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self.modules.items()]
        return self

    def __exit__(self, *exc: Any) -> None:
        self._remove()

    def _remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def _call(model: nn.Module, example_input: Any) -> Any:
    if isinstance(example_input, Mapping):
        return model(**example_input)
    if isinstance(example_input, (tuple, list)):
        return model(*example_input)
    return model(example_input)


def feature_shapes(model: nn.Module, names: Iterable[str], example_input: Any) -> dict[str, tuple[int, ...]]:
    """Shapes (without the batch dim) of the named layers' outputs, from one eval-mode, no-grad forward.

    ``example_input`` is a tensor, a tuple of positional args or a mapping of keyword args (e.g. a
    tokenizer's output). Every module's train/eval flag is restored afterwards. Used to build
    adapters with :func:`workbench.distill.losses.make_adapter`.
    """
    modes = {m: m.training for m in model.modules()}
    tap = FeatureTap(model, names, detach=True, clone=False)
    try:
        model.eval()
        with torch.no_grad(), tap:
            _call(model, example_input)
            outs = tap.outputs
    finally:
        for m, was_training in modes.items():
            m.training = was_training
    missing = [n for n in tap.names if n not in outs]
    if missing:
        raise RecipeError(f"layer(s) {', '.join(map(repr, missing))} did not run in {type(model).__name__}'s "
                          f"forward pass; pick layers on the forward path (see list_layers)")
    return {n: tuple(int(d) for d in t.shape[1:]) for n, t in outs.items()}


def list_layers(model: nn.Module, max_depth: int | None = None) -> list[tuple[str, str]]:
    """``(name, type name)`` of every submodule (the root excluded), down to ``max_depth`` dots + 1 levels."""
    return [(n, type(m).__name__) for n, m in model.named_modules()
            if n and (max_depth is None or n.count(".") + 1 <= max_depth)]


__all__ = ["FeatureTap", "feature_shapes", "list_layers", "resolve_layers"]
