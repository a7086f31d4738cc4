"""One generic registry: extend the workbench by registering, not by if/elif on names."""
from __future__ import annotations

from typing import Generic, Iterator, TypeVar

from .errors import RecipeError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> implementation (runtimes, tasks, sources, methods ...): register once, look up by name; unknown names
    list the valid ones."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T | None = None):
        """Register ``item`` under ``name``; usable as a decorator when ``item`` is omitted."""

        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        if item is None:
            return add
        return add(item)

    def get(self, name: str) -> T:
        """The item registered as ``name``; an unknown name is a RecipeError listing the available ones."""
        try:
            return self._items[name]
        except KeyError:
            raise RecipeError(
                f"unknown {self.kind} {name!r}; available: {', '.join(sorted(self._items)) or '(none)'}"
            ) from None

    def names(self) -> list[str]:
        """Every registered name, sorted (for help texts, error messages and ``workbench doctor``)."""
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        """Whether ``name`` is registered."""
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        """The registered names, sorted."""
        return iter(sorted(self._items))
