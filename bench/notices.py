"""Counts the notices Sluice's servers send one another (PostgreSQL NOTIFY on the channels
`sluice_events` and `sluice_commands`, see sluice.store.postgres_notify) by listening to them
from the benchmark's client: every NOTIFY reaches every listener, so this counts them all
without touching the servers. Each one is a transaction of its own in PostgreSQL."""

from __future__ import annotations

import asyncpg  # type: ignore[import-untyped]

from bench import pgstat

# sluice.store.postgres_notify's prefix and sluice.runtime.driver's channels.
CHANNELS = ("sluice_events", "sluice_commands")


class NoticeCounter:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.notices = 0
        self.run_ids = 0

    @classmethod
    async def start(cls, database: str) -> NoticeCounter:
        counter = cls(await asyncpg.connect(pgstat.url(database)))
        for channel in CHANNELS:
            await counter._conn.add_listener(channel, counter._received)
        return counter

    def _received(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        # "server-id:run,run,...": one notice, that many runs.
        self.notices += 1
        self.run_ids += payload.count(",") + 1

    async def stop(self) -> tuple[int, int]:
        """(notices, run ids in them) since the start."""
        await self._conn.close()
        return self.notices, self.run_ids
