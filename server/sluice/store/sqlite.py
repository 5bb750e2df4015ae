"""The Store on a SQLite file, through pysqlite (`SqliteExecutor`).

Writes run on the event loop's thread and commit on a thread of their own, concurrent
transitions share one commit, and the batched writes of a transition run on SQLite's own
cursor (`sqlite_raw`): interpreter time bounds throughput here. Reads run on two threads.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sluice.store import sqlite_file, sqlite_wal
from sluice.store.base import BATCHED, SqlStore, Writes, add_sums, upsert_tasks
from sluice.store.executors import SqliteExecutor
from sluice.store.schema import tasks, template_snapshots
from sluice.store.sqlite_raw import RawReturning, RawStatement

_INSERT_SNAPSHOT = sqlite.insert(template_snapshots).on_conflict_do_nothing()
_UPSERT_TASKS = upsert_tasks(sqlite.insert)
# Each batched statement compiled once for SQLite's cursor, found by the statement itself.
_RAW = {
    statement: RawStatement(statement, table)
    for statement, table in (
        *BATCHED,
        (_INSERT_SNAPSHOT, template_snapshots),
        (_UPSERT_TASKS, tasks),
    )
}
# The UPDATE ... RETURNING statements, each compiled the first time it runs (a task's
# activation is one statement per number of task types).
_RAW_RETURNING: dict[sa.Update, RawReturning] = {}


class SqliteStore(SqlStore):
    INSERT_SNAPSHOT = _INSERT_SNAPSHOT
    ADD_SUMS = add_sums(sqlite.insert)
    UPSERT_TASKS = _UPSERT_TASKS

    @classmethod
    def on_file(cls, url: str | URL) -> SqliteStore:
        """The store on the (migrated) database file of `url`."""
        return cls(SqliteExecutor(*sqlite_engines(url)))

    def probe_commits(self, probe: Callable[[int, float], None]) -> None:
        assert isinstance(self._db, SqliteExecutor)
        self._db.on_batch = probe  # every write of the file: one writer, group committed

    def _execute(self, conn: sa.Connection, writes: Writes) -> int:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        changed = 0
        try:
            for i, (statement, values) in enumerate(writes):
                if values:
                    count = _RAW[statement].execute(cursor, values)
                    changed = count if i == 0 else changed
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(statement=None, params=None, orig=exc) from exc
        except sqlite3.OperationalError as exc:  # e.g. "database is locked"
            raise OperationalError(statement=None, params=None, orig=exc) from exc
        finally:
            cursor.close()
        return changed

    def _returning(
        self, conn: sa.Connection, statement: sa.Update, values: dict[str, Any]
    ) -> list[Mapping[str, Any]]:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            raw = _RAW_RETURNING.get(statement)
            if raw is None:
                raw = _RAW_RETURNING[statement] = RawReturning(statement)
            return list(raw.rows(cursor, values))
        except sqlite3.OperationalError as exc:
            raise OperationalError(statement=None, params=None, orig=exc) from exc
        finally:
            cursor.close()


def create_engine(url: URL, path: Path) -> AsyncEngine:
    """An async engine (aiosqlite) on the file at `path`, for migrations and admin commands:
    creates the file and its folder, and sets the pragmas a server needs (WAL, a busy
    timeout, foreign keys, full fsync on commit). StoreSetupError for a file it cannot use."""
    sqlite_file.check(path)
    engine = create_async_engine(url, connect_args=_busy_timeout(url))
    sa_event.listen(engine.sync_engine, "connect", _pragmas)
    return engine


def sqlite_engines(url: str | URL) -> tuple[sa.Engine, sa.Engine]:
    """The writer's and the readers' engines on the same file, with the pysqlite driver.

    pysqlite's own transaction handling is switched off (isolation_level None) so SQLAlchemy
    issues BEGIN itself: BEGIN IMMEDIATE for the writer, which takes the write lock up front
    (no deadlock-prone lock upgrades with another process), plain BEGIN for readers.
    """
    sync_url = make_url(url).set(drivername="sqlite")
    made = []
    for begin in ("BEGIN IMMEDIATE", "BEGIN"):
        engine = sa.create_engine(
            sync_url, connect_args={"check_same_thread": False, **_busy_timeout(sync_url)}
        )
        sa_event.listen(engine, "connect", _pragmas)
        sa_event.listen(engine, "connect", _manual_transactions)
        sa_event.listen(engine, "begin", functools.partial(_begin, sql=begin))
        made.append(engine)
    return made[0], made[1]


def _begin(conn: sa.Connection, sql: str) -> None:
    # On the driver's connection: SQLAlchemy's execution of it cost more than the statement,
    # once per transaction (every batch of writes).
    try:
        conn.connection.dbapi_connection.execute(sql)  # type: ignore[union-attr]
    except sqlite3.OperationalError as exc:  # e.g. "database is locked"
        raise OperationalError(statement=sql, params=None, orig=exc) from exc


def _manual_transactions(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None


# How long a SQLite write waits for another connection's lock before it fails (and the engine
# retries it): the URL's `?timeout=SECONDS`, as pysqlite reads it, or this.
BUSY_TIMEOUT_SECONDS = 5.0


def _busy_timeout(url: URL) -> dict[str, Any]:
    return {} if "timeout" in url.query else {"timeout": BUSY_TIMEOUT_SECONDS}


def _pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    sqlite_wal.pragmas(cursor)
    cursor.close()
