"""Housekeeping in the background: runs left PENDING expire, ended runs past retention go.

Both work in small batches, each its own short transaction, so the writes of running workflows
never wait long behind them; a sweep goes on until nothing is left, then sleeps. With several
servers on one database each sweeps; the work is idempotent (an expiry is a compare-and-set
transition like any other, a deletion of what is already gone deletes nothing).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

import structlog

from sluice.engine.errors import Conflict, FailedPrecondition, NotFound, SluiceError
from sluice.engine.ports import Clock, Store
from sluice.runtime.driver import Engine

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Housekeeping:
    # Runs still PENDING this long after creation are cancelled; 0 keeps them.
    pending_expiry: timedelta = timedelta(hours=24)
    # Runs that ended this long ago are deleted with their events; 0 keeps them forever.
    retention: timedelta = timedelta(0)
    # Time between sweeps.
    interval: timedelta = timedelta(minutes=1)
    # Runs per transaction: a deleted run takes its steps, gates and events with it (tens of
    # rows), so a batch of 100 stays a few milliseconds of the writer's time.
    batch: int = 100

    @property
    def enabled(self) -> bool:
        return bool(self.pending_expiry or self.retention)


@dataclass(frozen=True, slots=True)
class Swept:
    expired: int
    deleted: int


class Janitor:
    def __init__(self, store: Store, engine: Engine, clock: Clock, settings: Housekeeping) -> None:
        self._store = store
        self._engine = engine
        self._clock = clock
        self.settings = settings

    async def sweep(self) -> Swept:
        """One pass: expire every overdue PENDING run, delete every run past retention."""
        expired = await self._expire() if self.settings.pending_expiry else 0
        deleted = await self._delete() if self.settings.retention else 0
        if expired or deleted:
            log.info("housekeeping swept", expired=expired, deleted=deleted)
        return Swept(expired, deleted)

    async def run(self) -> None:
        """Sweep every `interval` until cancelled; a failed sweep is logged and retried."""
        while True:
            try:
                await self.sweep()
            except SluiceError as exc:  # e.g. the database is unavailable for a while
                log.warning("housekeeping failed; trying again later", error=str(exc))
            await asyncio.sleep(self.settings.interval.total_seconds())

    async def _expire(self) -> int:
        expiry = self.settings.pending_expiry
        reason = f"expired: still PENDING {_describe(expiry)} after it was created"
        expired = 0
        while True:
            cutoff = self._clock.now() - expiry
            keys = await self._store.pending_runs_created_before(cutoff, self.settings.batch)
            for key in keys:
                try:
                    await self._engine.expire(key.owner, key.run_id, reason)
                    expired += 1
                except (FailedPrecondition, Conflict, NotFound):
                    pass  # started, cancelled or deleted meanwhile: not ours to expire
            if len(keys) < self.settings.batch:
                return expired

    async def _delete(self) -> int:
        deleted = 0
        while True:
            cutoff = self._clock.now() - self.settings.retention
            count = await self._store.delete_runs_ended_before(cutoff, self.settings.batch)
            deleted += count
            if count < self.settings.batch:
                return deleted
            await asyncio.sleep(0)  # let the calls waiting on the loop go first


def _describe(period: timedelta) -> str:
    hours = period.total_seconds() / 3600
    if hours >= 48 and hours % 24 == 0:
        return f"{hours / 24:g} days"
    return f"{hours:g} hours" if hours >= 1 else f"{period.total_seconds():g} seconds"
