"""Domain errors -> gRPC statuses (AIP-193). Unexpected errors become INTERNAL without details:
the traceback goes to the server log, never to the caller."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import structlog
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from sluice.api.auth import Unauthenticated, current_user
from sluice.engine.errors import (
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    SluiceError,
    Unavailable,
)

log = structlog.get_logger(__name__)

_CODES: list[tuple[type[SluiceError], grpc.StatusCode]] = [
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (Conflict, grpc.StatusCode.ABORTED),
    (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
]


# Errors travel in trailing metadata, which gRPC caps (8 KiB by default): keep them small.
MAX_VIOLATIONS = 40
MAX_TEXT = 300


def status_of(error: SluiceError) -> tuple[grpc.StatusCode, str]:
    """The status code and message an error is answered with."""
    code = next((c for kind, c in _CODES if isinstance(error, kind)), grpc.StatusCode.INTERNAL)
    return code, _cut(str(error), 4 * MAX_TEXT)


async def abort(context: grpc.aio.ServicerContext[Any, Any], error: SluiceError) -> None:
    code, message = status_of(error)
    status = status_pb2.Status(code=code.value[0], message=message)
    if isinstance(error, InvalidArgument):
        violations = [(_cut(v.field, 200), _cut(v.description, MAX_TEXT)) for v in error.violations]
        if len(violations) > MAX_VIOLATIONS:
            hidden = len(violations) - MAX_VIOLATIONS + 1
            violations = [*violations[: MAX_VIOLATIONS - 1], ("", f"and {hidden} more problems")]
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=field, description=text)
                    for field, text in violations
                ]
            )
        )
        status.details.append(detail)
    await context.abort(
        code,
        message,
        trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
    )


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def rpc(method: F) -> F:
    """Map what a servicer method raises to a status: a unary method's reply, or a streaming
    method that sends with `context.write` (a coroutine rather than an async generator, so no
    generator layer is added per message sent)."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await method(self, request, context)
        except SluiceError as exc:
            await abort(context, exc)
        except Exception:
            if context.code() is not None:  # context.abort() already set the status
                raise
            log.exception("unexpected error", method=method.__name__, user=current_user())
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the server log")

    return wrapper  # type: ignore[return-value]
