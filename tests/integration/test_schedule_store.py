"""The schedule store on a real database (a SQLite file, or PostgreSQL with
SLUICE_TEST_DATABASE_URL): claims racing from two stores (two servers) take each slot once,
and an update made from a stale read writes nothing."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from sluice.engine.schedules import FireStatus, Schedule
from sluice.runtime.schedules import plan_of
from sluice.store.base import SqlStore
from sluice.store.factory import open_store
from sluice.store.schedules import SqlScheduleStore

T0 = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)


@pytest.fixture
async def stores(database_url: str) -> AsyncIterator[list[SqlStore]]:
    opened = [await open_store(database_url) for _ in range(2)]
    yield opened
    for store in opened:
        await store.close()


def every_second(n: int) -> Schedule:
    return Schedule(
        owner="alice", id=f"s{n:02d}", template_id="t", cron="* * * * * *",
        catchup_window=timedelta(hours=1), next_fire_at=T0, created_at=T0, updated_at=T0,
    )  # fmt: skip


async def test_claims_racing_from_two_servers_take_each_slot_once(stores: list[SqlStore]) -> None:
    a, b = (SqlScheduleStore(s.executor) for s in stores)
    for n in range(20):
        assert await a.create(every_second(n))
    now = T0 + timedelta(seconds=5)  # six slots each: T0 .. T0 + 5 s

    rounds = await asyncio.gather(*(s.claim_due(now, plan_of, limit=5) for s in (a, b) * 4))
    claimed = Counter((c.schedule.id, c.slot) for found in rounds for c in found)

    assert set(claimed.values()) == {1}
    assert len(claimed) == 20 * 6
    assert await a.claim_due(now, plan_of, limit=50) == []  # nothing due is left
    assert await b.earliest() == now + timedelta(seconds=1)
    found = await b.get("alice", "s00")
    assert found is not None
    assert [f.status for f in found.recent] == [FireStatus.PENDING] * 6


async def test_an_update_from_a_stale_read_writes_nothing(stores: list[SqlStore]) -> None:
    a = SqlScheduleStore(stores[0].executor)
    assert await a.create(every_second(1))
    assert not await a.create(every_second(1))  # the id is taken
    first = every_second(1)
    first.cron, first.updated_at = "0 * * * * *", T0 + timedelta(seconds=1)
    assert await a.update(first, expected=T0)
    second = every_second(1)
    second.cron, second.updated_at = "0 0 * * * *", T0 + timedelta(seconds=2)
    assert not await a.update(second, expected=T0)  # read before the first update
    stored = await a.get("alice", "s01")
    assert stored is not None and stored.cron == "0 * * * * *"
