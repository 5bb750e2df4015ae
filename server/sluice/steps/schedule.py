"""`schedule`: the next good time slot for a platform, in the user's time zone.

The built-in table holds weekday/hour slots per platform that common engagement studies
agree on (mid-morning and lunchtime on weekdays; email on Tuesday to Thursday mornings).
`config.slots` ({"mon": ["09:00", "13:00"], ...}; days as mon or monday) replaces the table for
this step; days it leaves out have no slot. Slots are wall-clock times in `config.timezone`
(IANA name, default UTC), and the chosen one is strictly after now + `config.minLeadMinutes`
(default 15). `config.publishAt` (an ISO 8601 time with its offset; blank: not given) fixes
the time instead: the slot is then "fixed".

Output: platform, scheduledTime (ISO 8601 with the zone's offset), timezone, slot ("tue 09:00").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sluice.engine import waits
from sluice.engine.handlers import PermanentStepError, StepContext, StepResult, has_reference
from sluice.steps import _schema
from sluice.steps._config import aware, get_str, text
from sluice.steps._text import outputs_with

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
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
_HHMM: _schema.Schema = {
    "type": "string",
    "pattern": r"^([01]?\d|2[0-3]):[0-5]\d$",
    "description": "a time like 09:00 (24-hour clock)",
}
_TIMES: _schema.Schema = {
    "type": ["array", "string"],
    "items": _HHMM,
    "minItems": 1,
    "pattern": _HHMM["pattern"],
    "description": "a list of times like 09:00 (24-hour clock), or one such time",
}

CONFIG_SCHEMA = _schema.obj(
    {
        "platform": _schema.string(
            f"the platform whose built-in slots to use: {', '.join(SLOTS)}, "
            f"{', '.join(_ALIASES)} or auto (the platform of the content upstream, else the "
            "run's platform param, else facebook)",
            default="auto",
        ),
        "slots": _schema.obj(
            dict.fromkeys(DAYS + _DAY_NAMES, _TIMES),
            minProperties=1,
            description='time slots by weekday, e.g. {"mon": ["09:00", "13:00"]}, instead of '
            "the built-in ones",
        ),
        "timezone": _schema.string(
            "the IANA time zone the slots are in, e.g. America/New_York", default="UTC"
        ),
        "minLeadMinutes": _schema.whole_number(
            "minutes from now before which no slot is chosen", default=15
        ),
        "publishAt": _schema.string(
            "a fixed time to publish at, ISO 8601 with its UTC offset, instead of a slot "
            "(blank: choose a slot)"
        ),
    }
)


@dataclass(frozen=True, slots=True)
class ScheduleStep:
    config_schema: ClassVar[Mapping[str, Any]] = CONFIG_SCHEMA

    def check_config(self, config: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
        zone, platform = _given(config, "timezone"), _given(config, "platform")
        if zone and _zone(zone) is None:
            yield "timezone", f"{zone!r} is not a known IANA time zone (e.g. 'America/New_York')"
        problem = _no_slots(_canonical(platform)) if platform and "slots" not in config else ""
        if problem:
            yield "platform", problem
        fixed = _given(config, "publishAt")
        if fixed:
            try:
                waits.parse_until(fixed, name="the value")
            except waits.WaitError as exc:
                yield "publishAt", str(exc)

    async def run(self, ctx: StepContext) -> StepResult:
        platform = _platform(ctx)
        zone_name = get_str(ctx.config, "timezone", "UTC")
        zone = ZoneInfo(zone_name)
        fixed = get_str(ctx.config, "publishAt", "").strip()
        if fixed:
            try:
                when = waits.parse_until(fixed, name="config.publishAt").astimezone(zone)
            except waits.WaitError as exc:
                raise PermanentStepError(str(exc)) from None
            slot = "fixed"
        else:
            slots = _slots(ctx.config, platform)
            lead = int(ctx.config.get("minLeadMinutes", 15))
            when, slot = next_slot(slots, zone, aware(ctx.now) + timedelta(minutes=lead))
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
    configured = get_str(ctx.config, "platform", "auto")
    if configured.lower() == "auto":
        from_content = next(
            (
                str(out["platform"])
                for _, out in outputs_with(ctx.upstream, "platform")
                if "contentType" in out  # a generate output, not another schedule's
            ),
            None,
        )
        configured = from_content or text(ctx.params.get("platform")) or "facebook"
    return _canonical(configured)


def _canonical(platform: str) -> str:
    name = platform.strip().lower()
    return _ALIASES.get(name, name)


def _no_slots(platform: str) -> str:
    """Why `platform` cannot be scheduled from the built-in table, or "" when it can."""
    if platform == "auto" or platform in SLOTS:
        return ""
    return (
        f"{platform!r} has no built-in time slots: use one of {', '.join(sorted(SLOTS))} or "
        "'auto', or give config.slots"
    )


def _slots(config: Mapping[str, Any], platform: str) -> dict[str, tuple[time, ...]]:
    table = config.get("slots")
    if table is None:
        problem = _no_slots(platform)
        if problem:  # 'auto' found a platform upstream that has no slots
            raise PermanentStepError(f"config.platform {problem}")
        table = SLOTS[platform]
    parsed: dict[str, set[time]] = {}
    for day, times in table.items():  # "mon" and "monday" may both be given
        parsed.setdefault(day[:3], set()).update(
            _hhmm(v) for v in ([times] if isinstance(times, str) else times)
        )
    return {day: tuple(sorted(times)) for day, times in parsed.items()}


def _hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def _given(config: Mapping[str, Any], key: str) -> str:
    """The text at `key` when it is known before the run (not blank, not substituted)."""
    value = config.get(key)
    return value.strip() if isinstance(value, str) and not has_reference(value) else ""


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None
