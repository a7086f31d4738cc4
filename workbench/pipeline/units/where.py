"""Where a unit runs: the node an executor names (``WORKBENCH_NODE``, set in the process running the unit)
and the environment of that machine, stored with every measurement so a record names the machine that
measured it, not the driver's."""
from __future__ import annotations

import os

NODE_ENV = "WORKBENCH_NODE"
MEASURED_ON = "_measured_on"  # the key of a cached measurement group that holds where it was measured


def current_node() -> str | None:
    """The id of the node running this process's unit, as its executor set it (None: the in-process
    executor or a standalone command, which do not name nodes)."""
    return os.environ.get(NODE_ENV) or None


def measured_on(runtimes) -> dict:
    """{node, environment, threads_all} of this machine: its node id (or None), its
    workbench.measure.collect_environment for ``runtimes`` and what ``threads = "all"`` means here."""
    from ...measure import collect_environment

    return {"node": current_node(), "environment": collect_environment(list(runtimes)),
            "threads_all": os.cpu_count() or 1}
