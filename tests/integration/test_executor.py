"""The SQLite executor's group commit: writers share a transaction, yet one failing write
loses only its own changes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from sluice.engine.errors import Unavailable
from sluice.store.executors import AsyncExecutor, SqliteExecutor
from sluice.store.sqlite import sqlite_engines


async def test_a_failing_write_in_a_batch_undoes_only_itself(tmp_path: Path) -> None:
    executor = SqliteExecutor(*sqlite_engines(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"))
    try:
        await executor.write(lambda c: c.exec_driver_sql("CREATE TABLE t (v INTEGER PRIMARY KEY)"))

        def insert(value: int, fail: bool = False) -> Callable[[sa.Connection], int]:
            def work(conn: sa.Connection) -> int:
                conn.exec_driver_sql(f"INSERT INTO t VALUES ({value})")
                if fail:  # after it wrote: its row must not survive
                    raise ValueError(f"write {value} failed")
                return value

            return work

        writes = [executor.write(insert(i, fail=(i == 5))) for i in range(10)]
        results = await asyncio.gather(*writes, return_exceptions=True)

        errors = [r for r in results if isinstance(r, Exception)]
        assert [str(e) for e in errors] == ["write 5 failed"]
        assert [r for r in results if not isinstance(r, Exception)] == [0, 1, 2, 3, 4, 6, 7, 8, 9]
        stored = await executor.read(
            lambda c: [v for (v,) in c.exec_driver_sql("SELECT v FROM t ORDER BY v")]
        )
        assert stored == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    finally:
        await executor.close()


async def test_a_pool_with_no_connection_free_in_time_is_unavailable(tmp_path: Path) -> None:
    """The engine retries Unavailable; a pool timeout once escaped as SQLAlchemy's own
    TimeoutError, and the step result it was storing was lost (the run stuck RUNNING)."""
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{tmp_path / 'pool.db'}", pool_size=1, max_overflow=0, pool_timeout=0.1
    )
    executor = AsyncExecutor(engine)
    try:
        async with engine.connect():  # the pool's only connection, held
            with pytest.raises(Unavailable, match="the database is unavailable"):
                await executor.read(lambda conn: conn.execute(sa.text("SELECT 1")).scalar())
    finally:
        await executor.close()
