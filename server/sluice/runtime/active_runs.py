"""How many active runs each owner has, for the limit on them."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sluice.engine.ports import Store


@dataclass(slots=True)
class _Count:
    value: int
    counted_at: float  # time.monotonic()


class ActiveRunCounts:
    """PENDING, RUNNING or PAUSED runs per owner: counted in the store on first use, then kept
    current in memory as the engine creates and ends runs (a count per CreateWorkflow cost a
    query and a thread hop), and counted again after REFRESH seconds, which also picks up what
    other servers on the same database did. Exact for this server's own changes otherwise."""

    REFRESH = 5.0
    MAX_OWNERS = 10_000

    def __init__(self, store: Store) -> None:
        self._store = store
        self._counts: dict[str, _Count] = {}

    async def get(self, owner: str) -> int:
        count = self._counts.get(owner)
        now = time.monotonic()
        if count is None or now - count.counted_at > self.REFRESH:
            value = await self._store.count_active_runs(owner)
            if len(self._counts) >= self.MAX_OWNERS:
                self._counts.clear()  # each is counted again on its next use
            count = self._counts[owner] = _Count(value, now)
        return count.value

    def add(self, owner: str, delta: int) -> None:
        """A run of `owner` was created (+1) or ended (-1) by this server."""
        count = self._counts.get(owner)
        if count is not None:
            count.value = max(0, count.value + delta)
