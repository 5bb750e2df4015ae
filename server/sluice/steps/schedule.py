"""`schedule`: the next good time slot for a platform, in the user's time zone.

The built-in table holds weekday/hour slots per platform that common engagement studies
agree on (mid-morning and lunchtime on weekdays; email on Tuesday to Thursday mornings).
`config.slots` ({"mon": ["09:00", "13:00"], ...}) replaces the table for this step; days it
leaves out have no slot. Slots are wall-clock times in `config.timezone` (IANA name, default
UTC), and the chosen one is strictly after now + `config.minLeadMinutes` (default 15).

Output: platform, scheduledTime (ISO 8601 with the zone's offset), timezone, slot ("tue 09:00").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sluice.engine.handlers import PermanentStepError, StepContext, StepResult
from sluice.steps._config import aware, get_int, get_str, json_type, text
from sluice.steps._text import outputs_with

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
_ALIASES = {"x": "twitter", "fb": "facebook", "ig": "instagram", "newsletter": "email"}


def _every(days: tuple[str, ...], *slots: str) -> dict[str, tuple[str, ...]]:
    return {day: slots for day in days}


SLOTS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "facebook": {**_every(_WEEKDAYS, "09:00", "13:00"), "sat": ("10:00",)},
    "instagram": {**_every(_WEEKDAYS, "11:00", "14:00"), **_every(("sat", "sun"), "10:00")},
    "twitter": _every(_WEEKDAYS, "08:00", "12:00", "17:00"),
    "linkedin": {**_every(("tue", "wed", "thu"), "08:00", "10:00", "12:00"), "mon": ("09:00",)},
    "email": _every(("tue", "wed", "thu"), "10:00"),
    "blog": _every(("mon", "wed"), "08:00"),
}
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True, slots=True)
class ScheduleStep:
    async def run(self, ctx: StepContext) -> StepResult:
        platform = _platform(ctx)
        slots = _slots(ctx.config, platform)
        zone_name = get_str(ctx.config, "timezone", "UTC")
        zone = _zone(zone_name)
        lead = get_int(ctx.config, "minLeadMinutes", 15)
        earliest = aware(ctx.now) + timedelta(minutes=lead)
        when, slot = next_slot(slots, zone, earliest)
        return StepResult(
            output={
                "platform": platform,
                "scheduledTime": when.isoformat(),
                "timezone": zone_name,
                "slot": slot,
            }
        )


def next_slot(
    slots: Mapping[str, tuple[time, ...]], zone: ZoneInfo, earliest: datetime
) -> tuple[datetime, str]:
    """The first slot strictly after `earliest`, as an aware time in `zone`, and its label."""
    start = earliest.astimezone(zone).date()
    # Two weeks and a day: a week covers every weekday (today's again a week later), and a
    # slot skipped by a daylight-saving jump comes round one week after that.
    for offset in range(15):
        day = start + timedelta(days=offset)
        key = DAYS[day.weekday()]
        for slot in slots.get(key, ()):
            local = datetime.combine(day, slot, tzinfo=zone)
            # A wall time skipped by a daylight-saving jump does not exist: skip the slot.
            if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != local.replace(
                tzinfo=None
            ):
                continue
            if local > earliest:
                return local, f"{key} {slot:%H:%M}"
    raise PermanentStepError("config.slots has no usable time slot")


def _platform(ctx: StepContext) -> str:
    configured = get_str(ctx.config, "platform", "auto").lower()
    if configured == "auto":
        from_content = next(
            (
                str(out["platform"])
                for _, out in outputs_with(ctx.upstream, "platform")
                if "contentType" in out  # a generate output, not another schedule's
            ),
            None,
        )
        configured = from_content or text(ctx.params.get("platform")) or "facebook"
    return _ALIASES.get(configured.lower(), configured.lower())


def _slots(config: Mapping[str, Any], platform: str) -> dict[str, tuple[time, ...]]:
    table = config.get("slots")
    if table is None:
        if platform not in SLOTS:
            raise PermanentStepError(
                f"config.platform {platform!r} has no built-in time slots: use one of "
                f"{', '.join(sorted(SLOTS))} or 'auto', or give config.slots"
            )
        table = SLOTS[platform]
    if not isinstance(table, Mapping):
        raise PermanentStepError(
            f'config.slots must be an object like {{"mon": ["09:00"]}}, got {json_type(table)}'
        )
    parsed: dict[str, tuple[time, ...]] = {}
    for raw_day, times in table.items():
        day = str(raw_day).strip().lower()[:3]
        if day not in DAYS:
            raise PermanentStepError(
                f"config.slots: {raw_day!r} is not a weekday ({'/'.join(DAYS)})"
            )
        values = [times] if isinstance(times, str) else times
        if not isinstance(values, list | tuple):
            raise PermanentStepError(f"config.slots.{raw_day} must be a list of HH:MM times")
        parsed[day] = tuple(sorted({_hhmm(v, f"config.slots.{raw_day}") for v in values}))
    if not any(parsed.values()):
        raise PermanentStepError("config.slots has no time slot")
    return parsed


def _hhmm(value: Any, where: str) -> time:
    match = _HHMM.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise PermanentStepError(f"{where}: {value!r} is not a time like 09:00")
    return time(int(match[1]), int(match[2]))


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise PermanentStepError(
            f"config.timezone {name!r} is not a known IANA time zone (e.g. 'America/New_York')"
        ) from None
