"""The task a worker's handler receives: the proto `Task` as plain Python values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from sluice.v1 import worker_service_pb2 as pb

# Struct numbers are doubles: a whole number past 2**53 is no longer exact, so it stays a float.
_EXACT_INTEGERS = 2**53


@dataclass(frozen=True, slots=True)
class Task:
    """One attempt of a "task" step, handed to this worker.

    config, params, inputs and upstream are plain JSON values (dicts, lists, str, int, float,
    bool, None); whole numbers come as int, since JSON (and the Struct it travels in) does not
    tell 3 from 3.0.
    """

    # Opaque; the worker sends it back with its heartbeats and the result.
    token: str
    task_type: str
    workflow_id: str
    step_id: str
    # 1 for the first attempt, one more for each retry.
    attempt: int
    # "<workflow id>/<step id>", the same for every attempt: de-duplicate side effects with it.
    idempotency_key: str
    # The step's config, every "{{ ... }}" substitution resolved.
    config: dict[str, Any]
    # The run's parameters.
    params: dict[str, Any]
    # Outputs of the step's direct dependencies, by step id.
    inputs: dict[str, dict[str, Any]]
    # Outputs of every completed step upstream of this one, by step id.
    upstream: dict[str, dict[str, Any]]
    # When the attempt must have ended (the step's timeout); None when the server sets none.
    deadline: datetime | None
    # Attempts the retry policy still allows after this one.
    retries_left: int
    template_id: str
    # When the attempt was queued.
    queue_time: datetime | None
    # The attempt's span on a server that traces, as W3C Trace Context fields ("traceparent",
    # "tracestate"); empty otherwise. The worker starts the handler's span as its child.
    trace_context: dict[str, str] = field(default_factory=dict)

    @property
    def traceparent(self) -> str | None:
        """The W3C traceparent of the attempt's span, or None when the server does not trace."""
        return self.trace_context.get("traceparent")

    @classmethod
    def from_proto(cls, task: pb.Task) -> Task:
        return cls(
            token=task.task_token,
            task_type=task.task_type,
            workflow_id=task.workflow_id,
            step_id=task.step_id,
            attempt=task.attempt,
            idempotency_key=task.idempotency_key,
            config=plain_struct(task.config),
            params=plain_struct(task.params),
            inputs=_plain_map(task.inputs),
            upstream=_plain_map(task.upstream),
            deadline=_time(task.deadline, task.HasField("deadline")),
            retries_left=task.retries_left,
            template_id=task.template_id,
            queue_time=_time(task.queue_time, task.HasField("queue_time")),
            trace_context=dict(task.trace_context),
        )


def plain_struct(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as a dict of plain JSON values, whole numbers as int."""
    value = _plain(json_format.MessageToDict(struct))
    assert isinstance(value, dict)  # a Struct is always an object
    return value


def _plain_map(structs: Mapping[str, struct_pb2.Struct]) -> dict[str, dict[str, Any]]:
    return {key: plain_struct(struct) for key, struct in structs.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) <= _EXACT_INTEGERS:
        return int(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _time(stamp: timestamp_pb2.Timestamp, present: bool) -> datetime | None:
    return stamp.ToDatetime(tzinfo=UTC) if present else None
