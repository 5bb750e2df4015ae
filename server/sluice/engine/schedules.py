"""Schedules: what a schedule is, and which of its slots are due. Pure: no I/O, no clock.

Cron expressions are evaluated by cronsim (maintained for Healthchecks.io, a cron-monitoring
service; it follows Debian's cron to the letter, DST quirks included), in the schedule's IANA
time zone. What that means across a DST change, in one zone (say Europe/Berlin):

- A job at a specific time (minute and hour fields not `*`, 5 fields), in the hour the clocks
  skip ("30 2 * * *" on the March change, 02:30 does not exist): fires once, right after the
  jump, at 03:00 local (01:00 UTC). In the hour the clocks repeat ("30 2 * * *" on the
  October change): fires once, at the first 02:30 (summer time, 00:30 UTC), not again an
  hour later.
- A job whose minute or hour field is `*` ("0 * * * *", "*/15 * * * *") follows real time:
  the skipped hour has no slots; the repeated hour has its slots twice (02:00 summer time and
  02:00 winter time are both slots, an hour apart).
- 6-field expressions (seconds first) always follow real time, like the second case.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from typing import Any, Protocol

from cronsim import CronSim, CronSimError

from sluice.engine.errors import Violation
from sluice.engine.model import ExecutionOptions

SCHEDULE_ID = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
DEFAULT_CATCHUP = timedelta(seconds=60)
MAX_CATCHUP = timedelta(days=366)
# One look at a schedule fires at most this many slots: a long catch-up window after long
# downtime goes on at the next look (at once), in bounded transactions.
MAX_SLOTS_PER_LOOK = 100
# Missed slots are counted up to this many (then "more than"): counting costs time.
MAX_MISSED_COUNTED = 10_000
RECENT_FIRES = 10
# Slots settled longer ago than this are deleted when their schedule is next claimed: an
# every-second schedule would add 86,400 rows a day. Firing once does not depend on them
# (a schedule's next slot only moves forward).
FIRE_HISTORY = timedelta(days=1)


class OverlapPolicy(StrEnum):
    SKIP = "SKIP"
    ALLOW = "ALLOW"
    CANCEL_PREVIOUS = "CANCEL_PREVIOUS"


class FireStatus(StrEnum):
    PENDING = "PENDING"
    STARTED = "STARTED"
    SKIPPED = "SKIPPED"
    MISSED = "MISSED"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class Fire:
    """One slot of a schedule and what became of it."""

    schedule_id: str
    slot: datetime
    status: FireStatus
    recorded_at: datetime
    run_id: str = ""
    message: str = ""
    triggered: bool = False


@dataclass(slots=True)
class Schedule:
    owner: str
    id: str
    template_id: str
    cron: str
    time_zone: str = "UTC"
    description: str = ""
    template_version: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    overlap: OverlapPolicy = OverlapPolicy.SKIP
    catchup_window: timedelta = DEFAULT_CATCHUP
    options: ExecutionOptions = field(default_factory=ExecutionOptions)
    paused: bool = False
    pause_reason: str = ""
    next_fire_at: datetime | None = None
    last_fire_at: datetime | None = None
    last_run_id: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    recent: list[Fire] = field(default_factory=list)

    def slots(self) -> Cron:
        return Cron(self.cron, self.time_zone)


class Cron:
    """A cron expression read in a time zone; every time in and out is aware and in UTC."""

    def __init__(self, expression: str, time_zone: str = "UTC") -> None:
        problem = cron_problem(expression)
        if problem:
            raise ValueError(problem)
        self.expression = " ".join(expression.split())
        self._zone = zone(time_zone)

    def next_after(self, moment: datetime) -> datetime | None:
        """The first slot strictly after `moment`; None when there is none in 50 years."""
        local = moment.astimezone(self._zone)
        slots = CronSim(self.expression, local)
        # Debian-style handling of a specific-time job works on wall-clock time, which can
        # step back across the repeated hour: never hand out a slot that is not later.
        for _ in range(4):
            try:
                found = next(slots).astimezone(UTC)
            except StopIteration:
                return None
            if found > moment:
                return found
        return None


@dataclass(frozen=True, slots=True)
class Plan:
    """What one look at a schedule at `now` does: the slots to fire, the missed ones, and the
    schedule's next fire time after them."""

    fire: list[datetime]
    missed_first: datetime | None
    missed_count: int
    next_fire_at: datetime | None


def plan(cron: Cron, next_fire_at: datetime, now: datetime, window: timedelta) -> Plan:
    """The slots from `next_fire_at` (a slot) up to `now`: those older than `window` are
    missed (counted, not fired), the rest fire, oldest first, at most MAX_SLOTS_PER_LOOK."""
    oldest_kept = now - window
    slot: datetime | None = next_fire_at
    missed_first: datetime | None = None
    missed = 0
    while slot is not None and slot < oldest_kept:
        missed_first = missed_first or slot
        missed += 1
        if missed >= MAX_MISSED_COUNTED:  # jump: the rest of the missed ones are not counted
            slot = cron.next_after(oldest_kept - timedelta(microseconds=1))
            break
        slot = cron.next_after(slot)
    fire: list[datetime] = []
    while slot is not None and slot <= now and len(fire) < MAX_SLOTS_PER_LOOK:
        fire.append(slot)
        slot = cron.next_after(slot)
    return Plan(fire, missed_first, missed, slot)


