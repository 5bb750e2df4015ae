"""The SQLite file, tried before the store's drivers open it.

aiosqlite and the store's threads report a file they cannot open as "unable to open database
file", from another thread; opening it here first, with the standard library, says which file
and why (a folder in its place, a folder that cannot be written, a file that is not a
database), in the caller's thread, before anything else has started.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path

from sluice.store.errors import StoreSetupError


def check(path: Path) -> None:
    """Create `path` (and its folder) as a SQLite database in WAL mode if it is missing, or
    check that it is one Sluice can write; StoreSetupError saying why not."""
    _make_folder(path)
    if path.is_dir():
        raise StoreSetupError(
            f"the SQLite database {path} is a folder; name a file in SLUICE_DATABASE_URL"
        )
    try:
        connection = sqlite3.connect(path)
        try:
            # Reads the header (a file that is not a database fails here) and writes it (a
            # read-only one fails): what every server start does anyway.
            connection.execute("PRAGMA journal_mode=WAL")
        finally:
            connection.close()
    except sqlite3.Error as error:
        raise StoreSetupError(_problem(path, error)) from None


def _make_folder(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreSetupError(
            f"cannot create the folder {path.parent} for the SQLite database: {error.strerror}"
        ) from None


def _problem(path: Path, error: sqlite3.Error) -> str:
    code = getattr(error, "sqlite_errorcode", 0) & 0xFF  # the primary code of an extended one
    if code == sqlite3.SQLITE_NOTADB:
        return (
            f"{path} is not a SQLite database (or it is encrypted or damaged); name another "
            "file in SLUICE_DATABASE_URL"
        )
    if code == sqlite3.SQLITE_FULL:
        return f"cannot write the SQLite database {path}: the disk is full"
    if code not in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN):
        return f"cannot use the SQLite database {path}: {error}"
    # os.access also says no for a read-only file system, which stops root too.
    folder_writable = os.access(path.parent, os.W_OK | os.X_OK)
    if not path.exists() and not folder_writable:
        return (
            f"cannot create the SQLite database {path}: the folder {path.parent} is not "
            "writable (by this user, or the file system is read-only)"
        )
    if path.exists() and not (folder_writable and os.access(path, os.W_OK)):
        return (
            f"the SQLite database {path} is read-only: Sluice writes it, and its -wal and -shm "
            f"files beside it, so the file and the folder {path.parent} must be writable"
        )
    return (
        f"cannot open the SQLite database {path}: the file and its folder must be readable "
        "and writable by this user"
    )


class ServerLock:
    """Held by the one server process a SQLite database may have: a second server on the same
    file would drive the same runs without leases. (A POSIX record lock: the kernel drops it
    when the process dies, however it dies; it belongs to the process, so servers a test starts
    inside one process share it.)"""

    def __init__(self, path: Path) -> None:
        self._database = path
        self._path = path.with_name(path.name + ".server-lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        _make_folder(self._database)  # taken before the database is opened (and its folder made)
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StoreSetupError(
                f"another Sluice server is using the SQLite database {self._database}: SQLite "
                "serves one server. Stop the other one, give this one its own "
                "SLUICE_DATABASE_URL, or run several servers on PostgreSQL (README: Running "
                "several servers)"
            ) from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
