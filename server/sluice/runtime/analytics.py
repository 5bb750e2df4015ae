"""The analytics fold in the background: every few seconds, the runs that ended are added to
the hourly and daily sums GetAnalytics reads (`Store.fold_analytics`).

A run's terminal commit only queues it (one small row: the hot path pays nothing more); this
keeps the queue short, so a GetAnalytics call, which folds what is left first, rarely has
more than a few seconds of runs to add. After an upgrade the queue holds every run that had
ended (migration 0011): folded here in batches, oldest first, while the server serves. With
several servers each folds; a queued run is added by whichever deletes its row first.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog

from sluice.engine.errors import SluiceError
from sluice.engine.ports import Store

log = structlog.get_logger(__name__)

FOLD_EVERY = timedelta(seconds=2)


async def fold_forever(store: Store, every: timedelta = FOLD_EVERY) -> None:
    """Fold every `every` until cancelled; a failed fold is logged and tried again."""
    while True:
        try:
            folded = await store.fold_analytics()
            if folded >= 10_000:  # a backlog (an upgrade's), not the steady trickle
                log.info("analytics: runs folded into the sums", runs=folded)
        except SluiceError as exc:  # e.g. the database is unavailable for a while
            log.warning("analytics fold failed; trying again later", error=str(exc))
        await asyncio.sleep(every.total_seconds())
