"""Reads of a run's stored events, shared by the watchers that want the same ones at once.

A run driven by another server reaches this server's watchers through the store: each notice
wakes every watcher of the run, and each would read the same rows (the watchers of a run are
usually caught up to the same sequence). One read per run and cursor serves them all: with k
watchers of a run here, one statement per notice instead of k.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from sluice.engine.model import Event

Read = Callable[[str, int, int], Awaitable[Sequence[Event]]]


class SharedEventReads:
    def __init__(self, read: Read) -> None:
        """`read(run_id, after_sequence, limit)`: the store's `list_events`."""
        self._read = read
        self._pending: dict[tuple[str, int, int], asyncio.Future[Sequence[Event]]] = {}

    async def read(self, run_id: str, after: int, limit: int) -> Sequence[Event]:
        """The events of `run_id` after `after` (up to `limit`), read once for every caller
        asking for the same ones meanwhile. A caller cancelled while waiting leaves the read
        to the others."""
        key = (run_id, after, limit)
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._read(run_id, after, limit))
            self._pending[key] = pending
            pending.add_done_callback(lambda _: self._pending.pop(key, None))
        return await asyncio.shield(pending)
