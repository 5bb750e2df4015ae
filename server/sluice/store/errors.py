"""A database the server cannot start on, said in one sentence the operator can act on.

Connecting fails deep inside asyncpg or SQLite, and the exception that comes out names the
driver's internals. `opening(url)` turns the failures an operator causes and can fix (a
database that does not exist, a server that is not running, a refused user, a file that cannot
be opened) into StoreSetupError with a message naming the database and what to do.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL


class StoreSetupError(RuntimeError):
    """The database cannot be used as configured; the message says what to do."""


@contextmanager
def opening(url: URL) -> Iterator[None]:
    """Within the block, the errors of connecting to `url` become StoreSetupError."""
    try:
        yield
    except StoreSetupError:
        raise
    except (sa_exc.DBAPIError, OSError) as error:
        raise StoreSetupError(_explain(error, url)) from error


def _explain(error: BaseException, url: URL) -> str:
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    user = url.username or "(the current OS user)"
    reason = _reason(error)
    if isinstance(error, ConnectionRefusedError):
        return (
            f"cannot connect to PostgreSQL at {where}: connection refused; is PostgreSQL running?"
        )
    if isinstance(error, socket.gaierror):
        return f"cannot find the database host {url.host!r}: {error.strerror}"
    if isinstance(error, TimeoutError):
        return f"cannot connect to PostgreSQL at {where}: timed out; is the address right?"
    sqlstate = _sqlstate(error)
    if sqlstate == "3D000":
        return (
            f"the database {url.database!r} does not exist on {where}: create it with "
            f"`createdb -h {url.host or 'localhost'} -p {url.port or 5432} -U {user} "
            f"{url.database}` (or CREATE DATABASE), or name another one in SLUICE_DATABASE_URL"
        )
    if sqlstate in ("28000", "28P01"):
        return (
            f"PostgreSQL at {where} refused user {user}: {reason}; check the user and password "
            "in SLUICE_DATABASE_URL"
        )
    if url.get_backend_name() == "sqlite":
        return f"cannot use the SQLite database {url.database}: {reason}"
    return f"cannot use the database {url.database!r} at {where}: {reason}"


def _sqlstate(error: BaseException) -> str:
    orig = error.orig if isinstance(error, sa_exc.DBAPIError) else error
    return str(getattr(orig, "sqlstate", "") or "")


def _reason(error: BaseException) -> str:
    """The driver's own words, without SQLAlchemy's wrapping (asyncpg's error is the cause of
    SQLAlchemy's adapter error, which is the `orig` of SQLAlchemy's)."""
    orig = error.orig if isinstance(error, sa_exc.DBAPIError) else error
    root = orig.__cause__ if orig is not None and orig.__cause__ is not None else orig
    if isinstance(root, OSError) and root.strerror:
        return root.strerror
    return str(root)