def run_request_id(schedule_id: str, slot: datetime, triggered: bool = False) -> str:
    """The request_id of the run a slot creates: a second attempt at the same slot (another
    server, or this one after a crash) gets the same run back instead of a second one."""
    kind = "trigger" if triggered else "schedule"
    return f"{kind}/{schedule_id}/{slot.astimezone(UTC).isoformat().replace('+00:00', 'Z')}"


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def zone(name: str) -> tzinfo:
    if name in ("", "UTC"):
        return UTC
    if name not in _zone_names():
        raise ValueError(f"unknown time zone {name!r}")
    return zoneinfo.ZoneInfo(name)


def zone_problem(name: str) -> str:
    if name in ("", "UTC") or name in _zone_names():
        return ""
    return 'must be an IANA time zone name such as "Europe/Berlin" or "UTC"'


def cron_problem(expression: str) -> str:
    """Why `expression` is not a cron expression this server takes ("" when it is)."""
    fields = expression.split()
    if len(fields) not in (5, 6):
        return (
            f"must have 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds "
            f"first; it has {len(fields)}"
        )
    try:
        CronSim(expression, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as error:
        return f"is not a valid cron expression: {error}"
    except (ValueError, IndexError, KeyError) as error:  # cronsim lets a few through raw
        return f"is not a valid cron expression: {error}"
    return ""


def check(schedule: Schedule, *, now: datetime) -> list[Violation]:
    """Every problem of a new schedule's own fields (the template and params are checked
    against the catalog by the caller)."""
    found: list[Violation] = []
    if not SCHEDULE_ID.match(schedule.id):
        found.append(
            Violation(
                "schedule.schedule_id",
                "must be 1-64 lowercase letters, digits, '-' or '_', starting with a letter",
            )
        )
    if len(schedule.description) > 1000:
        found.append(Violation("schedule.description", "must be at most 1000 characters"))
    if schedule.template_version < 0:
        found.append(
            Violation("schedule.template_version", "must be 0 (latest) or a version number")
        )
    problem = cron_problem(schedule.cron)
    if problem:
        found.append(Violation("schedule.cron", problem))
    problem = zone_problem(schedule.time_zone)
    if problem:
        found.append(Violation("schedule.time_zone", problem))
    if not timedelta(0) <= schedule.catchup_window <= MAX_CATCHUP:
        found.append(Violation("schedule.catchup_window", "must be between 0 and 366 days"))
    if not found and schedule.slots().next_after(now) is None:
        found.append(Violation("schedule.cron", "has no slot in the next 50 years"))
    return found


@dataclass(frozen=True, slots=True)
class Claimed:
    """A slot a server claimed (PENDING): its run is for that server to start."""

    schedule: Schedule
    slot: datetime
    triggered: bool = False


Planner = Callable[[Schedule, datetime], Plan]


class ScheduleStore(Protocol):
    """Where schedules and their slots are kept (`sluice.store.schedules` has the SQL)."""

    async def create(self, schedule: Schedule) -> bool:
        """Store a new schedule; False (nothing written) when the owner has one by that id."""
        ...

    async def get(self, owner: str, schedule_id: str) -> Schedule | None:
        """The schedule with its latest slots (`recent`)."""
        ...

    async def page(self, owner: str, *, limit: int, after: str) -> list[Schedule]:
        """The owner's schedules by id after `after`, at most `limit` (without recent fires)."""
        ...

    async def set_paused(
        self,
        owner: str,
        schedule_id: str,
        *,
        paused: bool,
        reason: str,
        next_fire_at: Callable[[Schedule], datetime | None],
        now: datetime,
    ) -> Schedule | None:
        """Pause or resume (`next_fire_at` of the schedule as found); None when not found."""
        ...

    async def update(self, schedule: Schedule, *, expected: datetime) -> bool:
        """Write the schedule's settings, next fire time and update time, provided its update
        time is still `expected` (False, nothing written, when another call changed it)."""
        ...

    async def delete(self, owner: str, schedule_id: str) -> bool: ...

    async def earliest(self) -> datetime | None:
        """The earliest next slot of any schedule not paused."""
        ...

    async def claim_due(self, now: datetime, planner: Planner, *, limit: int) -> list[Claimed]:
        """Claim the due slots of up to `limit` due schedules, once each across servers."""
        ...

    async def claim_trigger(self, owner: str, schedule_id: str, now: datetime) -> Claimed | None:
        """A PENDING slot at `now` (TriggerSchedule); None when the schedule is not found."""
        ...

    async def stale_pending(self, before: datetime, *, limit: int) -> list[Claimed]:
        """Slots claimed before `before` and still PENDING (their server stopped)."""
        ...

    async def finish(self, owner: str, fire: Fire) -> None:
        """Record what became of a claimed slot."""
        ...
