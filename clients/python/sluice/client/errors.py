"""Typed errors for the gRPC status codes Sluice answers with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


@dataclass(frozen=True, slots=True)
class FieldViolation:
    field: str
    description: str


class SluiceError(Exception):
    """A call failed. `code` is the gRPC status; `violations` lists bad fields, if any."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, violations: list[FieldViolation] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.violations = violations or []


class InvalidArgumentError(SluiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(SluiceError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(SluiceError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPreconditionError(SluiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class AbortedError(SluiceError):
    code = grpc.StatusCode.ABORTED


class UnauthenticatedError(SluiceError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(SluiceError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhaustedError(SluiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class UnavailableError(SluiceError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceededError(SluiceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


_BY_CODE = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        NotFoundError,
        AlreadyExistsError,
        FailedPreconditionError,
        AbortedError,
        UnauthenticatedError,
        PermissionDeniedError,
        ResourceExhaustedError,
        UnavailableError,
        DeadlineExceededError,
    )
}


def from_rpc_error(error: grpc.RpcError) -> SluiceError:
    """The typed error for a failed call, with the BadRequest field violations if present."""
    # Both grpc.Call and grpc.aio.AioRpcError answer code(), details(), trailing_metadata().
    call: Any = error if hasattr(error, "code") and hasattr(error, "trailing_metadata") else None
    code = call.code() if call is not None else grpc.StatusCode.UNKNOWN
    message = (call.details() if call is not None else None) or str(error)
    violations: list[FieldViolation] = []
    if call is not None:
        try:
            status = rpc_status.from_call(call)
        except ValueError:  # details that do not match the status: ignore them
            status = None
        for detail in status.details if status is not None else ():
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad_request = error_details_pb2.BadRequest()
                detail.Unpack(bad_request)
                violations.extend(
                    FieldViolation(v.field, v.description) for v in bad_request.field_violations
                )
    cls = _BY_CODE.get(code, SluiceError)
    result = cls(message, violations)
    if cls is SluiceError:
        result.code = code
    return result
