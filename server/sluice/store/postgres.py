"""The Store on PostgreSQL: asyncpg through SQLAlchemy's async engine (`AsyncExecutor`), one
transaction per write; the server does its own group commit."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sluice.store.base import SqlStore, Writes
from sluice.store.executors import AsyncExecutor
from sluice.store.schema import template_snapshots


class PostgresStore(SqlStore):
    INSERT_SNAPSHOT = postgresql.insert(template_snapshots).on_conflict_do_nothing()

    @classmethod
    def on_engine(cls, engine: AsyncEngine) -> PostgresStore:
        """The store on a (migrated) database; it disposes of `engine` when closed."""
        return cls(AsyncExecutor(engine))

    def _execute(self, conn: sa.Connection, writes: Writes) -> int:
        changed = 0
        for i, (statement, values) in enumerate(writes):
            if values:
                # One row: a plain execute, whose rowcount asyncpg reports (executemany's
                # it may not); the compare-and-set of a commit is always one row.
                result = conn.execute(statement, values[0] if len(values) == 1 else values)
                changed = result.rowcount if i == 0 else changed
        return changed


def create_engine(url: URL, **options: Any) -> AsyncEngine:
    """An async engine (asyncpg) on `url`; a pooled connection is checked before use, so one
    the server dropped (a restart, a failover) is replaced rather than failing a call."""
    return create_async_engine(url, pool_pre_ping=True, **options)
