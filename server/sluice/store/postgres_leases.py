"""Run leases and stored commands on PostgreSQL: what lets several servers share runs.

A run's lease is its owner (a server's id) and an epoch, and lives as long as the owner's
heartbeat: one row per server in `servers`, whose expiry each renewal moves on. One statement
renews every lease a server holds, touching no run (a write of a run never waits for a
renewal, nor deadlocks with one). Expiry is judged by the database's clock (`now()`), never a
server's: servers whose clocks disagree still agree on who holds a run. A claim takes the runs
of servers whose heartbeat stopped with FOR UPDATE SKIP LOCKED, so servers claiming at the same
moment split the runs between them instead of queueing; every claim or takeover moves the
epoch on, and every write of a run checks owner and epoch (fencing).
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
from sluice.store.executors import AsyncExecutor, Executor
from sluice.store.postgres import PostgresStore, create_engine
from sluice.store.schema import run_commands

_IDS = sa.bindparam("ids", type_=ARRAY(sa.String))

# A server's heartbeat: its row's expiry moves on, unless it already passed (then others may
# be claiming its runs: it must `join` again). clock_timestamp(), not now(): a renewal that
# waited for a claim's lock on the row judges the expiry after that claim, not before it.
_RENEW = sa.text(
    """
    UPDATE servers SET expires_at = now() + make_interval(secs => :ttl)
    WHERE id = :owner AND expires_at > clock_timestamp()
    RETURNING id
    """
)

_JOIN = sa.text(
    """
    INSERT INTO servers (id, expires_at) VALUES (:owner, now() + make_interval(secs => :ttl))
    ON CONFLICT (id) DO UPDATE SET expires_at = EXCLUDED.expires_at
    """
)

# What a server held before its lease lapsed (or before it left) is let go, for any server's
# next claim. The runs others claimed meanwhile have another owner and are not touched.
_LET_GO = sa.text(
    """
    UPDATE runs SET lease_owner = NULL
    WHERE lease_owner = :owner AND status IN ('PENDING', 'RUNNING', 'PAUSED')
    """
)

_RELEASE = sa.text(
    "UPDATE runs SET lease_owner = NULL WHERE id = ANY(:ids) AND lease_owner = :owner"
).bindparams(_IDS)

_LEAVE = sa.text("UPDATE servers SET expires_at = now() WHERE id = :owner")

# The servers whose heartbeat stopped, locked against a late renewal until the claim commits
# (a renewal waits, then finds the row expired): their runs cannot be renewed while taken.
_DEAD = "SELECT id FROM servers WHERE expires_at < now() FOR SHARE"

# A run no live server holds: no owner, or its owner's heartbeat stopped.
_ACQUIRE = sa.text(
    f"""
    UPDATE runs SET lease_owner = :owner, lease_epoch = lease_epoch + 1
    WHERE id = :id AND (lease_owner IS NULL OR lease_owner IN ({_DEAD}))
    RETURNING lease_epoch
    """
)

# Every candidate first, by owner from the index of unfinished runs' owners: those with none,
# and those of each dead server that still owns any (usually neither, and the claim reads
# nothing; a dead server whose runs were all taken drops out). MATERIALIZED: with a LIMIT
# the planner would rather scan the table, hoping to meet claimable rows early. Then up to
# `limit` of them are locked, the owner checked again on the locked row (another server's
# claim may have committed in between). RUNNING runs need a server; so do PAUSED ones with a
# step still running (a pause lets running steps finish: one cut off is run again) or a timer
# (an approval's deadline), the other PAUSED runs only once resumed (`acquire`).
_CLAIM = sa.text(
    """
    WITH dead AS MATERIALIZED (
        SELECT id FROM servers
        WHERE expires_at < now()
          AND EXISTS (
              SELECT 1 FROM runs WHERE runs.lease_owner = servers.id
                AND runs.status IN ('PENDING', 'RUNNING', 'PAUSED'))
        FOR SHARE
    ),
    candidates AS MATERIALIZED (
        SELECT id FROM runs WHERE lease_owner IS NULL AND status IN ('RUNNING', 'PAUSED')
        UNION ALL
        SELECT runs.id FROM dead JOIN runs ON runs.lease_owner = dead.id
        WHERE runs.status IN ('RUNNING', 'PAUSED')
    ),
    claimable AS (
        SELECT runs.id FROM runs JOIN candidates USING (id)
        WHERE (runs.status = 'RUNNING'
               OR (runs.status = 'PAUSED' AND EXISTS (
                   SELECT 1 FROM step_runs
                   WHERE step_runs.run_id = runs.id AND step_runs.status = 'RUNNING'))
               OR (runs.status = 'PAUSED' AND EXISTS (
                   SELECT 1 FROM timers WHERE timers.run_id = runs.id)))
          AND (runs.lease_owner IS NULL OR runs.lease_owner = ANY(ARRAY(SELECT id FROM dead)))
        LIMIT :limit
        FOR UPDATE OF runs SKIP LOCKED
    )
    UPDATE runs SET lease_owner = :owner, lease_epoch = runs.lease_epoch + 1
    FROM claimable WHERE runs.id = claimable.id
    RETURNING runs.id, runs.lease_epoch
    """
)

# Servers gone for a day whose runs all ended or were taken: nothing names them any more.
_FORGET = sa.text(
    """
    DELETE FROM servers
    WHERE expires_at < now() - interval '1 day'
      AND NOT EXISTS (
          SELECT 1 FROM runs WHERE runs.lease_owner = servers.id
            AND runs.status IN ('PENDING', 'RUNNING', 'PAUSED'))
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

    def __init__(self, store: PostgresStore, url: URL) -> None:
        self._store = store
        self._db: Executor = AsyncExecutor(create_engine(url, pool_size=2, max_overflow=2))

    async def close(self) -> None:
        await self._db.close()

    async def create_leased(self, run: Run, events: Sequence[Event], owner: str) -> tuple[Run, int]:
        stored = await self._store.create_leased_run(run, events, owner)  # one statement
        return stored, 1 if stored.id == run.id else 0

    async def join(self, owner: str, ttl: timedelta) -> None:
        params = {"owner": owner, "ttl": ttl.total_seconds()}

        def join(conn: sa.Connection) -> None:
            conn.execute(_JOIN, params)
            conn.execute(_LET_GO, params)

        await self._db.write(join)

    async def renew(self, owner: str, ttl: timedelta) -> bool:
        params = {"owner": owner, "ttl": ttl.total_seconds()}
        return await self._db.write(
            lambda conn: conn.execute(_RENEW, params).scalar_one_or_none() is not None
        )

    async def acquire(self, run_id: str, owner: str) -> int | None:
        params = {"owner": owner, "id": run_id}
        return await self._db.write(
            lambda conn: conn.execute(_ACQUIRE, params).scalar_one_or_none()
        )

    async def claim(self, owner: str, limit: int) -> list[tuple[str, int]]:
        params = {"owner": owner, "limit": limit}
        return await self._db.write(
            lambda conn: [(str(i), int(e)) for i, e in conn.execute(_CLAIM, params)]
        )

    async def leave(self, owner: str, run_ids: Sequence[str]) -> None:
        params = {"owner": owner, "ids": list(run_ids)}

        def leave(conn: sa.Connection) -> None:
            if run_ids:
                conn.execute(_RELEASE, params)
            conn.execute(_LEAVE, params)

        await self._db.write(leave)

    async def forget_servers(self) -> int:
        return await self._db.write(lambda conn: conn.execute(_FORGET).rowcount)

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
