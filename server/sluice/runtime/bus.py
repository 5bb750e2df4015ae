"""Fan-out of committed events to live watchers, from memory.

Events are published only after their transaction commits, so a watcher never sees an event
the store could still lose. Each subscriber has a bounded queue; one that falls behind is
marked lagged instead of slowing the engine, and catches up from the store.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence

from sluice.engine.model import Event


class Subscription:
    def __init__(self, bus: EventBus, run_id: str, capacity: int) -> None:
        self._bus = bus
        self.run_id = run_id
        self._queue: asyncio.Queue[Sequence[Event]] = asyncio.Queue(capacity)
        self.lagged = False

    def _offer(self, events: Sequence[Event]) -> None:
        try:
            self._queue.put_nowait(events)
        except asyncio.QueueFull:
            self.lagged = True
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(())  # wake the reader so it notices the lag

    def _offer_poke(self) -> None:
        self.lagged = True
        if self._queue.empty():
            self._queue.put_nowait(())

    async def get(self) -> Sequence[Event]:
        """The next batch; an empty batch means "you lagged: catch up from the store"."""
        return await self._queue.get()

    def close(self) -> None:
        self._bus._unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class EventBus:
    def __init__(self, capacity: int = 256) -> None:
        self._capacity = capacity
        self._subscribers: defaultdict[str, set[Subscription]] = defaultdict(set)

    def subscribe(self, run_id: str) -> Subscription:
        subscription = Subscription(self, run_id, self._capacity)
        self._subscribers[run_id].add(subscription)
        return subscription

    def publish(self, run_id: str, events: Sequence[Event]) -> None:
        for subscription in self._subscribers.get(run_id, ()):
            subscription._offer(events)

    def poke(self, run_id: str) -> None:
        """Tell the run's subscribers to read the store: its log grew elsewhere."""
        for subscription in self._subscribers.get(run_id, ()):
            subscription._offer_poke()

    def watched(self) -> list[str]:
        """The runs that have subscribers."""
        return list(self._subscribers)

    def watcher_count(self, run_id: str) -> int:
        return len(self._subscribers.get(run_id, ()))

    def _unsubscribe(self, subscription: Subscription) -> None:
        subscribers = self._subscribers.get(subscription.run_id)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subscription.run_id]
