"""One writer per run directory: ``RUNDIR/.lock``, held with ``fcntl.flock`` and naming its holder.

Two runs into one directory would both redo all the work and overwrite each other's files (and the
second's printed ``auto`` choice could disagree with the results.json it ends with). So a run holds
an exclusive flock on ``RUNDIR/.lock`` while it writes there; the file records the holder's pid,
command and start time so a second run can say who has it. The kernel drops a flock when its
process dies, so a lock file left by a killed run (``kill -9``) is free: the next run takes it over
and says so. The holder unlinks the file when it finishes.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from datetime import datetime
from pathlib import Path

from ..errors import OutputError

LOCK_NAME = ".lock"


class RunLock:
    """Context manager: exclusive use of one run directory. ``wait=False``: an OutputError (exit 2) naming
    the holder when another process has it; ``wait=True``: block until it is released. ``note(msg)``
    gets one line when waiting or when a stale lock (its holder died) is taken over."""

    def __init__(self, root: str | Path, command: str = "workbench run", wait: bool = False, note=None):
        self.root = Path(root)
        self.path = self.root / LOCK_NAME
        self.command = command
        self.wait = wait
        self.note = note or (lambda msg: None)
        self._fd: int | None = None
        self.took_over: dict | None = None  # the stale holder's record, when one was taken over

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock (see the class docstring); writes this process's pid, command and start time."""
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise OutputError(f"cannot create the lock file {self.path}: {e.strerror}; "
                                  "pass --out with a writable directory") from None
            try:
                _flock_soon(fd)
            except BlockingIOError:
                holder = _read(fd)
                if not self.wait:
                    os.close(fd)
                    raise OutputError(f"{self.root} is in use by {describe(holder)}; wait for it to finish "
                                      "(or add --wait), or use --out for another run directory") from None
                self.note(f"{self.root} is in use by {describe(holder)}; waiting for it to finish ...")
                fcntl.flock(fd, fcntl.LOCK_EX)
            # the holder unlinks the file as it releases: make sure ours is still the one at the path
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = _read(fd)
        if previous:  # a record without a live flock: its writer died without releasing
            self.took_over = previous
            alive = _alive(previous.get("pid"))
            self.note(f"took over {self.path}, left by {describe(previous)}, which "
                      f"{'no longer holds it' if alive else 'is no longer running'}")
        record = {"pid": os.getpid(), "command": self.command, "started": time.time(), "host": socket.gethostname()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def check_free(root: str | Path) -> None:
    """Fail fast (OutputError naming the holder) when another process holds ``root/.lock``; creates
    nothing. A run calls this before its checks and loads, so a busy directory is said at once."""
    try:
        fd = os.open(Path(root) / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return  # no lock file (or no directory yet): free
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(f"{root} is in use by {describe(_read(fd))}; wait for it to finish (or add --wait), "
                              "or use --out for another run directory") from None
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def read_holder(root: str | Path) -> dict | None:
    """The record in ``root/.lock`` (pid, command, started, host), or None when there is none."""
    try:
        fd = os.open(Path(root) / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return None
    try:
        return _read(fd)
    finally:
        os.close(fd)


def describe(holder: dict | None) -> str:
    """'pid 1234 (workbench run, started 10:02)' from a lock record."""
    if not holder:
        return "another process"
    cmd = " ".join(str(holder.get("command") or "workbench").split()[:2])
    started = holder.get("started")
    when = ""
    if isinstance(started, (int, float)):
        t = datetime.fromtimestamp(started)
        when = ", started " + (t.strftime("%H:%M") if t.date() == datetime.now().date() else t.strftime("%Y-%m-%d %H:%M"))
    host = holder.get("host")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    return f"pid {holder.get('pid', '?')}{where} ({cmd}{when})"


def _flock_soon(fd: int, tries: int = 5) -> None:
    """LOCK_EX without blocking, retried briefly: check_free's momentary shared lock is not a holder."""
    for i in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if i == tries - 1:
                raise
            time.sleep(0.05)


def _read(fd: int) -> dict | None:
    try:
        raw = os.pread(fd, 4096, 0)
        rec = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (OSError, ValueError):
        return {"pid": "?", "command": "unknown (unreadable lock file)"}
    return rec if isinstance(rec, dict) else None


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
