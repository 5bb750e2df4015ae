"""The schedules' loop, one per server: claim due slots, start their runs, sleep until the next.

Exactly once per slot, across servers and crashes:
1. Claim (one transaction): the slot's row goes into `schedule_fires` as PENDING (its primary
   key refuses a second claim) and the schedule's `next_fire_at` moves past it. On PostgreSQL
   the due schedules are read `FOR UPDATE SKIP LOCKED`: servers looking at once split them.
2. Start: the run is created and executed through the engine (every rule of CreateWorkflow /
   ExecuteWorkflow holds: validation, the active-run limit) with request id
   `schedule/<id>/<slot>`, then the slot's row says STARTED with the run's id.
A server that dies between 1 and 2 leaves the slot PENDING; after `stale_after` any server
(on SQLite: the next start) takes it again, and the request id gives back the run the first
attempt may have created instead of a second one: the slot is neither lost nor doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import structlog

from sluice.engine.errors import FailedPrecondition, NotFound, SluiceError
from sluice.engine.model import Run, RunStatus
from sluice.engine.ports import Clock
from sluice.engine.schedules import (
    Claimed,
    Fire,
    FireStatus,
    OverlapPolicy,
    Plan,
    Schedule,
    ScheduleStore,
    plan,
    run_request_id,
)
from sluice.engine.service import Workflows

log = structlog.get_logger(__name__)

Sleep = Callable[[float], Awaitable[None]]

# Schedules claimed per transaction; more due ones are claimed by the next pass, at once.
CLAIM_BATCH = 50
# When due schedules are all held by another server's claim: look again after this long.
BUSY_PAUSE = 0.05


def plan_of(schedule: Schedule, now: datetime) -> Plan:
    assert schedule.next_fire_at is not None
    return plan(schedule.slots(), schedule.next_fire_at, now, schedule.catchup_window)


class ScheduleRunner:
    def __init__(
        self,
        store: ScheduleStore,
        workflows: Workflows,
        clock: Clock,
        *,
        sleep: Sleep = asyncio.sleep,
        recheck: timedelta = timedelta(seconds=60),
        stale_after: timedelta = timedelta(seconds=60),
        alone: bool = True,
    ) -> None:
        """`recheck`: the longest sleep (other servers' changes are seen by then);
        `stale_after`: how old a PENDING slot must be before this server takes it over (its
        server stopped, or could not record it); `alone`: no other server shares the
        database, so every PENDING slot found at start was left by this server's crash."""
        self._store = store
        self._workflows = workflows
        self._engine = workflows.engine
        self._clock = clock
        self._sleep = sleep
        self._recheck = recheck
        self._stale_after = stale_after
        self._wake = asyncio.Event()
        self._first = alone

    def changed(self) -> None:
        """A schedule changed here: look again now rather than at the planned time."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            claimed = 0
            try:
                claimed = await self.tick()
                delay = await self._delay()
            except SluiceError as error:  # the store unavailable for a moment
                log.warning("schedules: could not look at due slots", error=str(error))
                delay = 1.0
            except Exception:  # a bug must not end every schedule of the server
                log.exception("schedules: unexpected error")
                delay = 1.0
            if delay <= 0 and not claimed:
                delay = BUSY_PAUSE  # due, but another server holds them: it is firing them
            await self._nap(min(delay, self._recheck.total_seconds()))

    async def tick(self) -> int:
        """Claim and start every due slot (and the slots left PENDING by a dead server);
        returns how many were claimed."""
        claims = await self.claim()
        by_schedule: dict[tuple[str, str], list[Claimed]] = defaultdict(list)
        for claim in claims:
            by_schedule[(claim.schedule.owner, claim.schedule.id)].append(claim)
        # One schedule's slots in order (each sees the run the one before started); the
        # schedules side by side.
        results = await asyncio.gather(
            *(self._fire_all(group) for group in by_schedule.values()), return_exceptions=True
        )
        for result in results:
            if isinstance(result, Exception):
                # Its slots stay PENDING: taken again after `stale_after`.
                log.warning("schedules: could not record a slot", error=repr(result))
        return len(claims)

    async def claim(self) -> list[Claimed]:
        """The slots this server is to start now: the due ones it claims, and those a
        stopped server left PENDING (those older than `stale_after`; alone, at start: every
        one)."""
        now = self._clock.now()
        claims = await self._store.claim_due(now, plan_of, limit=CLAIM_BATCH)
        stale_before = now if self._first else now - self._stale_after
        self._first = False
        return claims + await self._store.stale_pending(stale_before, limit=CLAIM_BATCH)

    async def _fire_all(self, claims: list[Claimed]) -> None:
        last_run_id = claims[0].schedule.last_run_id
        for claim in sorted(claims, key=lambda c: c.slot):
            fire = await self.fire(claim, last_run_id)
            if fire.status is FireStatus.STARTED:
                last_run_id = fire.run_id

    async def _delay(self) -> float:
        earliest = await self._store.earliest()
        if earliest is None:
            return self._recheck.total_seconds()
        return (earliest - self._clock.now()).total_seconds()

    async def _nap(self, seconds: float) -> None:
        if self._wake.is_set():
            self._wake.clear()
            return
        sleeping = asyncio.ensure_future(self._sleep(max(seconds, 0)))
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait((sleeping, woken), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeping, woken):
                task.cancel()
            await asyncio.gather(sleeping, woken, return_exceptions=True)
            self._wake.clear()

    async def fire(self, claim: Claimed, last_run_id: str | None = None) -> Fire:
        """Start the run of a claimed slot under the schedule's overlap policy, and record
        what became of the slot."""
        schedule = claim.schedule
        owner = schedule.owner
        request_id = run_request_id(schedule.id, claim.slot, claim.triggered)
        status, run_id, message = FireStatus.STARTED, "", ""
        try:
            run = await self._engine.store.get_run_by_request(owner, request_id)
            if run is None:  # not started by an earlier attempt at this slot
                previous = await self._unfinished(
                    owner, schedule.last_run_id if last_run_id is None else last_run_id
                )
                if previous is not None and schedule.overlap is OverlapPolicy.SKIP:
                    status = FireStatus.SKIPPED
                    message = f"workflow {previous.id} has not ended ({previous.status.value})"
                    return await self._finish(claim, status, "", message)
                if previous is not None and schedule.overlap is OverlapPolicy.CANCEL_PREVIOUS:
                    with contextlib.suppress(FailedPrecondition, NotFound):  # ended meanwhile
                        await self._engine.cancel(
                            owner, previous.id, f"schedule {schedule.id}: a new slot replaces it"
                        )
                run = await self._workflows.create(
                    owner,
                    template_id=schedule.template_id,
                    version=schedule.template_version,
                    params=schedule.params,
                    request_id=request_id,
                )
            run_id = run.id
            if run.status is RunStatus.PENDING:
                await self._engine.execute(owner, run.id, schedule.options, request_id=request_id)
        except SluiceError as error:
            status, message = FireStatus.FAILED, str(error)
            log.warning(
                "schedule slot failed", schedule=schedule.id, slot=claim.slot.isoformat(),
                user=owner, error=message,
            )  # fmt: skip
        return await self._finish(claim, status, run_id, message)

    async def _finish(self, claim: Claimed, status: FireStatus, run_id: str, message: str) -> Fire:
        fire = Fire(
            claim.schedule.id,
            claim.slot,
            status,
            self._clock.now(),
            run_id=run_id if status is FireStatus.STARTED else "",
            message=message,
            triggered=claim.triggered,
        )
        await self._store.finish(claim.schedule.owner, fire)
        return fire

    async def _unfinished(self, owner: str, run_id: str) -> Run | None:
        if not run_id:
            return None
        try:
            run = await self._engine.get_run(owner, run_id)
        except NotFound:  # deleted: it has ended
            return None
        return None if run.status.terminal else run
