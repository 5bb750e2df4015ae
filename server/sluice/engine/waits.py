"""Wait steps: how long one waits. A wait is a durable timer the engine keeps, not a handler:
the step starts RUNNING with its wake time, and `decide` completes it once that time has come,
so a restart (or another server) wakes it at the stored time, not at once and not twice.

Config, exactly one of:
- `duration`: "90s", "15m", "1h30m", "2d", "250ms" (units ms, s, m, h, d), or a number of seconds;
- `until`: an ISO 8601 time with its UTC offset ("2026-12-01T09:00:00+01:00"), usually a
  substitution such as "{{ steps.schedule-post.scheduledTime }}". A time already past wakes
  the step at once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sluice.engine import substitution

# Longer waits belong to a schedule, not to a run held open for them.
MAX_WAIT = timedelta(days=366)
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$")


class WaitError(ValueError):
    """The step's config does not say how long to wait."""


def parse_duration(value: Any) -> timedelta:
    """A duration from a string like "1h30m" or a number of seconds."""
    if isinstance(value, bool):
        raise WaitError(f"duration must be a string like '90s' or '1h30m', not {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION.match(value.strip()):
        seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(value.strip()))
    else:
        raise WaitError(
            f"duration {value!r} is not a duration: write e.g. '90s', '15m', '1h30m' or '2d'"
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise WaitError(f"duration {value!r} must be a finite, non-negative time")
    if seconds > MAX_WAIT.total_seconds():
        raise WaitError(f"duration {value!r} is longer than {MAX_WAIT.days} days")
    return timedelta(seconds=seconds)


def parse_until(value: Any, name: str = "until") -> datetime:
    """A time from an ISO 8601 string that carries its UTC offset (`name`: the config key it
    came from, for the message)."""
    if not isinstance(value, str):
        raise WaitError(f"{name} must be an ISO 8601 time string, not {value!r}")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise WaitError(
            f"{name} {value!r} is not an ISO 8601 time such as '2026-12-01T09:00:00+01:00'"
        ) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise WaitError(f"{name} {value!r} has no UTC offset (add 'Z' or e.g. '+01:00')")
    return moment


def problems(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, message) for each problem validation can see before the run: a substitution is
    judged when the step starts."""
    given = [k for k in ("duration", "until") if k in config]
    if len(given) != 1:
        return [("", "a wait step needs exactly one of `duration` or `until`")]
    key = given[0]
    value = config[key]
    if substitution.has_reference(value):
        return []
    try:
        parse_duration(value) if key == "duration" else parse_until(value)
    except WaitError as exc:
        return [(key, str(exc))]
    return []


def wake_time(config: Mapping[str, Any], now: datetime) -> datetime:
    """When a wait step started `now` with this (resolved) config wakes."""
    if "duration" in config:
        return now + parse_duration(config["duration"])
    if "until" in config:
        moment = parse_until(config["until"])
        if moment - now > MAX_WAIT:
            raise WaitError(f"until {config['until']!r} is more than {MAX_WAIT.days} days away")
        return moment
    raise WaitError("a wait step needs exactly one of `duration` or `until`")
