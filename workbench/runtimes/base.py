"""The runtime adapter interface: load an artifact with an explicit thread count, run inputs.

**Adapters never time anything**: all timing lives in ``workbench.measure``. Adapters import
their runtime lazily (inside methods) so that importing ``workbench.runtimes`` stays cheap.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:  # numpy is only needed for type hints here
    import numpy as np

Dim = Union[int, str]


@dataclass(frozen=True)
class InputSpec:
    """One model input: ``shape`` holds ints, or strings for symbolic dims (e.g. "batch")."""

    name: str
    shape: tuple[Dim, ...]
    dtype: str  # numpy dtype string, e.g. "float32", "int64"

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


class Session(ABC):
    """A loaded artifact. It only runs inputs; it never times anything."""

    @abstractmethod
    def input_specs(self) -> list[InputSpec]:
        """The inputs the artifact expects, in order."""

    @abstractmethod
    def run(self, feeds: dict[str, "np.ndarray"]) -> list["np.ndarray"]:
        """Run one inference; returns the outputs in the artifact's order."""

    def options(self) -> dict:
        """The runtime options this session was created with (stored in every result)."""
        return {}


class Runtime(ABC):
    """An adapter for one runtime. Instances are registered in ``workbench.runtimes.RUNTIMES``.

    Subclasses must be constructible without arguments: the measurement worker (a fresh
    process) re-creates the adapter from its import path.
    """

    name: str = ""
    formats: tuple[str, ...] = ()
    install_hint: str = ""
    distributions: tuple[str, ...] = ()  # pip distributions whose version is the runtime's version
    module: str = ""  # top-level module whose presence means "installed"

    def available(self) -> bool:
        """Whether the runtime can be imported (checked without importing it)."""
        try:
            return bool(self.module) and importlib.util.find_spec(self.module) is not None
        except (ImportError, ValueError):
            return False

    def version(self) -> str | None:
        """The installed version, read from package metadata (never by importing the runtime)."""
        for dist in self.distributions:
            try:
                return importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
        return None

    def prepare(self) -> None:
        """Import the runtime's modules; the harness calls this before it times ``load``."""

    @abstractmethod
    def load(self, path: str, threads: int) -> Session:
        """Load ``path`` with ``threads`` intra-op threads; raise ArtifactError if it cannot."""

    def profile(self, path: str, threads: int, feeds: dict, runs: int) -> list[dict]:
        """Per-op-type cost from the runtime's OWN profiler (this is not timing by the adapter).

        Load ``path`` as ``load`` does but with profiling on, run ``feeds`` once (not counted)
        and then ``runs`` times, and return ``[{"op_type": str, "time_ms": median over the counted runs
        of the time per run of all nodes of that type, "count": nodes of that type executed per run}]``.
        Clean up any files written. Runtimes without a profiler return ``[]`` (this default).
        """
        return []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
