"""Several servers on one database: the settings, the parts, and the heartbeat that keeps a
server's leases.

The driver holds runs; this module keeps the leases it holds them by. Every `renew_every` the
keeper renews every lease in one statement and tells the driver which runs it lost (another
server took them after they expired); then the driver claims runs whose lease expired. A
server that cannot renew in time (the database unreachable, or the process stopped past the
lease's expiry) drops its runs itself rather than run them beside their next holder.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Set
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Generic, TypeVar

import structlog

from sluice.engine.errors import Unavailable
from sluice.engine.ports import LeaseStore, Notifier

log = structlog.get_logger(__name__)

# Notice channels between servers: a run's log grew; a run has a stored command.
EVENTS = "events"
COMMANDS = "commands"

Held = TypeVar("Held")


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    lease_ttl: timedelta = timedelta(seconds=30)
    renew_every: timedelta = timedelta(seconds=5)
    # Runs this server drives at most; past it, new runs are left for the others to claim.
    max_runs: int = 10_000
    claim_batch: int = 100
    # How often a watcher or waiter on a run driven elsewhere reads the store without a notice.
    recheck: timedelta = timedelta(seconds=1)


@dataclass(slots=True)
class Cluster:
    """What a server needs to share a database with others."""

    leases: LeaseStore
    notifier: Notifier
    settings: ClusterSettings = ClusterSettings()
    server_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    # The store's commits carry the notice of their events themselves (in their transaction).
    commits_notify: bool = False


class LeaseKeeper(Generic[Held]):
    """The heartbeat. `held()`: the runs this server holds by lease, by id; `lose(item, why)`:
    forget one; `then(kept)`: what to do after each renewal (claim, look for commands)."""

    def __init__(
        self,
        cluster: Cluster,
        held: Callable[[], Mapping[str, Held]],
        lose: Callable[[Held, str], None],
        then: Callable[[Set[str]], Awaitable[None]],
    ) -> None:
        self._cluster = cluster
        self._held = held
        self._lose = lose
        self._then = then
        self._after: asyncio.Task[None] | None = None

    async def run(self) -> None:
        settings = self._cluster.settings
        ttl = settings.lease_ttl.total_seconds()
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(settings.renew_every.total_seconds())
            held = dict(self._held())
            if time.monotonic() - renewed > ttl:
                # Stopped (or starved) past the leases' expiry: others may hold these runs now.
                # Checked before anything awaits, so no step of them takes another turn.
                for item in held.values():
                    self._lose(item, "its lease expired before this server could renew it")
                held = {}
            started = time.monotonic()
            try:
                kept = await self._cluster.leases.renew(
                    self._cluster.server_id, list(held), settings.lease_ttl
                )
            except Unavailable as exc:
                log.warning("could not renew leases", error=str(exc))
                continue
            renewed = started
            for run_id, item in held.items():
                if run_id not in kept:
                    self._lose(item, "its lease expired and another server took it")
            # Beside the heartbeat, never in its way: taking over a dead server's runs takes
            # seconds, and renewals waiting for it let this server's own leases expire.
            if self._after is None or self._after.done():
                self._after = asyncio.create_task(self._after_renewal(kept))

    async def _after_renewal(self, kept: Set[str]) -> None:
        try:
            await self._then(kept)
        except Unavailable as exc:
            log.warning("could not claim workflows", error=str(exc))

    async def stop(self) -> None:
        if self._after is not None:
            self._after.cancel()
            await asyncio.gather(self._after, return_exceptions=True)
