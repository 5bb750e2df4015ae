"""Group commit on PostgreSQL (`store/postgres_group_commit.py`, `postgres_writes.py`): the
transitions and creations waiting at one moment are written by one statement in one
transaction, yet a write that cannot be made fails alone: a run whose lease moved (LeaseLost)
or whose version moved (Conflict) changes nothing while the others commit, and a write the
database refuses fails alone after its batch is run again one write at a time.

PostgreSQL only (SLUICE_TEST_DATABASE_URL, `make test-postgres`). That writes shared one
transaction is seen in the rows' `xmin` (the id of the transaction that wrote them)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from sluice.engine.errors import Conflict, LeaseLost, Unavailable
from sluice.engine.model import Event, EventType, Run, RunStatus, StepSpec, Template
from sluice.engine.ports import Fence
from sluice.engine.transitions import apply
from sluice.store.factory import open_store
from sluice.store.postgres import PostgresStore
from sluice.store.postgres_leases import PostgresLeases

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ONE = Template("one", steps=(StepSpec("a", "sleep"),))
ME = "server-a"


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[PostgresStore]:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL: set SLUICE_TEST_DATABASE_URL (make test-postgres)")
    opened = await open_store(database_url)
    assert isinstance(opened, PostgresStore)
    yield opened
    await opened.close()


@pytest.fixture
async def db(database_url: str, store: PostgresStore) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the test's own, to look at rows and to move leases behind the store."""
    url = make_url(database_url).set(drivername="postgresql")
    conn = await asyncpg.connect(url.render_as_string(hide_password=False))
    yield conn
    await conn.close()


def new_run(n: int) -> tuple[Run, list[Event]]:
    run = Run.new(id=f"00000000-0000-4000-8000-{n:012d}", owner="alice", template=ONE,
                  params={}, now=T0)  # fmt: skip
    return run, [apply(run, Event(EventType.WORKFLOW_CREATED, T0))]


def started(run: Run) -> list[Event]:
    """`run` started (applied to it, version one up, as the engine commits it)."""
    events = [
        apply(run, Event(EventType.WORKFLOW_STARTED, T0 + timedelta(seconds=1))),
        apply(run, Event(EventType.STEP_STARTED, T0 + timedelta(seconds=1), "a", attempt=1)),
    ]
    run.version += 1
    return events


async def created(store: PostgresStore, count: int) -> list[Run]:
    runs = []
    for n in range(count):
        run, events = new_run(n)
        await store.create_leased_run(run, events, ME)
        runs.append(run)
    return runs


async def writers_of(db: asyncpg.Connection, run_ids: Sequence[str]) -> set[str]:
    """The transactions that wrote these runs' rows last."""
    rows = await db.fetch("SELECT xmin::text FROM runs WHERE id = ANY($1)", run_ids)
    return {r[0] for r in rows}


async def test_new_runs_and_transitions_waiting_together_share_one_transaction(
    store: PostgresStore, db: asyncpg.Connection
) -> None:
    earlier = await created(store, 6)
    fresh = [new_run(n) for n in range(100, 106)]
    writes: list[Any] = [store.commit(r, started(r), fence=Fence(ME, 1)) for r in earlier]
    writes += [store.create_leased_run(r, events, ME) for r, events in fresh]

    await asyncio.gather(*writes)

    ids = [r.id for r in earlier] + [r.id for r, _ in fresh]
    rows = await db.fetch("SELECT xmin::text, version FROM runs WHERE id = ANY($1)", ids)
    assert len({r[0] for r in rows}) == 1, "every run written by one transaction"
    assert sorted(r[1] for r in rows) == [0] * 6 + [1] * 6
    in_it = "SELECT count(*) FROM events WHERE xmin::text = $1"
    assert await db.fetchval(in_it, rows[0][0]) == 6 * 2 + 6, "and every event with them"


async def test_a_lost_lease_or_version_in_a_batch_fails_only_that_run(
    store: PostgresStore, db: asyncpg.Connection
) -> None:
    runs = await created(store, 8)
    stolen, stale = runs[2], runs[5]
    # Another server took `stolen` over; `stale` was changed by another writer of this server.
    await db.execute(
        "UPDATE runs SET lease_owner = 'server-b', lease_epoch = 2 WHERE id = $1", stolen.id
    )
    await db.execute("UPDATE runs SET version = version + 1 WHERE id = $1", stale.id)
    timer = {"retry:a": T0 + timedelta(minutes=1)}

    results = await asyncio.gather(
        *(store.commit(r, started(r), timers=timer, fence=Fence(ME, 1)) for r in runs),
        return_exceptions=True,
    )

    assert isinstance(results[2], LeaseLost)
    assert isinstance(results[5], Conflict) and not isinstance(results[5], LeaseLost)
    assert [r for i, r in enumerate(results) if i not in (2, 5)] == [[]] * 6  # (no claims)
    kept = [r.id for i, r in enumerate(runs) if i not in (2, 5)]
    assert len(await writers_of(db, kept)) == 1, "the others shared one transaction"
    for lost in (stolen, stale):  # nothing of a failed write was made
        assert await db.fetchval("SELECT count(*) FROM events WHERE run_id = $1", lost.id) == 1
        assert await db.fetchval("SELECT count(*) FROM timers WHERE run_id = $1", lost.id) == 0
        status = await db.fetchval("SELECT status FROM step_runs WHERE run_id = $1", lost.id)
        assert status == "PENDING"
    assert await db.fetchval("SELECT count(*) FROM timers WHERE run_id = ANY($1)", kept) == 6


