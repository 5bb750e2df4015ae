"""A server interceptor in front of every sluice.v1 method: the request must decode and the
caller must authenticate before the servicer sees anything; every call refused (any status
but OK) is logged with its method, code and user.

Decoding is checked here because a request gRPC cannot deserialize (say, a Struct nested
deeper than protobuf's limit) would otherwise surface as UNKNOWN; it is the caller's mistake,
so it gets INVALID_ARGUMENT.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import structlog
from google.protobuf.message import DecodeError

from sluice.api.auth import JwtVerifier, Unauthenticated, current_user, set_current_user

Context = grpc.aio.ServicerContext[Any, Any]
PROTECTED_PREFIX = "/sluice.v1."

log = structlog.get_logger("sluice.calls")

# A caller's mistake is routine (INFO); a refused identity or an exhausted limit is worth an
# operator's attention (WARNING). INTERNAL is logged, with its traceback, where it is raised.
_WARN = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAVAILABLE,
    }
)
_UNLOGGED = frozenset({grpc.StatusCode.OK, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})


class _Undecodable:
    def __init__(self, error: Exception) -> None:
        self.error = error


class Guard(grpc.aio.ServerInterceptor):
    def __init__(self, verifier: JwtVerifier | None) -> None:
        self._verifier = verifier
        # Guarded handlers by method: what a method's handler is never changes, so it is
        # wrapped once rather than on every call.
        self._guarded: dict[str, Any] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        guarded = self._guarded.get(details.method)
        if guarded is None:
            # The handler's behaviours are coroutine functions here (grpc.aio); the stubs
            # describe the synchronous API, hence Any.
            handler: Any = await continuation(details)
            if handler is None or not details.method.startswith(PROTECTED_PREFIX):
                return handler  # health and reflection stay open, as their clients expect
            guarded = self._guarded[details.method] = self._guard(details.method, handler)
        return guarded

    def _guard(self, method: str, handler: Any) -> Any:
        deserializer = _tolerant(handler.request_deserializer)
        if handler.unary_unary is not None:
            unary = handler.unary_unary

            async def guarded_unary(request: Any, context: Context) -> Any:
                try:
                    await self._admit(request, context)
                    return await unary(request, context)
                finally:
                    _log_refusal(method, context)

            return grpc.unary_unary_rpc_method_handler(
                guarded_unary, deserializer, handler.response_serializer
            )
        if handler.unary_stream is not None:
            stream = handler.unary_stream

            # The API's streams send with context.write (a coroutine, not an async generator):
            # no generator layer per message sent.
            async def guarded_stream(request: Any, context: Context) -> None:
                try:
                    await self._admit(request, context)
                    await stream(request, context)
                finally:
                    _log_refusal(method, context)

            return grpc.unary_stream_rpc_method_handler(
                guarded_stream, deserializer, handler.response_serializer
            )
        if handler.stream_stream is not None:
            bidi = handler.stream_stream

            async def guarded_bidi(requests: Any, context: Context) -> None:
                try:
                    await self._admit(None, context)
                    await bidi(_decoded(requests, context), context)
                finally:
                    _log_refusal(method, context)

            return grpc.stream_stream_rpc_method_handler(
                guarded_bidi, deserializer, handler.response_serializer
            )
        return handler  # no client-streaming-only methods in the API

    async def _admit(self, request: Any, context: Context) -> None:
        if self._verifier is not None:
            authorization = next(
                (v for k, v in context.invocation_metadata() or () if k == "authorization"), None
            )
            try:
                user = self._verifier.user(str(authorization) if authorization else None)
            except Unauthenticated as exc:
                set_current_user("")  # nobody: the log line of the refusal names no user
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
            set_current_user(user)
        if isinstance(request, _Undecodable):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the request could not be decoded: {request.error}",
            )


def _log_refusal(method: str, context: Context) -> None:
    code = context.code()
    if code is None or code in _UNLOGGED:
        return
    # The status message is what the caller was told; it never repeats a token (see auth).
    peer = context.peer()
    fields: dict[str, str] = {}
    if peer.startswith("unix:"):
        # A browser's call, through the web view's adapter on a private socket: the address
        # the adapter saw the browser at (only the adapter sets it: no browser header is).
        forwarded = dict(context.invocation_metadata() or ()).get("x-forwarded-for")
        if isinstance(forwarded, str):
            fields["forwarded_for"] = forwarded
    (log.warning if code in _WARN else log.info)(
        "call refused", method=method, code=code.name, user=current_user() or None,
        detail=context.details(), peer=peer, **fields,
    )  # fmt: skip


async def _decoded(requests: Any, context: Context) -> Any:
    """A stream's requests, ending it with INVALID_ARGUMENT at the first undecodable one."""
    async for request in requests:
        if isinstance(request, _Undecodable):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"a request could not be decoded: {request.error}",
            )
        yield request


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError as exc:
            return _Undecodable(exc)

    return deserialize
