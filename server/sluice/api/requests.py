"""Edge checks of request fields that the engine does not own (ids, pages, enums)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from sluice.engine.errors import InvalidArgument, Violation
from sluice.engine.validation import ERROR_TYPE, ERROR_TYPE_RULE, TEMPLATE_ID

MAX_PAGE_SIZE = 1000
MAX_REASON = 1000
MAX_REQUEST_ID = 200
MAX_STEP_ID = 64
_GATE_ID = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
T = TypeVar("T")


class Checks:
    """Collects violations; `done()` raises them all at once."""

    def __init__(self) -> None:
        self.violations: list[Violation] = []

    def add(self, field: str, description: str) -> None:
        self.violations.append(Violation(field, description))

    def workflow_id(self, value: str, field: str = "workflow_id") -> None:
        if not value:
            self.add(field, "is required")
            return
        try:
            uuid.UUID(value)
        except ValueError:
            self.add(field, "must be a workflow id as returned by CreateWorkflow (a UUID)")

    def gate_id(self, value: str) -> None:
        if not _GATE_ID.match(value):
            self.add("gate_id", "must be the id of a gate of the workflow's template")

    def page_size(self, value: int) -> None:
        if not 0 <= value <= MAX_PAGE_SIZE:
            self.add("page_size", f"must be between 0 and {MAX_PAGE_SIZE}")

    def text(self, field: str, value: str, limit: int = MAX_REASON) -> None:
        if len(value) > limit:
            self.add(field, f"must be at most {limit} characters")
        elif "\x00" in value:
            self.add(field, "must not contain NUL characters")

    def error_type(self, value: str, field: str = "error_type") -> None:
        if not ERROR_TYPE.match(value):
            self.add(field, ERROR_TYPE_RULE)

    def template_id(self, value: str, field: str = "template_id") -> None:
        if not value:
            self.add(field, "is required")
        elif not TEMPLATE_ID.match(value):
            self.add(field, "must be 1-63 lowercase letters, digits or '-', starting with a letter")

    def timestamp(self, message: Message, field: str) -> datetime | None:
        """A Timestamp field as an aware UTC datetime; None when unset or invalid (reported)."""
        try:
            return timestamp_or_none(message, field)
        except (ValueError, OverflowError):
            self.add(field, "must be a time between years 1 and 9999")
            return None

    def done(self) -> None:
        if self.violations:
            raise InvalidArgument(self.violations)


def encode_cursor(cursor: tuple[datetime, str], fingerprint: str) -> str:
    raw = json.dumps({"c": cursor[0].isoformat(), "i": cursor[1], "f": fingerprint})
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(token: str, fingerprint: str, checks: Checks) -> tuple[datetime, str] | None:
    return _decode(
        token, fingerprint, checks, lambda data: (datetime.fromisoformat(data["c"]), str(data["i"]))
    )


def encode_sequence(sequence: int, fingerprint: str) -> str:
    """A page token that goes on after a run's event `sequence`."""
    return base64.urlsafe_b64encode(json.dumps({"s": sequence, "f": fingerprint}).encode()).decode()


def decode_sequence(token: str, fingerprint: str, checks: Checks) -> int | None:
    return _decode(token, fingerprint, checks, _sequence)


def _sequence(data: dict[str, Any]) -> int:
    sequence = data["s"]
    if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 0:
        raise ValueError(sequence)
    return sequence


def _decode(
    token: str, fingerprint: str, checks: Checks, read: Callable[[dict[str, Any]], T]
) -> T | None:
    """What `read` takes from a page token issued for `fingerprint`; None when there is no
    token, or a bad one (reported)."""
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        if data["f"] != fingerprint:
            checks.add("page_token", "was issued for other filters; repeat the call's filters")
            return None
        return read(data)
    except (ValueError, KeyError, TypeError, binascii.Error):
        checks.add("page_token", "is not a page token returned by this method")
        return None


def encode_offset(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def decode_offset(token: str, checks: Checks) -> int:
    if not token:
        return 0
    try:
        offset = int(json.loads(base64.urlsafe_b64decode(token.encode()))["o"])
        if offset < 0:
            raise ValueError
        return offset
    except (ValueError, KeyError, TypeError, binascii.Error):
        checks.add("page_token", "is not a page token returned by this method")
        return 0


def fingerprint(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def request_hash(request: Message, *ignored: str) -> str:
    """What identifies a request for AIP-155: its bytes, serialized deterministically (map
    keys sorted), without the fields that do not change what it asks (the request_id itself,
    `wait`). "" when it carries no request_id: nothing to compare it with."""
    if not getattr(request, "request_id", ""):
        return ""
    copy = type(request)()
    copy.CopyFrom(request)
    for name in ("request_id", *ignored):
        copy.ClearField(name)
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()


def timestamp_or_none(message: Message, field: str) -> datetime | None:
    """A Timestamp field as an aware UTC datetime, or None when it is unset."""
    if not message.HasField(field):
        return None
    value: Timestamp = getattr(message, field)
    return value.ToDatetime(tzinfo=UTC)
