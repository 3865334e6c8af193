"""A lock on a run's output directory, so that two runs started at once with the same directory cannot replace
each other's checkpoint, report and model: the second is refused, naming the first.

The lock is a file (:data:`LOCK_NAME`) created atomically with ``O_EXCL`` and holding the owner's pid, host and
start time. A lock left by a run that died (its pid is gone on this host) is taken over, with a note; a lock
from another host is never assumed stale (its pid means nothing here): the message says to delete it if that
run is over.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Union

LOCK_NAME = "run.lock"
#: A lock file still empty after this many seconds is a creator that died mid-write (a live one writes at once).
EMPTY_LOCK_SECONDS = 30.0


class LockedError(RuntimeError):
    """The directory is locked by another live run."""


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


class OutputLock:
    """Hold ``directory``'s lock file while a run writes there: ``with OutputLock(out, command) as lock:``.
    ``lock.note`` says whether a dead run's lock was taken over (None if not)."""

    def __init__(self, directory: Union[str, os.PathLike], command: str = ""):
        self.path = Path(directory) / LOCK_NAME
        self.info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                     "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
                     "token": secrets.token_hex(8)}
        self.note: Optional[str] = None
        self.held = False

    def acquire(self) -> "OutputLock":
        """Take the lock, or raise :class:`LockedError` naming the run that holds it."""
        for _ in range(100):  # each pass either takes the lock, refuses, or clears a dead run's lock
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                other = self._read(self.path)
                if other is None:  # released in between: try again
                    continue
                if self._alive(other):
                    raise LockedError(self._refusal(other)) from None
                if self._clear(other):
                    self.note = (f"took over the lock {self.path} left by a run that is no longer running (pid "
                                 f"{other.get('pid')} on {other.get('host')}, started {other.get('started')})")
                continue
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(self.info))
                f.flush()
                os.fsync(f.fileno())
            self.held = True
            return self
        raise LockedError(f"{self.path}: could not take the lock (it keeps changing); try again")  # pragma: no cover

    def release(self) -> None:
        """Remove the lock file if it is still this run's."""
        if self.held:
            self.held = False
            if (self._read(self.path) or {}).get("token") == self.info["token"]:
                self.path.unlink(missing_ok=True)

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def _alive(self, other: dict[str, Any]) -> bool:
        """Whether the run that wrote ``other`` may still be running (any run on another host may)."""
        if other.get("empty"):
            return time.time() - other["mtime"] < EMPTY_LOCK_SECONDS
        pid = other.get("pid")
        return other.get("host") != self.info["host"] or not isinstance(pid, int) or _pid_alive(pid)

    def _clear(self, other: dict[str, Any]) -> bool:
        """Remove the dead run's lock ``other``; a lock that changed meanwhile (another run took it over first)
        is put back and left alone. True if the dead lock was removed by this call."""
        aside = self.path.with_name(f".{self.path.name}.{secrets.token_hex(6)}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:  # another run cleared it first
            return False
        if {k: v for k, v in (self._read(aside) or {}).items() if k != "mtime"} == \
                {k: v for k, v in other.items() if k != "mtime"}:
            aside.unlink()
            return True
        try:  # a live run's fresh lock: back in place (unless yet another run took the place meanwhile)
            os.link(aside, self.path)
        except FileExistsError:
            pass
        aside.unlink()
        return False

    def _refusal(self, other: dict[str, Any]) -> str:
        out = self.path.parent
        if other.get("empty"):
            return (f"another run is starting in {out} (its lock {self.path} is being written); give another "
                    "--out, or wait for it")
        where = "" if other.get("host") == self.info["host"] else (
            f" on host {other.get('host')} (if that run is over, delete {self.path})")
        command = f": {other['command']}" if other.get("command") else ""
        return (f"{out} is in use by another run (pid {other.get('pid')}{where}, started {other.get('started')}"
                f"{command}); give another --out, or wait for it to finish")

    @staticmethod
    def _read(path: Path) -> Optional[dict[str, Any]]:
        """The lock's fields; ``{"empty": True}`` for a lock not written yet; None if it vanished."""
        try:
            text, mtime = path.read_text(), path.stat().st_mtime
        except FileNotFoundError:
            return None
        try:
            info = json.loads(text)
        except ValueError:
            info = None
        if not isinstance(info, dict):  # empty or damaged: judged by its age
            return {"empty": True, "mtime": mtime, "text": text}
        return info


__all__ = ["EMPTY_LOCK_SECONDS", "LOCK_NAME", "LockedError", "OutputLock"]
