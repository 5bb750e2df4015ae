"""The schedule use cases the API exposes, over the schedule store, the catalog and the loop."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from sluice.engine.errors import AlreadyExists, Conflict, InvalidArgument, NotFound, Violation
from sluice.engine.ports import Clock
from sluice.engine.schedules import Fire, Schedule, ScheduleStore, check
from sluice.engine.service import Workflows
from sluice.engine.validation import bind_params
from sluice.runtime.schedules import ScheduleRunner


class Schedules:
    def __init__(
        self, store: ScheduleStore, workflows: Workflows, runner: ScheduleRunner, clock: Clock
    ) -> None:
        self._store = store
        self._workflows = workflows
        self.runner = runner
        self._clock = clock

    async def create(self, schedule: Schedule) -> Schedule:
        """Store a new schedule (every problem of it at once: its own fields, its template,
        its params); its first slot is the first after now."""
        now = self._clock.now()
        violations = check(schedule, now=now)
        violations += await self._check_template(schedule)
        if violations:
            raise InvalidArgument(violations)
        stored = replace(
            schedule,
            next_fire_at=None if schedule.paused else schedule.slots().next_after(now),
            last_fire_at=None,
            last_run_id="",
            created_at=now,
            updated_at=now,
            recent=[],
        )
        if not await self._store.create(stored):
            raise AlreadyExists(f"you already have a schedule {schedule.id!r}")
        self.runner.changed()
        return stored

    async def _check_template(self, schedule: Schedule) -> list[Violation]:
        if not schedule.template_id:
            return [Violation("schedule.template_id", "is required")]
        try:
            template = await self._workflows.catalog.get(
                schedule.owner, schedule.template_id, schedule.template_version
            )
        except NotFound as error:
            return [Violation("schedule.template_id", str(error))]
        _, violations = bind_params(template, schedule.params)
        return [Violation(f"schedule.{v.field}", v.description) for v in violations]

    async def update(self, owner: str, schedule_id: str, changes: Mapping[str, Any]) -> Schedule:
        """Change the schedule's settings named in `changes` (every problem at once); a new
        cron or time zone counts from the first slot after now."""
        found = await self.get(owner, schedule_id)
        now = self._clock.now()
        changed = replace(found, **changes, updated_at=now, recent=[])
        violations = check(changed, now=now)
        violations += await self._check_template(changed)
        if violations:
            raise InvalidArgument(violations)
        if not changed.paused and {"cron", "time_zone"} & set(changes):
            changed.next_fire_at = changed.slots().next_after(now)
        assert found.updated_at is not None
        if not await self._store.update(changed, expected=found.updated_at):
            raise Conflict(f"schedule {schedule_id} was changed by another call: read it again")
        self.runner.changed()
        return await self.get(owner, schedule_id)

    async def get(self, owner: str, schedule_id: str) -> Schedule:
        found = await self._store.get(owner, schedule_id)
        if found is None:
            raise NotFound(f"schedule {schedule_id} not found")
        return found

    async def list(self, owner: str, *, limit: int, after: str) -> list[Schedule]:
        return await self._store.page(owner, limit=limit, after=after)

    async def pause(self, owner: str, schedule_id: str, reason: str) -> Schedule:
        return await self._set_paused(owner, schedule_id, paused=True, reason=reason)

    async def resume(self, owner: str, schedule_id: str) -> Schedule:
        """From the first slot after now: slots that fell while paused do not fire."""
        return await self._set_paused(owner, schedule_id, paused=False, reason="")

    async def _set_paused(
        self, owner: str, schedule_id: str, *, paused: bool, reason: str
    ) -> Schedule:
        now = self._clock.now()

        def next_fire_at(found: Schedule) -> datetime | None:
            return found.slots().next_after(now)

        found = await self._store.set_paused(
            owner, schedule_id, paused=paused, reason=reason, next_fire_at=next_fire_at, now=now
        )
        if found is None:
            raise NotFound(f"schedule {schedule_id} not found")
        self.runner.changed()
        return await self.get(owner, schedule_id)

    async def delete(self, owner: str, schedule_id: str) -> None:
        if not await self._store.delete(owner, schedule_id):
            raise NotFound(f"schedule {schedule_id} not found")
        self.runner.changed()

    async def trigger(self, owner: str, schedule_id: str) -> tuple[Schedule, Fire]:
        """Fire the schedule now, once, under its overlap policy (paused or not)."""
        claim = await self._store.claim_trigger(owner, schedule_id, self._clock.now())
        if claim is None:
            raise NotFound(f"schedule {schedule_id} not found")
        fire = await self.runner.fire(claim)
        return await self.get(owner, schedule_id), fire
