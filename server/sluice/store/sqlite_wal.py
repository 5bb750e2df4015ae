"""Keeping SQLite's write-ahead log from filling the disk for good.

SQLite appends every transaction to the log (`<database>-wal`) and copies the log into the
database (a checkpoint) once it holds `wal_autocheckpoint` pages (1000: 4 MB), after a commit;
it then writes the log again from its start but never makes the file smaller, unless
`journal_size_limit` says to. Measured on a 4 MB disk: the log filled the disk at 980 pages,
short of its threshold (a create adds about 40 KB to it). From then on every write failed, so
no commit ever reached the threshold, and space freed elsewhere filled up again before it did:
the store never recovered.

So the writer (one thread; this object is its helper, not shared) checkpoints with TRUNCATE,
which also gives the log's space back:
- after a commit, when the disk has less room left than the log takes: a checkpoint needs room
  for the pages the database gains (at most the log's size; far less in practice, as the log
  holds many versions of the same pages), so this is the last moment it surely fits (looked
  at every 16 commits, and after each once the room is within four logs' size);
- when a write fails for lack of space, then tries the write once more;
- and, until one works, before every write: once some space is freed, the next write (a call,
  or the engine storing a step's result again) checkpoints and goes through.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

AUTOCHECKPOINT_PAGES = 1000  # SQLite's default, which the benchmarks ran with
SIZE_LIMIT_BYTES = 4 * 1024 * 1024  # the log is cut back to this after each checkpoint
# After a commit, the log's size and the disk's room are compared every CHECK_EVERY commits,
# and after every commit once the room is less than _CLOSE times the log's size.
CHECK_EVERY = 16
_CLOSE = 4
# Below this the log is not worth a checkpoint of its own, whatever the disk's room.
_SMALL_LOG_BYTES = 256 * 1024


def pragmas(cursor: sqlite3.Cursor) -> None:
    """The log's bounds, for every connection (they are per connection)."""
    cursor.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
    cursor.execute(f"PRAGMA journal_size_limit={SIZE_LIMIT_BYTES}")


class WalKeeper:
    def __init__(self, database: Path) -> None:
        self._log = Path(f"{database}-wal")
        # A write failed for lack of space and no checkpoint has worked since.
        self._disk_full = False
        self._said_full = False  # one warning per episode, not one per try
        self._commits = 0
        self._next_check = 0  # the commit after which the log's size is looked at again

    @property
    def full(self) -> bool:
        """A write failed for lack of space and no checkpoint has worked since."""
        return self._disk_full

    def before_write(self, connection: sqlite3.Connection) -> None:
        if self._disk_full:
            self.checkpoint(connection)

    def after_commit(self, connection: sqlite3.Connection) -> None:
        # Looking costs two file-system calls, about 25 us in the writer thread (measured:
        # after every commit it added 0.3 ms to a sequential workflow), so the writer looks
        # every commit only once the disk's room is within a few logs' size, else every
        # CHECK_EVERY commits: far more than CHECK_EVERY commits' worth of log is left then.
        self._commits += 1
        if self._commits < self._next_check:
            return
        self._next_check = self._commits + CHECK_EVERY
        try:
            size = self._log.stat().st_size
            if size < _SMALL_LOG_BYTES:
                return
            disk = os.statvfs(self._log.parent)
        except OSError:
            return
        room = disk.f_bavail * disk.f_frsize
        if room < _CLOSE * size:
            self._next_check = self._commits + 1
        if room < size:
            self.checkpoint(connection)

    def write_failed(self, connection: sqlite3.Connection, error: BaseException) -> bool:
        """Whether the failed write is worth trying again: it failed for lack of space and a
        checkpoint has just given the log's space back."""
        if not _is_disk_full(error):
            return False
        self._disk_full = True
        return self.checkpoint(connection)

    def checkpoint(self, connection: sqlite3.Connection) -> bool:
        """Copy the log into the database and truncate it; whether that worked."""
        try:
            busy = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.Error as error:
            if not self._said_full:
                log.warning("the disk is full: writes fail until space is freed", error=str(error))
                self._said_full = True
            return False
        if busy:  # a reader held on past the busy timeout: the next write tries again
            return False
        if self._disk_full:
            log.warning("writes resume: the write-ahead log is checkpointed and truncated")
        self._disk_full = self._said_full = False
        return True


def _is_disk_full(error: BaseException) -> bool:
    orig = getattr(error, "orig", error)  # SQLAlchemy's wrapper, or sqlite3's own error
    # The primary result code: SQLite may report an extended one.
    return getattr(orig, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_FULL
