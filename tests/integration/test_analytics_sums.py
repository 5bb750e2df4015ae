"""The SQL side of GetAnalytics: a run's terminal commit queues it, folds add each queued run
once (even two stores folding at once), a window is a range of the sums' primary key, and
migration 0011 queues every run that had ended, so the sums fill from stored runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from sluice.engine import analytics
from sluice.engine.analytics import AnalyticsQuery
from sluice.engine.model import Event, EventType, Run, RunStatus
from sluice.engine.transitions import apply
from sluice.store import migrate, rows
from sluice.store.base import SqlStore, creation_writes, sums_query
from sluice.store.factory import create_engine, open_store
from sluice.store.schema import analytics_queue, analytics_sums, template_snapshots
from tests.integration.test_list_plans import _plan
from tests.integration.test_store_conformance import ONE, advance, created, new_run

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
DAY = timedelta(days=1)
EVERYTHING = AnalyticsQuery(T0 - 10 * DAY, T0 + 10 * DAY)


@pytest.fixture(params=["sqlite", "postgresql"])
async def url(request: pytest.FixtureRequest, tmp_path: Path, database_url: str) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sums.db'}"
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL: set SLUICE_TEST_DATABASE_URL (make test-postgres)")
    return database_url


@pytest.fixture
async def store(url: str) -> AsyncIterator[SqlStore]:
    opened = await open_store(url)
    yield opened
    await opened.close()


def finish(run: Run, end: datetime) -> list[Event]:
    """The events that complete run n's two steps and end it at `end`."""
    return [
        Event(EventType.WORKFLOW_STARTED, end - timedelta(seconds=3)),
        Event(EventType.STEP_STARTED, end - timedelta(seconds=3), "a", attempt=1),
        Event(EventType.STEP_COMPLETED, end - timedelta(seconds=2), "a", attempt=1),
        Event(EventType.GATE_PASSED, end - timedelta(seconds=2), "a", "g"),
        Event(EventType.STEP_STARTED, end - timedelta(seconds=2), "b", attempt=1),
        Event(EventType.STEP_COMPLETED, end, "b", attempt=1),
        Event(EventType.WORKFLOW_COMPLETED, end),
    ]


async def queued(store: SqlStore) -> list[str]:
    query = sa.select(analytics_queue.c.run_id).order_by(analytics_queue.c.id)
    return await store.executor.read(lambda conn: list(conn.execute(query).scalars()))


async def runs_counted(store: SqlStore, owner: str = "alice") -> int:
    figures = await store.analytics(owner, EVERYTHING)
    return sum(t.total for t in figures.templates)


async def test_only_the_commit_that_ends_a_run_queues_it(store: SqlStore) -> None:
    run = await created(store, 1)
    events = finish(run, T0)
    await advance(store, run, *events[:3])
    assert await queued(store) == []
    await advance(store, run, *events[3:])
    assert await queued(store) == [run.id]
    assert await store.fold_analytics() == 1
    assert await queued(store) == []
    assert await runs_counted(store) == 1


async def test_a_run_counts_once_it_ends_even_if_deleted_before_the_fold(
    store: SqlStore,
) -> None:
    gone, kept = await created(store, 1), await created(store, 2)
    await advance(store, gone, *finish(gone, T0))
    await advance(store, kept, *finish(kept, T0))
    assert await store.delete_run("alice", gone.id) is RunStatus.COMPLETED
    assert await store.fold_analytics() == 2
    assert await queued(store) == []
    assert await runs_counted(store) == 2, "its queue row says what it added"


async def test_two_stores_folding_at_once_count_each_run_once(url: str) -> None:
    first, second = await open_store(url), await open_store(url)
    try:
        for n in range(1, 61):
            run = await created(first, n)
            await advance(first, run, *finish(run, T0 + timedelta(minutes=n)))
        # Small batches, so the two folds interleave over the same queue rows.
        folded = await asyncio.gather(first.fold_analytics(7), second.fold_analytics(7))
        assert sum(folded) == 60
        assert await runs_counted(first) == 60
        stored = sa.select(sa.func.sum(analytics_sums.c.completed)).where(
            analytics_sums.c.kind == analytics.RUN
        )
        # Each run in its hour, its 6 hours and its day.
        assert await first.executor.read(lambda conn: conn.execute(stored).scalar()) == 180
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize("template_id", ["", "one"])
async def test_each_span_of_a_window_is_a_range_of_the_primary_key(
    store: SqlStore, url: str, template_id: str
) -> None:
    engine = create_engine(url)
    query = AnalyticsQuery(T0 - 40 * DAY, T0, template_id=template_id, template_version=2)
    try:
        for span in analytics.spans(analytics.floor_hour(query.start), query.end):
            statement = sums_query("alice", span, query)
            async with engine.connect() as conn:
                plan = await conn.run_sync(lambda sync, s=statement: _plan(sync, s))  # type: ignore[misc]
            text = "\n".join(plan)
            if engine.dialect.name == "sqlite":
                assert plan[0].startswith("SEARCH analytics_sums USING PRIMARY KEY ("), text
                assert "owner=? AND span_seconds=? AND span_start>? AND span_start<?" in text, text
            else:
                assert "analytics_sums_pkey" in text and "Seq Scan" not in text, text
                bounds = "".join(line for line in plan if "Index Cond" in line)
                assert all(c in bounds for c in ("owner", "span_seconds", "span_start")), text
    finally:
        await engine.dispose()


async def test_migration_0011_queues_every_run_that_had_ended(url: str) -> None:
    def ended(n: int, end: datetime) -> tuple[Run, list[Event]]:
        run, events = new_run(n)
        return run, events + [apply(run, e) for e in finish(run, end)]

    late, early, unfinished, gone = ended(1, T0 + DAY), ended(2, T0), new_run(3), ended(4, T0 + DAY)
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine, "0010")  # the revision before 0011: runs as they were
        async with engine.begin() as conn:
            await conn.execute(template_snapshots.insert(), [rows.snapshot(ONE).row()])
            for run, events in (late, early, unfinished, gone):
                for statement, values in creation_writes(run, events):
                    await conn.execute(statement, values)
    finally:
        await engine.dispose()

    store = await open_store(url, migrate=True)
    try:
        order = [early[0].id, late[0].id, gone[0].id]
        assert await queued(store) == order, "every ended run, oldest end first"
        # Queued without counts: a run deleted before the fold reads it is not counted.
        assert await store.delete_run("alice", gone[0].id) is RunStatus.COMPLETED
        assert await store.fold_analytics() == 3
        figures = await store.analytics("alice", EVERYTHING)
        [template] = figures.templates
        assert (template.name, template.total, template.durations.count) == ("one", 2, 2)
        assert {s.name: s.total for s in figures.step_types} == {"sleep": 4}
        [gate] = figures.gate_types
        assert gate.pass_rate == 1.0
        only_early = await store.analytics("alice", AnalyticsQuery(T0 - DAY, T0 + DAY / 2))
        assert [t.total for t in only_early.templates] == [1]
    finally:
        await store.close()
