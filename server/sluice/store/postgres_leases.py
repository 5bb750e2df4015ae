"""Run leases and stored commands on PostgreSQL: what lets several servers share runs.

Expiry is judged by the database's clock (`now()`), never a server's: servers whose clocks
disagree still agree on who holds a run. A claim takes rows with FOR UPDATE SKIP LOCKED, so
servers claiming at the same moment split the runs between them instead of queueing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import URL

from sluice.engine.model import Event, Run
from sluice.engine.ports import StoredCommand
from sluice.store.base import SqlStore
from sluice.store.executors import AsyncExecutor, Executor
from sluice.store.postgres import PostgresStore, create_engine
from sluice.store.schema import run_commands

_IDS = sa.bindparam("ids", type_=ARRAY(sa.String))

_ACQUIRE = sa.text(
    """
    UPDATE runs SET lease_owner = :owner, lease_epoch = lease_epoch + 1,
           lease_expires_at = now() + make_interval(secs => :ttl)
    WHERE id = :id
      AND (lease_owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at < now())
    RETURNING lease_epoch
    """
)

# The oldest expiries first: the runs that have waited longest for a new server.
_CLAIM = sa.text(
    """
    WITH claimable AS (
        SELECT id FROM runs
        WHERE status = 'RUNNING'
          AND (lease_expires_at IS NULL OR lease_expires_at < now())
        ORDER BY lease_expires_at NULLS FIRST
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE runs SET lease_owner = :owner, lease_epoch = runs.lease_epoch + 1,
           lease_expires_at = now() + make_interval(secs => :ttl)
    FROM claimable WHERE runs.id = claimable.id
    RETURNING runs.id, runs.lease_epoch
    """
)

_RENEW = sa.text(
    """
    UPDATE runs SET lease_expires_at = now() + make_interval(secs => :ttl)
    WHERE id = ANY(:ids) AND lease_owner = :owner
    RETURNING id
    """
).bindparams(_IDS)

_RELEASE = sa.text(
    """
    UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL
    WHERE id = ANY(:ids) AND lease_owner = :owner
    """
).bindparams(_IDS)

_LEASE_NEW = sa.text(
    """
    UPDATE runs SET lease_owner = :owner, lease_epoch = 1,
           lease_expires_at = now() + make_interval(secs => :ttl)
    WHERE id = :id
    """
)

_PENDING = (
    sa.select(run_commands.c.id, run_commands.c.run_id, run_commands.c.kind, run_commands.c.args)
    .where(run_commands.c.run_id == sa.any_(_IDS), run_commands.c.done_at.is_(None))
    .order_by(run_commands.c.id)
)


class PostgresLeases:
    """The LeaseStore port. Its statements have connections of their own: a renewal queued
    behind a busy server's transitions could arrive after its leases expired."""

    def __init__(self, store: SqlStore, url: URL) -> None:
        self._store = store
        self._db: Executor = AsyncExecutor(create_engine(url, pool_size=2, max_overflow=2))

    async def close(self) -> None:
        await self._db.close()

    async def create_leased(
        self, run: Run, events: Sequence[Event], owner: str, ttl: timedelta
    ) -> tuple[Run, int]:
        if isinstance(self._store, PostgresStore):  # the run and its lease in one statement
            stored = await self._store.create_leased_run(run, events, owner, ttl)
        else:
            params = {"owner": owner, "ttl": ttl.total_seconds(), "id": run.id}
            stored = await self._store.create_run(
                run, events, then=lambda conn: conn.execute(_LEASE_NEW, params)
            )
        return stored, 1 if stored.id == run.id else 0

    async def acquire(self, run_id: str, owner: str, ttl: timedelta) -> int | None:
        params = {"owner": owner, "ttl": ttl.total_seconds(), "id": run_id}
        return await self._db.write(
            lambda conn: conn.execute(_ACQUIRE, params).scalar_one_or_none()
        )

    async def claim(self, owner: str, limit: int, ttl: timedelta) -> list[tuple[str, int]]:
        params = {"owner": owner, "ttl": ttl.total_seconds(), "limit": limit}
        return await self._db.write(
            lambda conn: [(r.id, r.lease_epoch) for r in conn.execute(_CLAIM, params)]
        )

    async def renew(self, owner: str, run_ids: Sequence[str], ttl: timedelta) -> set[str]:
        if not run_ids:
            return set()
        params = {"owner": owner, "ttl": ttl.total_seconds(), "ids": list(run_ids)}
        return await self._db.write(lambda conn: set(conn.execute(_RENEW, params).scalars()))

    async def release(self, owner: str, run_ids: Sequence[str]) -> None:
        params = {"owner": owner, "ids": list(run_ids)}
        await self._db.write(lambda conn: conn.execute(_RELEASE, params))

    async def send_command(self, run_id: str, kind: str, args: Mapping[str, Any]) -> int:
        statement = (
            run_commands.insert()
            .values(run_id=run_id, kind=kind, args=dict(args))
            .returning(run_commands.c.id)
        )
        return await self._db.write(lambda conn: int(conn.execute(statement).scalar_one()))

    async def pending_commands(self, run_ids: Sequence[str]) -> list[StoredCommand]:
        params = {"ids": list(run_ids)}
        return await self._db.read(
            lambda conn: [StoredCommand(*row) for row in conn.execute(_PENDING, params)]
        )

    async def finish_command(self, command_id: int, outcome: Mapping[str, Any]) -> None:
        statement = (
            run_commands.update()
            .where(run_commands.c.id == command_id, run_commands.c.done_at.is_(None))
            .values(outcome=dict(outcome), done_at=sa.func.now())
        )
        await self._db.write(lambda conn: conn.execute(statement))

    async def command_outcome(self, command_id: int) -> Mapping[str, Any] | None:
        # Read once: the command's row goes with it (its caller is the only reader).
        statement = (
            run_commands.delete()
            .where(run_commands.c.id == command_id, run_commands.c.done_at.is_not(None))
            .returning(run_commands.c.outcome)
        )
        return await self._db.write(lambda conn: conn.execute(statement).scalar_one_or_none())

    async def withdraw_command(self, command_id: int) -> bool:
        statement = run_commands.delete().where(
            run_commands.c.id == command_id, run_commands.c.done_at.is_(None)
        )
        return await self._db.write(lambda conn: conn.execute(statement).rowcount == 1)
