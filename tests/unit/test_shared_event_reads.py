"""Watchers of one run on a server that does not drive it share their reads of the store
(`runtime/event_reads.py`): what each gets is what it would have read alone."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from sluice.engine.model import Event, EventType
from sluice.runtime.event_reads import SharedEventReads

T0 = datetime(2026, 3, 1, tzinfo=UTC)


class Store:
    """A run's log of 10 events; each read waits until `release` is set."""

    def __init__(self) -> None:
        self.reads: list[tuple[str, int, int]] = []
        self.release = asyncio.Event()

    async def list_events(self, run_id: str, after: int, limit: int) -> Sequence[Event]:
        self.reads.append((run_id, after, limit))
        await self.release.wait()
        return [Event(EventType.NOTIFICATION, T0, sequence=s) for s in range(after + 1, 11)][:limit]


async def test_watchers_at_one_cursor_share_one_read_and_each_gets_the_events() -> None:
    store = Store()
    reads = SharedEventReads(store.list_events)
    watchers = [asyncio.create_task(reads.read("run", 4, 100)) for _ in range(10)]
    await asyncio.sleep(0)
    store.release.set()

    results = await asyncio.gather(*watchers)

    assert store.reads == [("run", 4, 100)]
    assert all([e.sequence for e in r] == [5, 6, 7, 8, 9, 10] for r in results)


async def test_other_cursors_runs_and_later_callers_read_for_themselves() -> None:
    store = Store()
    store.release.set()
    reads = SharedEventReads(store.list_events)

    await asyncio.gather(reads.read("run", 4, 100), reads.read("run", 7, 100),
                         reads.read("other", 4, 100))  # fmt: skip
    await reads.read("run", 4, 100)

    assert sorted(store.reads) == [("other", 4, 100), ("run", 4, 100), ("run", 4, 100),
                                   ("run", 7, 100)]  # fmt: skip


async def test_a_cancelled_watcher_leaves_the_read_to_the_others() -> None:
    store = Store()
    reads = SharedEventReads(store.list_events)
    leaving, staying = (asyncio.create_task(reads.read("run", 0, 100)) for _ in range(2))
    await asyncio.sleep(0)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    store.release.set()

    assert [e.sequence for e in await staying] == list(range(1, 11))
    assert len(store.reads) == 1
