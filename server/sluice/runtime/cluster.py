"""Several servers on one database: the settings, the parts, and the heartbeat that keeps a
server's leases.

The driver holds runs; this module keeps the leases it holds them by. They live as long as
the server's heartbeat: every `renew_every` the keeper renews it (one row, whatever the number
of runs), then the driver claims runs whose server's heartbeat stopped. A server that cannot
renew in time (the database unreachable, or the process stopped past the lease's expiry), or
finds its heartbeat expired, drops its runs itself rather than run them beside their next
holder, and starts a new heartbeat.
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

# Notice channels between servers: a run's log grew; a run has a stored command; tasks of
# these types were queued (workers' polls look); a task of the run changed (its follower looks).
EVENTS = "events"
COMMANDS = "commands"
TASKS = "tasks"
ATTEMPTS = "attempts"

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
        """The heartbeat, from a `join` made just before."""
        settings = self._cluster.settings
        ttl = settings.lease_ttl.total_seconds()
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(settings.renew_every.total_seconds())
            # Stopped (or starved) past the leases' expiry: others may hold these runs now.
            # Checked before anything awaits, so no step of them takes another turn.
            lapsed = time.monotonic() - renewed > ttl
            if lapsed:
                self._lose_all()
            started = time.monotonic()
            leases, me = self._cluster.leases, self._cluster.server_id
            try:
                if lapsed or not await leases.renew(me, settings.lease_ttl):
                    self._lose_all()  # expired by the database's clock (if not by this one's)
                    # A new heartbeat; what this server held before is let go, to be claimed.
                    await leases.join(me, settings.lease_ttl)
            except Unavailable as exc:
                log.warning("could not renew leases", error=str(exc))
                continue
            renewed = started
            kept = set(self._held())
            # Beside the heartbeat, never in its way: taking over a dead server's runs takes
            # seconds, and renewals waiting for it let this server's own leases expire.
            if self._after is None or self._after.done():
                self._after = asyncio.create_task(self._after_renewal(kept))

    def _lose_all(self) -> None:
        for item in list(self._held().values()):
            self._lose(item, "its lease expired before this server could renew it")

    async def _after_renewal(self, kept: Set[str]) -> None:
        try:
            await self._then(kept)
        except Unavailable as exc:
            log.warning("could not claim workflows", error=str(exc))

    async def stop(self) -> None:
        if self._after is not None:
            self._after.cancel()
            await asyncio.gather(self._after, return_exceptions=True)
