"""gRPC-Web for the browser, as a thin adapter in front of the server's own gRPC server.

Each call (`POST /sluice.v1.<Service>/<Method>`, `application/grpc-web+proto`) is forwarded as
raw bytes, never deserialised here, over an internal channel to this process's grpc.aio
server (its private unix socket, `loopback.py`), and the answer goes back framed as gRPC-Web:
data frames, then a trailer frame with grpc-status, grpc-message and the trailing metadata
(grpc-status-details-bin among it). So the browser meets the same interceptors (the Guard's
JWT check, from the `authorization` header forwarded as metadata), validation and errors as
any gRPC client; a second implementation of the service (sonora, connect-python) would either
skip grpc.aio's interceptors or need a servicer of its own.

Unary and server-streaming methods of the sluice.v1 services are served; client and
bidirectional streams cannot be spoken by a browser's fetch and are refused, as is every
other service (health, reflection). A stream's messages are written as they arrive; the
client going away cancels the upstream call (the HTTP server cancels its handler); a
`grpc-timeout` header becomes the upstream call's deadline.
"""

from __future__ import annotations

import asyncio
import base64
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import grpc
from aiohttp import web

from sluice.v1 import schedule_service_pb2, worker_service_pb2, workflow_service_pb2

CONTENT_TYPE = "application/grpc-web+proto"
_ACCEPTED_TYPES = frozenset({"application/grpc-web", CONTENT_TYPE})
_FRAME = struct.Struct(">BI")  # flags, then the length of what follows
_DATA, _TRAILERS, _COMPRESSED = 0x00, 0x80, 0x01
# Browser headers that become gRPC metadata. Only these: cookies, origins and the rest of
# what a browser sends stay at the HTTP layer.
_FORWARDED = ("authorization",)
_TIMEOUT = re.compile(r"^(\d{1,8})([HMSmun])$")
_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


@dataclass(frozen=True, slots=True)
class Method:
    path: str  # /package.Service/Method
    server_streaming: bool


