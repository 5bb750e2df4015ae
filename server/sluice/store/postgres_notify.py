"""Notices between servers over PostgreSQL LISTEN/NOTIFY.

A notice names runs ("look at these"), never their events: the events table stays the truth,
and a server that misses a notice (its listening connection dropped) reads the store anyway on
its periodic re-check. Notices are batched: every run id queued during one turn of the event
loop goes out in one NOTIFY per channel (payloads kept under PostgreSQL's 8,000-byte limit).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence

import asyncpg
import structlog
from sqlalchemy.engine import URL, make_url

from sluice.engine.ports import Notice

log = structlog.get_logger(__name__)

_PREFIX = "sluice_"
_MAX_PAYLOAD = 7900
_RECONNECT_FIRST_DELAY = 0.1
_RECONNECT_MAX_DELAY = 5.0


class PostgresNotifier:
    def __init__(self, url: str | URL, server_id: str, channels: Sequence[str]) -> None:
        parsed = make_url(url)
        self._dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        self._server_id = server_id
        self._channels = tuple(channels)
        self._queued: dict[str, set[str]] = {}
        self._flushing: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        self._notice: Notice | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._closed = False

    async def start(self, notice: Notice) -> None:
        self._notice = notice
        await self._connect()
        self._keeper = asyncio.create_task(self._keep_connected(), name="notices")

    def send(self, channel: str, run_id: str) -> None:
        self._queued.setdefault(channel, set()).add(run_id)
        if self._flushing is None and not self._closed:
            self._flushing = asyncio.create_task(self._flush())

    async def close(self) -> None:
        self._closed = True
        for task in (self._keeper, self._flushing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close(timeout=2)

    async def _connect(self) -> None:
        conn = await asyncpg.connect(self._dsn)
        for channel in self._channels:
            await conn.add_listener(_PREFIX + channel, self._received)
        conn.add_termination_listener(lambda _conn: self._lost.set())
        self._conn = conn
        self._lost.clear()

    async def _keep_connected(self) -> None:
        while True:
            await self._lost.wait()
            self._conn = None
            delay = _RECONNECT_FIRST_DELAY
            while True:
                try:
                    await self._connect()
                    break
                except (OSError, asyncpg.PostgresError) as exc:
                    log.warning("cannot listen for notices, retrying", error=str(exc))
                    await asyncio.sleep(delay)
                    delay = min(2 * delay, _RECONNECT_MAX_DELAY)
            # Notices sent meanwhile are lost: whoever waits on anything should look again.
            assert self._notice is not None
            for channel in self._channels:
                self._notice(channel, ())

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let this turn of the loop queue its run ids
        try:
            while self._queued:
                queued, self._queued = self._queued, {}
                conn = self._conn
                if conn is None or conn.is_closed():
                    continue  # lost: the re-checks find these changes
                for channel, run_ids in queued.items():
                    for payload in payloads(self._server_id, run_ids):
                        try:
                            await conn.execute(
                                "SELECT pg_notify($1, $2)", _PREFIX + channel, payload
                            )
                        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                            log.warning("could not send a notice", error=str(exc))
        finally:
            self._flushing = None

    def _received(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        sender, _, ids = payload.partition(":")
        if sender == self._server_id or self._notice is None:
            return  # this server's own notice: its watchers were told directly
        self._notice(channel.removeprefix(_PREFIX), ids.split(","))


def channel_name(channel: str) -> str:
    """The PostgreSQL channel a notice channel is sent on."""
    return _PREFIX + channel


def payloads(server_id: str, run_ids: Iterable[str]) -> list[str]:
    """Notices naming `run_ids`, from `server_id`, each within PostgreSQL's payload limit."""
    made: list[str] = []
    chunk: list[str] = []
    size = len(server_id) + 1
    for run_id in run_ids:
        if size + len(run_id) + 1 > _MAX_PAYLOAD and chunk:
            made.append(f"{server_id}:{','.join(chunk)}")
            chunk, size = [], len(server_id) + 1
        chunk.append(run_id)
        size += len(run_id) + 1
    if chunk:
        made.append(f"{server_id}:{','.join(chunk)}")
    return made
