"""What every executor records and shares: where and when each unit ran (``units.json``), which units
measure (they run alone on benchmark nodes), whether a unit reused its cached result, and the failures of
a run that went on past them.

``units.json`` in the run directory is a list of ``{id, unit, node, start, end, seconds, cached}``: ``node``
the machine that ran it ("local" for the in-process executor, the Ray node id on a cluster), ``start`` and
``end`` wall-clock seconds since the epoch (comparable across the nodes of one cluster as far as their
clocks agree), ``cached`` the unit's own result's word (:func:`reused`, one rule for every executor): True
when it was read from the run's cache, False when the unit computed it, None for a result that does not
tell (a Skipped conversion).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ...errors import WorkbenchError
from ..units.where import NODE_ENV, current_node  # noqa: F401  (the executors set it, the units read it)

# units that time or profile something: on a cluster they run only on nodes declaring the `bench` resource
BENCH_UNITS = frozenset({"measure_group", "memory_profile", "auto_quantize"})
LOCAL_NODE = "local"


def kind_of(unit: str) -> str:
    """"bench" for units that measure (see BENCH_UNITS), "cpu" for every other unit."""
    return "bench" if unit in BENCH_UNITS else "cpu"


@dataclass(frozen=True)
class UnitRecord:
    """Where and when one unit ran (one entry of units.json)."""

    id: str
    unit: str
    node: str | None
    start: float
    end: float
    seconds: float
    cached: bool | None


def unit_record(node_id: str, unit: str, node: str | None, start: float, end: float,
                cached: bool | None) -> UnitRecord:
    """A UnitRecord with its duration computed from ``start`` and ``end`` (epoch seconds)."""
    return UnitRecord(node_id, unit, node, round(start, 6), round(end, 6), round(end - start, 6), cached)


def write_units(root: str | Path, records: list[UnitRecord]) -> Path:
    """Write ``units.json`` (atomically) into the run directory ``root``."""
    from ...fileio import write_json

    return write_json(Path(root) / "units.json", [asdict(r) for r in records])


def reused(result) -> bool | None:
    """Whether a unit's result says it was reused from the run's cache (every unit's result says so: trained
    students, made artifacts, evaluations, measurements; None for results that do not tell, e.g. Skipped):
    units.json's ``cached`` under every executor."""
    value = getattr(result, "reused", None)
    return bool(value) if value is not None else None


@dataclass(frozen=True)
class Failed:
    """The result of a unit that raised (``error`` one line, with the exception type for bugs) on ``node``,
    or of a unit not run because ``cause`` (a node it depends on) failed."""

    node_id: str
    node: str | None
    error: str
    cause: str | None = None


class UnitsFailed(WorkbenchError):
    """Some units of a run failed; the rest of the graph ran (and stays cached, so a re-run resumes)."""


def failure_line(exc: BaseException) -> str:
    """One line for a unit's exception: the message of a WorkbenchError (the user can fix it), the type and
    message of anything else (a bug or a crash)."""
    msg = " ".join(str(exc).split()) or "(no message)"
    return msg if isinstance(exc, WorkbenchError) else f"{type(exc).__name__}: {msg}"


def failure_summary(failed: list[Failed], total: int) -> str:
    """The one-line summary a run ends with when units failed: each failure with its node and error, the
    count of units skipped because of them, and how to resume."""
    own = [f for f in failed if f.cause is None]
    skipped = len(failed) - len(own)
    parts = "; ".join(f"{f.node_id} on node {short(f.node)}: {f.error}" for f in own)
    return (f"{len(own)} of {total} units failed ({parts}); {skipped} unit(s) that need them were skipped. "
            "Finished units are cached: fix the cause and run the same command again to resume")


def short(node: str | None) -> str:
    """A node id short enough for a progress line (Ray node ids are 56 hex digits)."""
    if not node:
        return "?"
    return node if len(node) <= 12 else node[:8]


def now() -> float:
    """Wall-clock time (seconds since the epoch) for units.json."""
    return time.time()
