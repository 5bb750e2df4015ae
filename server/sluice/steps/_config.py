"""Reading step config: defaults, and the forms of a value the schemas allow.

The engine checks a step's config against its type's schema before each attempt, so types,
required keys and choices need no check here. What remains is reading the forms a schema
allows for the same thing: a number where text is wanted ("{{ params.bedrooms }}" may be 3),
one comma-separated text where a list is (a substituted param), and Struct numbers, which are
all floats (3 arrives as 3.0).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sluice.engine.config_schema import json_type
from sluice.engine.handlers import PermanentStepError, StepContext


def blank(value: Any) -> bool:
    """None and whitespace-only strings mean "not given" (a param default of "" included)."""
    return value is None or (isinstance(value, str) and not value.strip())


def fmt_number(value: float) -> str:
    """3.0 -> "3", 2.5 -> "2.5": Struct numbers are floats, people's numbers mostly are not."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def text(value: Any) -> str | None:
    """A value as display text, or None when it is blank."""
    if blank(value):
        return None
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return fmt_number(value)
    if isinstance(value, list | tuple):
        items = [t for t in (text(v) for v in value) if t]
        return ", ".join(items) or None
    return str(value)


def get_str(config: Mapping[str, Any], key: str, default: str) -> str:
    """Text (or a number, as text) at `key`; `default` when it is missing or blank."""
    return text(config.get(key)) or default


def number(value: Any, name: str) -> float:
    """A finite number from a number or numeric text in a step's data; PermanentStepError
    naming `name`."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip().replace(",", ""))
        except ValueError:
            raise PermanentStepError(f"{name} must be a number, got {value!r}") from None
    else:
        raise PermanentStepError(f"{name} must be a number, got {json_type(value)}")
    if not math.isfinite(result):
        raise PermanentStepError(f"{name} must be a finite number, got {value!r}")
    return result


def get_str_list(config: Mapping[str, Any], key: str, default: Collection[str]) -> list[str]:
    """A list of texts, from a list or from one comma-separated text; blank items dropped."""
    value: Any = config.get(key)
    if blank(value):
        return list(default)
    items: Iterable[Any] = value.split(",") if isinstance(value, str) else value
    return [t for t in (text(item) for item in items) if t]


def setting(ctx: StepContext, key: str) -> Any:
    """The step's config value for `key`, else the run's param of that name, else None."""
    value = ctx.config.get(key)
    if blank(value):
        value = ctx.params.get(key)
    return None if blank(value) else value


def stable_id(prefix: str, key: str) -> str:
    """An id that is the same on every attempt and after a restart: derived, never random."""
    return f"{prefix}_{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def aware(moment: datetime) -> datetime:
    """The engine's clock is UTC; a naive datetime is taken to be UTC rather than local time."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def iso(moment: datetime) -> str:
    return aware(moment).isoformat()
