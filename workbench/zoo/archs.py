"""The project's own architectures and trained models: the ARCHS and ZOO registries, ``build_arch``,
``resolve_teacher`` (``zoo:NAME`` -> module + weights) and ``find_file`` (how user-given paths resolve).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import SourceError
from ..registry import Registry

ARCHS: Registry = Registry("architecture")
ZOO: Registry = Registry("zoo model")

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO_ROOT / "models"


@dataclass(frozen=True)
class ZooEntry:
    """A trained model of the project: its architecture, options, weights file in models/ and task."""

    arch: str
    options: dict
    weights: str  # file name inside models/
    task: str


def _register_builtins() -> None:
    from .models import MLP, ResNet, SmallCNN

    ARCHS.register("resnet", ResNet)
    ARCHS.register("cnn", SmallCNN)
    ARCHS.register("mlp", MLP)
    ZOO.register("digits-resnet", ZooEntry("resnet", {"channels": (32, 64, 128, 256), "blocks": (1, 1, 1, 1)},
                                           "digits-resnet.safetensors", "digits"))
    # a small trained teacher (6 k params): reverse distillation teaches larger students with it (recipes/reverse.toml)
    ZOO.register("digits-cnn8", ZooEntry("cnn", {"width": 8, "depth": 1}, "digits-cnn8.safetensors", "digits"))


_register_builtins()


def build_arch(arch: str, in_channels: int, num_classes: int, **options):
    """Build the registered architecture ``arch`` for ``in_channels`` inputs and ``num_classes`` outputs."""
    from ..recipe.rules import check_arch_options

    cls = ARCHS.get(arch)
    check_arch_options(arch, cls, options)  # width=-4 or width="wide": one line, not a traceback from torch
    try:
        return cls(in_channels=in_channels, num_classes=num_classes, **options)
    except TypeError as e:
        raise SourceError(f"cannot build architecture {arch!r} with options {options}: {e}") from None


def resolve_teacher(source: str, weights: str | None, in_channels: int, num_classes: int, base_dir: Path | None = None):
    """Build the teacher named by ``source`` and load its weights. Returns (module, weights_path)."""
    from .weights import load_weights

    kind, _, name = source.partition(":")
    if kind != "zoo" or not name:
        raise SourceError(f"unsupported model source {source!r}; use zoo:NAME (available: {', '.join(ZOO.names())})")
    entry = ZOO.get(name)
    model = build_arch(entry.arch, in_channels, num_classes, **entry.options)
    path = find_file(weights or entry.weights, base_dir, default_dir=MODELS_DIR)
    load_weights(model, path)
    return model, path


def find_file(name: str, base_dir: Path | None = None, default_dir: Path | None = None) -> Path:
    """Resolve a user-given path: as given, then relative to the recipe's folder, then the default folder."""
    p = Path(name).expanduser()
    candidates = [p] if p.is_absolute() else [Path.cwd() / p]
    if not p.is_absolute():
        if base_dir is not None:
            candidates.append(base_dir / p)
        if default_dir is not None:
            candidates += [default_dir / p, default_dir / p.name]
    candidates = list(dict.fromkeys(candidates))
    for c in candidates:
        if c.is_file():
            return c.resolve()
    raise SourceError(f"weights file {name!r} not found (looked in: {', '.join(dict.fromkeys(str(c.parent) for c in candidates))}); "
                      "give an existing path or run `make teacher` to re-create the reference teacher")
