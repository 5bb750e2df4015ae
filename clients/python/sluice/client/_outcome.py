"""What a handler's return value or exception tells the server: the step's output, or a failure
and whether the retry policy may try again."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from google.protobuf import duration_pb2, struct_pb2

from sluice.v1 import worker_service_pb2 as pb

# FailTask takes 1-10,000 characters of error text, and at most 24 h of retry_after.
MAX_ERROR_CHARS = 10_000
MAX_RETRY_AFTER = timedelta(hours=24)


class TaskError(Exception):
    """Raise from a handler to fail the task with `message`.

    non_retryable: the step fails now, whatever its retry policy.
    retry_after: seconds (or a timedelta) to wait before the next attempt instead of the
    policy's backoff, at most 24 h; ignored when no retry follows.
    error_type: the kind of failure, e.g. "CardDeclined" (letters, digits, '.', '_', '-', ':'
    and '/', starting with a letter): a step whose retry policy lists it in
    nonRetryableErrorTypes fails now. Shown in the step's events.
    """

    def __init__(
        self,
        message: str,
        *,
        non_retryable: bool = False,
        retry_after: float | timedelta | None = None,
        error_type: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.non_retryable = non_retryable
        self.retry_after = _delay(retry_after)
        self.error_type = error_type


class NonRetryableError(TaskError):
    """Raise from a handler to fail the step without retry (bad input, a refused request:
    another attempt would fail the same way)."""

    def __init__(self, message: str, *, error_type: str = "") -> None:
        super().__init__(message, non_retryable=True, error_type=error_type)


@dataclass(frozen=True, slots=True)
class Completed:
    output: struct_pb2.Struct

    def request(self, token: str) -> pb.CompleteTaskRequest:
        return pb.CompleteTaskRequest(task_token=token, output=self.output)


@dataclass(frozen=True, slots=True)
class Failed:
    error: str
    non_retryable: bool = False
    retry_after: timedelta | None = None
    error_type: str = ""

    def request(self, token: str) -> pb.FailTaskRequest:
        request = pb.FailTaskRequest(
            task_token=token,
            error=self.error,
            non_retryable=self.non_retryable,
            error_type=self.error_type,
        )
        if self.retry_after is not None:
            duration = duration_pb2.Duration()
            duration.FromTimedelta(self.retry_after)
            request.retry_after.CopyFrom(duration)
        return request


Outcome = Completed | Failed
# An outcome as CompleteTask or FailTask takes it, and as the StreamTasks stream carries it.
ResultRequest = pb.CompleteTaskRequest | pb.FailTaskRequest


def returned(value: object) -> Outcome:
    """A handler's return value: a JSON object completes the step. Anything else is a bug in the
    handler that another attempt would repeat, so it fails the step without retry."""
    if not isinstance(value, Mapping):
        kind = "None" if value is None else type(value).__name__
        return Failed(
            f"the handler returned {kind}, not a JSON object (a dict) for the step's output",
            non_retryable=True,
        )
    output = struct_pb2.Struct()
    try:
        output.update(dict(value))
    except (TypeError, ValueError, AttributeError) as error:
        return Failed(
            error_text(f"the handler's output is not a JSON object: {error}"), non_retryable=True
        )
    return Completed(output)


def raised(error: BaseException) -> Failed:
    """A handler's exception: a TaskError says how to fail; any other is retryable."""
    if isinstance(error, TaskError):
        text = error.message or type(error).__name__
        return Failed(error_text(text), error.non_retryable, error.retry_after, error.error_type)
    message = str(error)
    return Failed(error_text(f"{type(error).__name__}: {message}" if message else repr(error)))


def error_text(text: str) -> str:
    """The error as FailTask takes it: not empty, at most MAX_ERROR_CHARS characters."""
    text = text or "the task failed"
    if len(text) <= MAX_ERROR_CHARS:
        return text
    return text[: MAX_ERROR_CHARS - 1] + "…"


def _delay(value: float | timedelta | None) -> timedelta | None:
    if value is None:
        return None
    delay = value if isinstance(value, timedelta) else timedelta(seconds=value)
    if not timedelta(0) <= delay <= MAX_RETRY_AFTER:
        raise ValueError(f"retry_after must be 0 to 24 hours, not {delay}")
    return delay
