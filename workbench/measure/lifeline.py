"""Measurement workers never outlive the command that started them.

Parent side: every worker the harness starts is tracked here until it is reaped; ``kill_group``
kills a worker's whole process group (the worker leads its own group, so a runtime's helper
processes go with it) and ``kill_all`` does so for every live worker -- the CLI calls it when a
SIGINT, SIGTERM or SIGHUP ends the command, also for workers started from other threads.

Worker side: ``die_with_parent`` asks Linux to SIGKILL the worker when its parent dies
(``prctl(PR_SET_PDEATHSIG)``; it covers a parent killed with SIGKILL, which runs no cleanup at all)
and starts a thread that checks once a second that the parent is still there, for systems without
prctl and for the moment between fork and prctl.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

PARENT_ENV = "WORKBENCH_PARENT_PID"  # set by the harness for the worker: the pid it must not outlive
PR_SET_PDEATHSIG = 1

_live: set[subprocess.Popen] = set()
_lock = threading.Lock()


# --------------------------------------------------------------------------- parent side

def track(proc: subprocess.Popen) -> None:
    """Remember a started worker until :func:`untrack` (``kill_all`` kills what is remembered)."""
    with _lock:
        _live.add(proc)


def untrack(proc: subprocess.Popen) -> None:
    """Forget a worker that has been reaped."""
    with _lock:
        _live.discard(proc)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc``'s process group (it leads its own) and reap it; a no-op once it has ended."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (OSError, AttributeError):
            try:
                proc.kill()
            except OSError:
                pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # unkillable (stuck in the kernel): nothing more to do
            pass
    untrack(proc)


def kill_all() -> int:
    """Kill every tracked worker (see :func:`kill_group`); returns how many were still running."""
    with _lock:
        procs = list(_live)
    running = sum(p.poll() is None for p in procs)
    for p in procs:
        kill_group(p)
    return running


def live_workers() -> list[int]:
    """Pids of the tracked workers still running (for tests and diagnostics)."""
    with _lock:
        return [p.pid for p in _live if p.poll() is None]


# --------------------------------------------------------------------------- worker side

def _set_pdeathsig(sig: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _orphaned(parent_pid: int) -> None:
    """The parent is gone: end this process and its group (helpers a runtime may have started)."""
    try:
        if os.getpgrp() == os.getpid():
            os.killpg(os.getpid(), signal.SIGKILL)
    except OSError:
        pass
    os._exit(1)


def die_with_parent(parent_pid: int | None = None, *, use_prctl: bool = True, interval_s: float = 1.0) -> bool:
    """Make this process end when ``parent_pid`` (default: ``$WORKBENCH_PARENT_PID``) ends.

    Returns whether PR_SET_PDEATHSIG was set. The watcher thread always runs: it exits the process
    (and its group) as soon as it is re-parented, i.e. ``os.getppid()`` is no longer ``parent_pid``.
    """
    if parent_pid is None:
        try:
            parent_pid = int(os.environ.get(PARENT_ENV, ""))
        except ValueError:
            return False
    armed = _set_pdeathsig(signal.SIGKILL) if use_prctl else False
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        _orphaned(parent_pid)

    def watch():
        while True:
            time.sleep(interval_s)
            if os.getppid() != parent_pid:
                _orphaned(parent_pid)

    threading.Thread(target=watch, name="workbench-parent-watch", daemon=True).start()
    return armed
