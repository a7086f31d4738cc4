"""Model sources: spec strings -> nn.Module, and the student builders.

Specs: ``zoo:NAME`` names a model the project made itself (architecture + its committed weights
in ``models/``). Architectures are registered in ``ARCHS`` and built from keyword options.
:mod:`.sources` turns every spec kind into a model, :mod:`.archs` holds the registries, :mod:`.models`
the architectures, :mod:`.hf` Hugging Face encoders, :mod:`.weights` safe weight loading; this
package only re-exports.
"""
from __future__ import annotations

from .archs import (ARCHS, MODELS_DIR, REPO_ROOT, ZOO, ZooEntry, build_arch, find_file,  # noqa: F401  (re-exported)
                    resolve_teacher)

__all__ = ["ARCHS", "MODELS_DIR", "REPO_ROOT", "ZOO", "ZooEntry", "build_arch", "find_file", "resolve_teacher"]