async def test_a_write_the_database_refuses_fails_alone(
    store: PostgresStore, db: asyncpg.Connection
) -> None:
    runs = await created(store, 6)
    bad = runs[3]
    events = {r.id: started(r) for r in runs}
    # An event whose sequence is taken (the run's first): the statement of a batch holding it
    # fails as a whole, so the batch is written again one transition at a time.
    events[bad.id] = [replace(events[bad.id][0], sequence=1)]

    results = await asyncio.gather(
        *(store.commit(r, events[r.id], fence=Fence(ME, 1)) for r in runs),
        return_exceptions=True,
    )

    assert isinstance(results[3], Conflict)
    assert [r for i, r in enumerate(results) if i != 3] == [[]] * 5  # stored (no claims)
    assert await db.fetchval("SELECT version FROM runs WHERE id = $1", bad.id) == 0
    assert await db.fetchval("SELECT count(*) FROM events WHERE run_id = $1", bad.id) == 1
    stored = await store.get_run_any(runs[0].id)
    assert stored is not None and stored.status is RunStatus.RUNNING


async def test_timers_and_a_command_outcome_commit_with_their_transition(
    store: PostgresStore, db: asyncpg.Connection, database_url: str
) -> None:
    (run,) = await created(store, 1)
    leases = PostgresLeases(store, make_url(database_url))
    try:
        command = await leases.send_command(run.id, "start", {})
        due = T0 + timedelta(minutes=1)
        await store.commit(
            run, started(run), timers={"retry:a": due, "other": due}, fence=Fence(ME, 1),
            command=(command, {"ok": True}),
        )  # fmt: skip
        later = [apply(run, Event(EventType.STEP_RETRYING, T0, "a", attempt=1))]
        run.version += 1
        await store.commit(run, later, timers={"retry:a": None}, fence=Fence(ME, 1))

        assert [(t.key, t.fire_at) for t in await store.timers_of([run.id])] == [("other", due)]
        assert await leases.command_outcome(command) == {"ok": True}
    finally:
        await leases.close()


async def test_a_request_id_used_twice_in_one_batch_gives_back_the_first_run(
    store: PostgresStore,
) -> None:
    first, first_events = new_run(1)
    second, second_events = new_run(2)
    first.request_id = second.request_id = "req-1"

    got = await asyncio.gather(
        store.create_leased_run(first, first_events, ME),
        store.create_leased_run(second, second_events, ME),
    )

    assert [r.id for r in got] == [first.id, first.id]
    assert await store.get_run_any(second.id) is None


async def test_a_connection_the_database_ended_is_replaced_and_callers_may_try_again(
    store: PostgresStore, db: asyncpg.Connection
) -> None:
    """The writer's connection ended between two writes (a restart, an administrator): the
    next write fails with Unavailable at most (the engine tries again), never with a driver
    error, and the one after works on a new connection. asyncpg reports such a connection in
    several ways depending on when it noticed, so this goes round a few times."""
    runs = await created(store, 10)
    for run in runs:
        await db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        events = started(run)
        try:
            await store.commit(run, events, fence=Fence(ME, 1))
        except Unavailable:
            await store.commit(run, events, fence=Fence(ME, 1))  # as the engine would
        assert await db.fetchval("SELECT version FROM runs WHERE id = $1", run.id) == 1


async def test_closing_the_store_answers_every_write_waiting(database_url: str) -> None:
    """Writes waiting or in flight when the store closes are answered (committed, or
    Unavailable: the engine stores them again once a store is back), never left hanging.
    Closed after 0, 1, 2, ... turns of the loop: before the writer took them, while it builds
    their statement, while the database runs it."""
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL: set SLUICE_TEST_DATABASE_URL (make test-postgres)")
    for turns in range(8):
        opened = await open_store(database_url)
        assert isinstance(opened, PostgresStore)
        runs = []
        for n in range(5):
            run, events = new_run(100 * turns + n)
            await opened.create_leased_run(run, events, ME)
            runs.append(run)
        writes = [
            asyncio.create_task(opened.commit(r, started(r), fence=Fence(ME, 1))) for r in runs
        ]
        for _ in range(turns):
            await asyncio.sleep(0)

        await opened.close()

        results = await asyncio.wait_for(asyncio.gather(*writes, return_exceptions=True), 10)
        assert all(r is None or isinstance(r, Unavailable) for r in results), (turns, results)
