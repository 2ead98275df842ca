"""One job at a time in an output directory: ``job.lock`` names the process that writes there.

The lock file holds ``{"pid", "host", "started"}`` and appears under its name complete (it is written
to a private name first and hard-linked into place, which fails if the name exists), so two jobs can
never both create it. A second job finds it and is refused, naming the holder. A lock whose process is
gone (same host, and no live process with that pid started before the lock was taken: a pid can be
reused) is stale, the mark of a job killed with ``kill -9``: it is reported and taken over. A lock from
another host (an output directory on a shared filesystem) cannot be checked from here and is never
taken over; the message says which file to delete once that job is known to be dead.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from conflict_events.errors import ConflictEventsError

LOCK_FILE = "job.lock"
logger = logging.getLogger(__name__)


class LockError(ConflictEventsError):
    """Another job holds the output directory."""


@dataclass(frozen=True)
class LockHolder:
    pid: int
    host: str
    started: float

    @classmethod
    def this_process(cls) -> "LockHolder":
        return cls(os.getpid(), socket.gethostname(), time.time())

    @classmethod
    def parse(cls, text: str) -> "LockHolder | None":
        try:
            data = json.loads(text)
            return cls(int(data["pid"]), str(data["host"]), float(data["started"]))
        except (ValueError, KeyError, TypeError):
            return None

    def to_text(self) -> str:
        return json.dumps({"pid": self.pid, "host": self.host, "started": self.started}) + "\n"

    def __str__(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"pid {self.pid} on host {self.host}, since {since}"

    def is_running(self) -> bool:
        """Whether the holder may still be running (a holder on another host always may)."""
        if self.host != socket.gethostname():
            return True
        try:
            process = psutil.Process(self.pid)
            if process.status() == psutil.STATUS_ZOMBIE:  # killed, not yet reaped by its parent
                return False
            created = process.create_time()
        except psutil.NoSuchProcess:
            return False
        except psutil.Error:  # e.g. access denied: it exists
            return True
        # A process started after the lock was taken is another one that got the same pid.
        return created <= self.started + 1.0


class OutputLock:
    """``with OutputLock(directory) as lock:`` holds ``directory/job.lock`` (creating the directory);
    ``lock.took_over`` describes a stale lock that was replaced, else None."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self.holder = LockHolder.this_process()
        self.took_over: str | None = None

    def __enter__(self) -> "OutputLock":
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def acquire(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        # A few rounds: between reading a stale lock and moving it aside, another job may take it.
        for _ in range(5):
            if self._create():
                return
            try:
                text = self.path.read_text(encoding="utf-8")
            except FileNotFoundError:  # released in the meantime
                continue
            holder = LockHolder.parse(text)
            if holder is None:
                raise LockError(
                    f"{self.path} exists but does not name a job (pid, host); if no job writes to "
                    f"{self.directory}, delete it and rerun"
                )
            if holder.is_running():
                where = "on this host" if holder.host == self.holder.host else "on another host: it cannot be checked from here"
                raise LockError(
                    f"another predict job writes to {self.directory}: {LOCK_FILE} is held by {holder} ({where}); "
                    f"wait for it to finish, or, if that process is dead, delete {self.path}"
                )
            if self._remove_if_unchanged(text):
                self.took_over = f"{holder} (no longer running)"
                logger.warning("took over the stale lock of %s: %s", self.directory, self.took_over)
        raise LockError(f"cannot take {self.path}: other jobs keep taking it; rerun once they are done")

    def release(self) -> None:
        try:
            if self.path.read_text(encoding="utf-8") == self.holder.to_text():
                self.path.unlink()
        except FileNotFoundError:
            pass

    def _create(self) -> bool:
        private = self.directory / f".{LOCK_FILE}.{self.holder.pid}"
        private.write_text(self.holder.to_text(), encoding="utf-8")
        try:
            os.link(private, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            private.unlink()

    def _remove_if_unchanged(self, stale_text: str) -> bool:
        """Remove the lock if it is still the stale one that was read; False if another job took it first."""
        aside = self.directory / f".{LOCK_FILE}.stale.{self.holder.pid}"
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return True
        if aside.read_text(encoding="utf-8") == stale_text:
            aside.unlink()
            return True
        # That was a live job's fresh lock: put it back (unless a third job has locked since, whose lock stands).
        try:
            os.link(aside, self.path)
        except FileExistsError:
            pass
        aside.unlink()
        return False
