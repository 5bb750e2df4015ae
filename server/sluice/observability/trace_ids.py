"""The ids of a run's spans, from what the run stores (`Run.trace_context`): no OpenTelemetry
here, so the run log can name a run's trace without the SDK, and the ids are one pure function
every server computes alike.

A run stores the W3C `traceparent` of its own span ("00-<trace id>-<span id>-<flags>"). The
span of attempt N of step S is not stored anywhere: its id is a hash of the run's span id, S
and N, so whichever server runs, follows or ends the attempt knows it without asking (a local
handler runs under it, a worker's task carries it, and its span is emitted with it later).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class RunSpan:
    """A run's trace id, its own span's id and the trace flags, as stored."""

    trace_id: int
    span_id: int
    flags: int

    def attempt_span_id(self, step_id: str, attempt: int) -> int:
        """The span id of attempt `attempt` of step `step_id` of this run: distinct for each
        (step, attempt), the same on every server."""
        return _attempt_span_id(self.trace_id, self.span_id, step_id, attempt)


@lru_cache(maxsize=4096)  # an attempt's id is asked for as it starts, ends and is logged
def _attempt_span_id(trace_id: int, span_id: int, step_id: str, attempt: int) -> int:
    digest = hashlib.blake2b(
        f"{step_id}/{attempt}".encode(),
        digest_size=8,
        key=trace_id.to_bytes(16) + span_id.to_bytes(8),
    ).digest()
    return int.from_bytes(digest) or 1  # 0 is the invalid span id


def traceparent(trace_id: int, span_id: int, flags: int) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"


def run_span(trace_context: Mapping[str, str]) -> RunSpan | None:
    """The run's span from its stored trace context; None when it has none (tracing was off
    when it was created) or it cannot be read."""
    value = trace_context.get("traceparent") if trace_context else None
    return parse(value) if value else None


@lru_cache(maxsize=4096)  # every commit of a traced run reads it again
def parse(value: str) -> RunSpan | None:
    """A W3C traceparent ("00-<32 hex>-<16 hex>-<2 hex>"); None when it is not one."""
    parts = value.split("-")
    if len(parts) != 4 or [len(p) for p in parts] != [2, 32, 16, 2]:
        return None
    try:
        trace_id, span_id, flags = (int(p, 16) for p in parts[1:])
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    return RunSpan(trace_id, span_id, flags)


def log_fields(
    trace_context: Mapping[str, str], step_id: str = "", attempt: int = 0
) -> dict[str, str]:
    """`trace_id` and `span_id` for a log line about a run (the run's span) or one of its
    step attempts (the attempt's span); {} for a run that is not traced."""
    span = run_span(trace_context)
    if span is None:
        return {}
    span_id = span.attempt_span_id(step_id, attempt) if step_id and attempt else span.span_id
    return {"trace_id": f"{span.trace_id:032x}", "span_id": f"{span_id:016x}"}
