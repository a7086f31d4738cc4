"""The registered task families of ``workbench run`` (see workbench.pipeline.family).

Importing this package registers every family in ``FAMILIES``; one import line per family module.
"""
from __future__ import annotations

from ..family import FAMILIES, family_of
from . import images  # noqa: F401  (registers image-classification)
from . import text_kinds  # noqa: F401  (registers text-classification, sentence-embedding)
from . import graphs  # noqa: F401  (registers node-classification)
from . import dense  # noqa: F401  (registers dense-text)
from . import audio  # noqa: F401  (registers audio-classification)

__all__ = ["FAMILIES", "family_of"]
