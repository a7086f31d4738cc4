"""Nothing outlives the command: termination signals, and the leftovers of runs that were killed.

``terminate_on_signals()`` makes SIGTERM (``timeout``, ``kill``, a CI cancel) and SIGHUP (the
terminal closed) behave like Ctrl-C: the main thread gets a :class:`Terminated` exception, so every
``finally`` runs -- the measurement worker's process group is killed, temp folders are removed, a
half-written file is deleted -- and the CLI prints one line and exits with 128 + the signal number
(143 for SIGTERM, 129 for SIGHUP; Ctrl-C stays 130).

A run killed with SIGKILL runs no cleanup at all. Its temp files carry the owning pid in their name
(``.NAME.wb<pid>.XXXX.tmp[.ext]`` beside an atomically written file, ``workbench-<kind>-p<pid>-XXXX``
folders in the system temp folder), so the next run removes them once that pid is dead (or was
reused by a process started after the file was made). Files of another LIVE run are never touched;
untagged leftovers (older workbench versions) only after a day.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

HANDLED = ("SIGTERM", "SIGHUP")
TEMP_DIR_PREFIX = "workbench-"
UNTAGGED_STALE_S = 24 * 3600  # temp files without an owner pid are removed after this long

# .NAME.wb<pid>.<random>.tmp[.ext] (workbench.fileio.atomic_path); .KEY.wb<pid>.<hex>.tmp (OutputCache)
ATOMIC_TMP = re.compile(r"^\..+\.wb(\d+)\.[A-Za-z0-9_]+\.tmp(?:\.[A-Za-z0-9]+)?$")
UNTAGGED_ATOMIC_TMP = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp(?:\.[A-Za-z0-9]+)?$")
TEMP_DIR = re.compile(r"^workbench-.+-p(\d+)-[A-Za-z0-9_]+$")


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwinds like KeyboardInterrupt (not an Exception, so no ``except
    Exception`` swallows it); the CLI turns it into one line and exit code 128 + signum."""

    def __init__(self, signum: int):
        self.signum = int(signum)
        self.name = signal.Signals(signum).name
        self.exit_code = 128 + self.signum
        super().__init__(f"terminated by {self.name}")


@contextlib.contextmanager
def terminate_on_signals():
    """While active (main thread only), SIGTERM and SIGHUP raise :class:`Terminated` in the main thread.

    Only the first signal raises: a second one while the first unwinds is ignored, so it cannot cut
    the cleanup short. The previous handlers are restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum, frame):
        if fired:
            return
        fired.append(signum)
        raise Terminated(signum)

    previous = {}
    for name in HANDLED:
        sig = getattr(signal, name, None)
        if sig is not None:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# --------------------------------------------------------------------------- leftovers of killed runs

def temp_prefix(kind: str) -> str:
    """Prefix for a temp folder of this process (``tempfile.mkdtemp(prefix=temp_prefix("auto"))``): it names
    the owner pid, so a later run can remove it once this process is gone."""
    return f"{TEMP_DIR_PREFIX}{kind}-p{os.getpid()}-"


def owner_gone(pid: int, made_at: float) -> bool:
    """True when no live process can own a temp file tagged with ``pid`` and last modified at ``made_at``:
    the pid is dead, a zombie, or belongs to a process that started after the file was last written."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return True
        return proc.create_time() > made_at + 1.0
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:  # access denied: someone else's live process
        return False


def _stale(entry: Path, pid: int | None, now: float) -> bool:
    try:
        mtime = entry.lstat().st_mtime
    except OSError:
        return False
    if pid is None:
        return now - mtime > UNTAGGED_STALE_S
    return owner_gone(pid, mtime)


def _remove(entry: Path) -> bool:
    try:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        return True
    except FileNotFoundError:
        return False  # its owner finished (renamed or removed it) meanwhile
    except OSError:
        return False


def sweep_run_dir(root: str | Path) -> list[Path]:
    """Remove the atomic-write temp files (and temp folders) under ``root`` whose owner is gone; return them."""
    root, now, removed = Path(root), time.time(), []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in list(dirnames) + filenames:
            m = ATOMIC_TMP.match(name)
            pid = int(m.group(1)) if m else None
            if m is None and not UNTAGGED_ATOMIC_TMP.match(name):
                continue
            entry = Path(dirpath) / name
            if _stale(entry, pid, now) and _remove(entry):
                removed.append(entry)
                if name in dirnames:
                    dirnames.remove(name)
    return removed


def sweep_temp_dirs(tmpdir: str | Path | None = None) -> list[Path]:
    """Remove ``workbench-<kind>-p<pid>-*`` folders (and untagged ``workbench-*`` ones older than a day) in the
    system temp folder whose owner is gone; return them."""
    base, now, removed = Path(tmpdir or tempfile.gettempdir()), time.time(), []
    try:
        names = [n for n in os.listdir(base) if n.startswith(TEMP_DIR_PREFIX)]
    except OSError:
        return removed
    for name in names:
        m = TEMP_DIR.match(name)
        entry = base / name
        if not entry.is_dir() or entry.is_symlink():
            continue
        if _stale(entry, int(m.group(1)) if m else None, now) and _remove(entry):
            removed.append(entry)
    return removed


def run_contained(fn, *args, on_stop=None) -> int:
    """Run ``fn(*args) -> exit code`` as a command: temp folders of killed commands swept first; Ctrl-C,
    SIGTERM and SIGHUP end it with ``on_stop()`` (kill the measurement workers), one line on stderr and
    exit code 130, 143 or 129."""
    sweep_temp_dirs()

    def stopped(what: str, code: int) -> int:
        import click

        if on_stop is not None:
            on_stop()  # also workers of other threads; the main thread's was killed while unwinding
        click.echo(f"{what}; workers and temp files cleaned up, finished steps are kept and a re-run resumes "
                   "from them", err=True)
        return code

    with terminate_on_signals():
        try:
            return fn(*args)
        except KeyboardInterrupt:
            return stopped("interrupted", 130)
        except Terminated as e:
            return stopped(f"terminated by {e.name}", e.exit_code)
