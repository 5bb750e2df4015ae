"""Run leases held by a server's heartbeat (`store/postgres_leases.py`).

A run's lease is its owner and epoch; it lives as long as the owner's row in `servers`. What a
user of several servers relies on: renewing touches no run (so a write of a run in progress
never holds a renewal up, nor deadlocks with it, as per-run renewals did under load); a live
server's runs are never claimed or acquired by another; a dead server's are, each with a new
epoch; a server that finds its heartbeat expired lets its old runs go when it joins again.

PostgreSQL only (SLUICE_TEST_DATABASE_URL, `make test-postgres`). Expiry is moved by hand in
the `servers` table, so nothing waits for a real TTL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from sluice.engine.model import Event, EventType, Run, StepSpec, Template
from sluice.engine.transitions import apply
from sluice.store.factory import open_store
from sluice.store.postgres import PostgresStore
from sluice.store.postgres_leases import PostgresLeases

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ONE = Template("one", steps=(StepSpec("a", "sleep"),))
TTL = timedelta(minutes=5)
A, B = "server-a", "server-b"


@pytest.fixture
async def leases(database_url: str) -> AsyncIterator[PostgresLeases]:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL: set SLUICE_TEST_DATABASE_URL (make test-postgres)")
    store = await open_store(database_url)
    assert isinstance(store, PostgresStore)
    opened = PostgresLeases(store, make_url(database_url))
    yield opened
    await opened.close()
    await store.close()


@pytest.fixture
async def db(database_url: str, leases: PostgresLeases) -> AsyncIterator[asyncpg.Connection]:
    url = make_url(database_url).set(drivername="postgresql")
    conn = await asyncpg.connect(url.render_as_string(hide_password=False))
    yield conn
    await conn.close()


async def running(leases: PostgresLeases, db: asyncpg.Connection, n: int, owner: str) -> str:
    """A RUNNING run leased to `owner` (epoch 1)."""
    run = Run.new(id=f"00000000-0000-4000-8000-{n:012d}", owner="alice", template=ONE,
                  params={}, now=T0)  # fmt: skip
    _, epoch = await leases.create_leased(
        run, [apply(run, Event(EventType.WORKFLOW_CREATED, T0))], owner
    )
    assert epoch == 1
    await db.execute("UPDATE runs SET status = 'RUNNING' WHERE id = $1", run.id)
    return run.id


async def stop_heartbeat(db: asyncpg.Connection, owner: str) -> None:
    await db.execute("UPDATE servers SET expires_at = now() - interval '1 s' WHERE id = $1", owner)


async def test_renewing_touches_no_run_so_a_write_in_progress_never_holds_it_up(
    leases: PostgresLeases, db: asyncpg.Connection
) -> None:
    await leases.join(A, TTL)
    run_ids = [await running(leases, db, n, A) for n in range(3)]
    before = await db.fetchval("SELECT expires_at FROM servers WHERE id = $1", A)
    # A transaction of another connection holds every run's row, as a batch of writes does.
    async with db.transaction():
        await db.execute("SELECT 1 FROM runs WHERE id = ANY($1) FOR UPDATE", run_ids)
        renewed = await asyncio.wait_for(leases.renew(A, TTL), timeout=5)
    assert renewed is True
    assert await db.fetchval("SELECT expires_at FROM servers WHERE id = $1", A) > before


async def test_a_live_servers_runs_are_neither_claimed_nor_acquired(
    leases: PostgresLeases, db: asyncpg.Connection
) -> None:
    await leases.join(A, TTL)
    await leases.join(B, TTL)
    run_id = await running(leases, db, 1, A)

    assert await leases.claim(B, 100) == []
    assert await leases.acquire(run_id, B) is None
    assert await db.fetchval("SELECT lease_owner FROM runs WHERE id = $1", run_id) == A


async def test_a_dead_servers_runs_are_claimed_with_a_new_epoch_and_it_cannot_renew(
    leases: PostgresLeases, db: asyncpg.Connection
) -> None:
    await leases.join(A, TTL)
    await leases.join(B, TTL)
    run_ids = {await running(leases, db, n, A) for n in range(4)}
    await stop_heartbeat(db, A)

    claimed = await leases.claim(B, 100)

    assert {run_id for run_id, _ in claimed} == run_ids
    assert {epoch for _, epoch in claimed} == {2}
    assert await leases.renew(A, TTL) is False, "a lapsed heartbeat is not brought back"
    assert await leases.claim(B, 100) == [], "nothing left to claim"


async def test_joining_again_after_a_lapse_lets_the_runs_held_before_go(
    leases: PostgresLeases, db: asyncpg.Connection
) -> None:
    await leases.join(A, TTL)
    await leases.join(B, TTL)
    kept_by_a, taken_by_b = await running(leases, db, 1, A), await running(leases, db, 2, A)
    await stop_heartbeat(db, A)
    # B claimed one of A's runs before A came back (a claim takes what it is given).
    assert await leases.acquire(taken_by_b, B) == 2

    await leases.join(A, TTL)

    owners = dict(await db.fetch("SELECT id, lease_owner FROM runs"))
    assert owners == {kept_by_a: None, taken_by_b: B}
    assert await leases.renew(A, TTL) is True
    assert [run_id for run_id, _ in await leases.claim(A, 100)] == [kept_by_a]


async def test_leaving_hands_the_runs_over_at_once(
    leases: PostgresLeases, db: asyncpg.Connection
) -> None:
    await leases.join(A, TTL)
    await leases.join(B, TTL)
    held, paused = await running(leases, db, 1, A), await running(leases, db, 2, A)
    await db.execute("UPDATE runs SET status = 'PAUSED' WHERE id = $1", paused)

    await leases.leave(A, [held])

    assert [run_id for run_id, _ in await leases.claim(B, 100)] == [held]
    assert await leases.acquire(paused, B) == 2, "its heartbeat ended: nothing holds the rest"


async def test_servers_gone_for_a_day_are_forgotten_once_nothing_names_them(
    leases: PostgresLeases, db: asyncpg.Connection
) -> None:
    for server in (A, B):
        await leases.join(server, TTL)
        await db.execute(
            "UPDATE servers SET expires_at = now() - interval '2 days' WHERE id = $1", server
        )
    await running(leases, db, 1, B)  # B still names an unfinished run

    assert await leases.forget_servers() == 1
    assert [r[0] for r in await db.fetch("SELECT id FROM servers")] == [B]
