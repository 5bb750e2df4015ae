"""Reading step config: one place for types, defaults and the error messages that name the key.

Config arrives as JSON-like values from a `google.protobuf.Struct`, so every number may be a
float (3 arrives as 3.0), and a "{{ ... }}" substitution inside a longer string turns numbers
into text. The readers accept both forms so templates need not care.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from sluice.engine.handlers import PermanentStepError, StepContext


def blank(value: Any) -> bool:
    """None and whitespace-only strings mean "not given" (a param default of "" included)."""
    return value is None or (isinstance(value, str) and not value.strip())


def json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


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


def get_str(config: Mapping[str, Any], key: str, default: str, *, where: str = "config") -> str:
    value = config.get(key)
    if blank(value):
        return default
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return fmt_number(value)
    raise PermanentStepError(f"{where}.{key} must be a string, got {json_type(value)}")


def get_choice(
    config: Mapping[str, Any],
    key: str,
    choices: Collection[str],
    default: str,
    *,
    where: str = "config",
) -> str:
    value = get_str(config, key, default, where=where).lower()
    if value not in choices:
        raise PermanentStepError(
            f"{where}.{key} must be one of {', '.join(sorted(choices))}; got {value!r}"
        )
    return value


def require_choice(
    config: Mapping[str, Any], key: str, choices: Collection[str], *, where: str = "config"
) -> str:
    if blank(config.get(key)):
        raise PermanentStepError(f"{where}.{key} is required: one of {', '.join(sorted(choices))}")
    return get_choice(config, key, choices, "", where=where)


def number(value: Any, name: str) -> float:
    """A finite number from a number or numeric text; PermanentStepError naming `name`."""
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


def get_int(
    config: Mapping[str, Any], key: str, default: int, *, minimum: int = 0, where: str = "config"
) -> int:
    value = config.get(key)
    if blank(value):
        return default
    result = number(value, f"{where}.{key}")
    if not result.is_integer() or result < minimum:
        raise PermanentStepError(
            f"{where}.{key} must be a whole number >= {minimum}, got {value!r}"
        )
    return int(result)


def get_str_list(
    config: Mapping[str, Any], key: str, default: Collection[str], *, where: str = "config"
) -> list[str]:
    """A list of strings; a comma-separated string is accepted too (a substituted param)."""
    value = config.get(key)
    if blank(value):
        return list(default)
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple):
        out: list[str] = []
        for index, item in enumerate(value):
            if blank(item):
                continue
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                raise PermanentStepError(
                    f"{where}.{key}[{index}] must be a string, got {json_type(item)}"
                )
            out.append(item.strip() if isinstance(item, str) else fmt_number(item))
        return out
    raise PermanentStepError(f"{where}.{key} must be a list of strings, got {json_type(value)}")


def get_mapping(config: Mapping[str, Any], key: str, *, where: str = "config") -> Mapping[str, Any]:
    value = config.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PermanentStepError(f"{where}.{key} must be an object, got {json_type(value)}")
    return value


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
