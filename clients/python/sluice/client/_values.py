"""Python values into request fields: enum names, datetimes. A bad value is an
InvalidArgumentError naming the field, raised before any call, as the server would answer it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, NoReturn, Protocol, TypeAlias

from google.protobuf import descriptor_pool, json_format, struct_pb2, timestamp_pb2

from sluice.client.errors import FieldViolation, InvalidArgumentError
from sluice.v1 import event_pb2, template_pb2, workflow_pb2
from sluice.v1.workflow_service_pb2 import WorkflowView

TemplateLike: TypeAlias = "template_pb2.Template | Mapping[str, Any]"
# "FAILED", "failed" or "WORKFLOW_STATUS_FAILED", or the enum value itself.
StatusLike: TypeAlias = "workflow_pb2.WorkflowStatus.ValueType | str"
# "STEP_COMPLETED", "step_completed" or "EVENT_TYPE_STEP_COMPLETED", or the enum value itself.
EventTypeLike: TypeAlias = "event_pb2.EventType.ValueType | str"
# "FULL", "full" or "WORKFLOW_VIEW_FULL", or the enum value itself.
ViewLike: TypeAlias = "WorkflowView.ValueType | str"


class EnumType(Protocol):
    """A generated proto enum (`WorkflowStatus`, `WorkflowView`, ...)."""

    def Value(self, name: str) -> int: ...
    def items(self) -> Iterable[tuple[str, int]]: ...


def enum_names(enum: EnumType, prefix: str) -> list[str]:
    """The short names a user may write (`FAILED`), without `*_UNSPECIFIED`."""
    return [name.removeprefix(prefix) for name, value in enum.items() if value != 0]


def enum_value(enum: EnumType, prefix: str, value: object) -> int | None:
    """The enum value for a name (short or full, any case) or a value; None when it is neither.

    `*_UNSPECIFIED` is not accepted by name: it is never what a caller means.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        return None
    full = value.strip().upper()
    if not full.startswith(prefix):
        full = prefix + full
    try:
        return enum.Value(full) or None
    except ValueError:
        return None


def statuses(values: Sequence[StatusLike]) -> list[workflow_pb2.WorkflowStatus.ValueType]:
    found = _enum_values(
        values, workflow_pb2.WorkflowStatus, "WORKFLOW_STATUS_", "statuses", "a run status"
    )
    return [workflow_pb2.WorkflowStatus.ValueType(n) for n in found]


def event_types(values: Sequence[EventTypeLike]) -> list[event_pb2.EventType.ValueType]:
    found = _enum_values(values, event_pb2.EventType, "EVENT_TYPE_", "types", "an event type")
    return [event_pb2.EventType.ValueType(n) for n in found]


def _enum_values(
    values: Sequence[object], enum: EnumType, prefix: str, field: str, what: str
) -> list[int]:
    """The numbers of a repeated enum field's values; every bad one reported at once."""
    if isinstance(values, str):  # "FAILED" would otherwise be read letter by letter
        values = [values]
    found: list[int] = []
    violations: list[FieldViolation] = []
    for i, value in enumerate(values):
        number = enum_value(enum, prefix, value)
        if number is None:
            violations.append(FieldViolation(f"{field}[{i}]", _unknown(value, what, enum, prefix)))
        else:
            found.append(number)
    if violations:
        _invalid(*violations)
    return found


def view(value: ViewLike) -> WorkflowView.ValueType:
    number = enum_value(WorkflowView, "WORKFLOW_VIEW_", value)
    if number is None:
        _invalid(FieldViolation("view", _unknown(value, "a view", WorkflowView, "WORKFLOW_VIEW_")))
    return WorkflowView.ValueType(number)


def timestamp(value: datetime | None, field: str) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        _invalid(FieldViolation(field, f"expected a datetime, got {type(value).__name__}"))
    if value.tzinfo is None or value.utcoffset() is None:
        # A naive datetime is local time to some callers and UTC to others: refuse to guess.
        _invalid(
            FieldViolation(field, "needs a time zone, e.g. datetime.now(UTC) - timedelta(days=1)")
        )
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def template(value: TemplateLike) -> template_pb2.Template:
    """A Template as given, or parsed from its proto-JSON dict."""
    if isinstance(value, template_pb2.Template):
        return value
    try:
        return parse_template(value)
    except ValueError as error:
        _invalid(FieldViolation("template", f"is not a template in proto JSON: {error}"))


_BAD_ENUM = re.compile(r"Invalid enum value (\S+) for enum type (\S+) at (\S+?)\.*$")


def parse_template(data: Mapping[str, Any]) -> template_pb2.Template:
    """A Template from its proto-JSON form. ValueError says what is wrong; for an enum value
    the parser does not know (`"action": "PAUSE"`) it names the values to write instead
    (`GATE_ACTION_PAUSE`), which protobuf's own message does not."""
    try:
        return json_format.ParseDict(dict(data), template_pb2.Template())
    except json_format.ParseError as error:
        found = _BAD_ENUM.search(str(error))
        if found is None:
            raise ValueError(str(error)) from None
        given, type_name, where = found.groups()
        enum = descriptor_pool.Default().FindEnumTypeByName(type_name)
        names = [v.name for v in enum.values if v.number != 0]
        guess = next((n for n in names if n.endswith("_" + given.strip('"').upper())), None)
        hint = f"write {guess}" if guess else f"write one of {', '.join(names)}"
        raise ValueError(
            f"{where.removeprefix('Template.')}: {given} is not a {enum.name} value; {hint} "
            "(proto JSON spells enum values in full)"
        ) from None
    except (TypeError, AttributeError) as error:
        raise ValueError(str(error)) from None


def struct(value: Mapping[str, Any] | None, field: str) -> struct_pb2.Struct:
    """A Struct of JSON-like data (dicts, lists, str, numbers, bools, None)."""
    result = struct_pb2.Struct()
    try:
        result.update(dict(value or {}))
    except (TypeError, ValueError) as error:
        _invalid(FieldViolation(field, f"must hold only JSON values: {error}"))
    return result


def _unknown(value: object, what: str, enum: EnumType, prefix: str) -> str:
    return f"{value!r} is not {what}; use one of {', '.join(enum_names(enum, prefix))}"


def _invalid(*violations: FieldViolation) -> NoReturn:
    """Raised before any call, in the shape the server's INVALID_ARGUMENT has."""
    raise InvalidArgumentError(
        "; ".join(f"{v.field}: {v.description}" for v in violations), list(violations)
    )
