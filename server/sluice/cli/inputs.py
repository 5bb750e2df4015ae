"""Turning command-line text into request values: params, template references, statuses,
event types, times."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sluice.cli.outcome import InputError
from sluice.client import EventType, Template, WorkflowStatus
from sluice.client._values import EnumType, enum_names, enum_value, parse_template


def parse_params(pairs: Iterable[str], params_file: Path | None = None) -> dict[str, Any]:
    """The params of a run: the file's object first, then each `k=v` over it.

    A value is JSON when it parses as JSON (`price=500000` is a number, `tags=["a"]` a list),
    otherwise the text itself, so plain words need no quoting.
    """
    params: dict[str, Any] = {}
    if params_file is not None:
        loaded = _load_json(params_file, "--params-file")
        if not isinstance(loaded, dict):
            raise InputError(f"--params-file {params_file}: expected a JSON object")
        params.update(loaded)
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--param {pair!r}: expected NAME=VALUE")
        params[key.strip()] = _value(text)
    return params


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def template_file(reference: str) -> Template | None:
    """The template in a JSON file when `reference` names one; None when it is a template id."""
    path = Path(reference)
    if not (path.suffix == ".json" or path.is_file()):
        return None
    return load_template(path)


def load_template(path: Path) -> Template:
    """A template from a proto-JSON file (what CreateTemplate takes)."""
    data = _load_json(path, "template file")
    if not isinstance(data, dict):
        raise InputError(f"template file {path}: expected a JSON object")
    try:
        return parse_template(data)
    except ValueError as error:
        raise InputError(f"template file {path}: {error}") from None


def parse_statuses(names: Iterable[str]) -> list[WorkflowStatus.ValueType]:
    """`completed`, `COMPLETED` or `WORKFLOW_STATUS_COMPLETED`."""
    found = _parse_enum(names, WorkflowStatus, _STATUS_PREFIX, "--status")
    return [WorkflowStatus.ValueType(value) for value in found]


def status_names() -> list[str]:
    return enum_names(WorkflowStatus, _STATUS_PREFIX)


def parse_event_types(names: Iterable[str]) -> list[EventType.ValueType]:
    """`step_completed`, `STEP_COMPLETED` or `EVENT_TYPE_STEP_COMPLETED`."""
    found = _parse_enum(names, EventType, _EVENT_TYPE_PREFIX, "--type")
    return [EventType.ValueType(value) for value in found]


def event_type_names() -> list[str]:
    return enum_names(EventType, _EVENT_TYPE_PREFIX)


def _parse_enum(names: Iterable[str], enum: EnumType, prefix: str, flag: str) -> list[int]:
    values: list[int] = []
    for name in names:
        value = enum_value(enum, prefix, name)
        if value is None:
            known = ", ".join(enum_names(enum, prefix))
            raise InputError(f"{flag} {name!r}: expected one of {known}")
        values.append(value)
    return values


_STATUS_PREFIX = "WORKFLOW_STATUS_"
_EVENT_TYPE_PREFIX = "EVENT_TYPE_"
_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str | None, flag: str, now: datetime | None = None) -> datetime | None:
    """An ISO 8601 time (local time when it names no zone) or an age before `now`: 30m, 24h,
    7d (s, m, h, d, w)."""
    if text is None:
        return None
    cleaned = text.strip()
    if match := _AGE.fullmatch(cleaned):
        age = timedelta(**{_UNIT[match.group(2)]: float(match.group(1))})
        return (now or datetime.now(UTC)) - age
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError:
        raise InputError(
            f"{flag} {text!r}: expected an ISO 8601 time (2025-03-01, 2025-03-01T09:30:00Z) "
            "or an age such as 30m, 24h or 7d"
        ) from None
    return moment if moment.tzinfo is not None else moment.astimezone()


def _load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InputError(f"cannot read {what} {path}: {error.strerror}") from None
    except ValueError as error:
        raise InputError(f"{what} {path} is not valid JSON: {error}") from None