def sluice_methods() -> dict[str, Method]:
    """The methods a browser may call: the sluice.v1 services' unary and server-streaming
    ones, by path."""
    methods: dict[str, Method] = {}
    for module in (workflow_service_pb2, schedule_service_pb2, worker_service_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                if method.client_streaming:
                    continue
                path = f"/{service.full_name}/{method.name}"
                methods[path] = Method(path, method.server_streaming)
    return methods


class GrpcWebProxy:
    """The aiohttp handler of gRPC-Web calls, forwarding each over `channel`."""

    def __init__(self, channel: grpc.aio.Channel, methods: Mapping[str, Method]) -> None:
        self._channel = channel
        self._methods = methods
        # Calls under way, cancelled by close(): the HTTP server's shutdown would otherwise
        # wait for every open watch to end.
        self._calls: set[grpc.aio.Call] = set()
        self._closing = False

    def close(self) -> None:
        """End every call under way (their clients get UNAVAILABLE) and refuse new ones."""
        self._closing = True
        for call in list(self._calls):
            call.cancel()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        method = self._methods.get(request.path)
        if method is None:
            return _status_only(
                grpc.StatusCode.UNIMPLEMENTED,
                f"{request.path} is not served over gRPC-Web: only the sluice.v1 services' "
                "unary and server-streaming methods are",
            )
        media_type = request.content_type.split(";")[0].strip().lower()
        if media_type not in _ACCEPTED_TYPES:
            raise web.HTTPUnsupportedMediaType(
                text=f"expected {CONTENT_TYPE}, got {media_type or 'no content type'}"
            )
        if self._closing:
            return _status_only(grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
        try:
            message = _request_message(await request.read())
            timeout = _timeout(request.headers.get("grpc-timeout"))
        except _BadRequest as bad:
            return _status_only(bad.code, str(bad))
        metadata = tuple(
            (name, request.headers[name]) for name in _FORWARDED if name in request.headers
        )
        if request.remote:  # who called: the service sees this adapter's private socket
            metadata += (("x-forwarded-for", request.remote),)
        # No serializers: the request and the answers stay bytes, as they came.
        if method.server_streaming:
            stream: grpc.aio.UnaryStreamMultiCallable[bytes, bytes]
            stream = self._channel.unary_stream(method.path)
            return await self._stream(request, stream(message, metadata=metadata, timeout=timeout))
        unary: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]
        unary = self._channel.unary_unary(method.path)
        return await self._unary(request, unary(message, metadata=metadata, timeout=timeout))

    async def _unary(
        self, request: web.Request, call: grpc.aio.UnaryUnaryCall[bytes, bytes]
    ) -> web.StreamResponse:
        self._calls.add(call)
        try:
            try:
                answer = await call
            except (grpc.aio.AioRpcError, asyncio.CancelledError) as error:
                return _status_only(*self._ended(error))
            body = _frame(_DATA, answer) + _trailers(
                grpc.StatusCode.OK, "", await call.trailing_metadata()
            )
            return web.Response(body=body, headers=_headers(await call.initial_metadata()))
        finally:
            call.cancel()  # the client went away first: nothing more is wanted (else a no-op)
            self._calls.discard(call)

    async def _stream(
        self, request: web.Request, call: grpc.aio.UnaryStreamCall[bytes, bytes]
    ) -> web.StreamResponse:
        self._calls.add(call)
        # Headers at once, without the upstream's initial metadata (the service sends none of
        # use): a watch of a quiet run may not send a message for hours, and the browser
        # should know the stream is open.
        response = web.StreamResponse(headers=_headers(()))
        try:
            await response.prepare(request)
            try:
                async for answer in call:
                    await response.write(_frame(_DATA, answer))
                ended = grpc.StatusCode.OK, "", await call.trailing_metadata()
            except (grpc.aio.AioRpcError, asyncio.CancelledError) as error:
                ended = self._ended(error)
            await response.write(_trailers(*ended))
            await response.write_eof()
            return response
        finally:
            # The client went away (the handler is cancelled) or the answer is complete:
            # either way nothing more is wanted from upstream.
            call.cancel()
            self._calls.discard(call)

    def _ended(self, error: BaseException) -> tuple[grpc.StatusCode, str, Any]:
        """The status a failed upstream call ends with. grpc.aio reports a call cancelled
        here as CancelledError: close() did it (the server stops: UNAVAILABLE, so clients
        go elsewhere or retry), unless this handler itself is being cancelled (its client
        went away), which must go on."""
        if isinstance(error, grpc.aio.AioRpcError):
            return error.code(), error.details() or "", error.trailing_metadata()
        task = asyncio.current_task()
        if not self._closing or (task is not None and task.cancelling()):
            raise error
        return grpc.StatusCode.UNAVAILABLE, "the server is shutting down", None


class _BadRequest(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _request_message(body: bytes) -> bytes:
    """The one message of a gRPC-Web request body (a single uncompressed data frame)."""
    if len(body) < _FRAME.size:
        raise _BadRequest(grpc.StatusCode.INVALID_ARGUMENT, "the request body holds no message")
    flags, length = _FRAME.unpack_from(body)
    if flags & _COMPRESSED:
        raise _BadRequest(
            grpc.StatusCode.UNIMPLEMENTED, "compressed messages are not accepted: send identity"
        )
    if flags != _DATA or len(body) != _FRAME.size + length:
        raise _BadRequest(
            grpc.StatusCode.INVALID_ARGUMENT,
            "the request body must be exactly one gRPC-Web data frame",
        )
    return body[_FRAME.size :]


def _timeout(header: str | None) -> float | None:
    if header is None:
        return None
    match = _TIMEOUT.match(header)
    if match is None:
        raise _BadRequest(grpc.StatusCode.INVALID_ARGUMENT, f"bad grpc-timeout {header!r}")
    return int(match.group(1)) * _TIMEOUT_UNITS[match.group(2)]


def _frame(flags: int, payload: bytes) -> bytes:
    return _FRAME.pack(flags, len(payload)) + payload


def _trailers(code: grpc.StatusCode, details: str, metadata: Iterable[Any] | None) -> bytes:
    lines = [f"grpc-status: {code.value[0]}", f"grpc-message: {_percent(details)}"]
    lines += [f"{key}: {value}" for key, value in _metadata(metadata)]
    return _frame(_TRAILERS, ("\r\n".join(lines) + "\r\n").encode("ascii"))


def _status_only(
    code: grpc.StatusCode, details: str, metadata: Iterable[Any] | None = None
) -> web.Response:
    """A call that ends without a message: its status in a trailer frame, which every
    gRPC-Web client reads (trailers-only responses put it in the headers instead)."""
    return web.Response(body=_trailers(code, details, metadata), headers=_headers(()))


def _headers(metadata: Iterable[Any] | None) -> dict[str, str]:
    return {"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store", **dict(_metadata(metadata))}


def _metadata(metadata: Iterable[Any] | None) -> list[tuple[str, str]]:
    """gRPC metadata as HTTP header text: binary values (`-bin` keys) in base64, as gRPC-Web
    carries them; grpc-status and grpc-message are the caller's to write."""
    pairs: list[tuple[str, str]] = []
    for key, value in metadata or ():
        name = str(key).lower()
        if name in ("grpc-status", "grpc-message"):
            continue
        text = base64.b64encode(value).decode("ascii") if isinstance(value, bytes) else str(value)
        if "\r" in text or "\n" in text:
            continue  # would break the header block; gRPC forbids it anyway
        pairs.append((name, text))
    return pairs


def _percent(details: str) -> str:
    """grpc-message's encoding: UTF-8, with '%' and bytes outside printable ASCII escaped."""
    return quote(details, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~", encoding="utf-8")
