"""The standard gRPC server metrics, under the names and labels of grpc-ecosystem's
go-grpc-prometheus (the ones gRPC dashboards and alerts are written against):
grpc_server_started_total, grpc_server_handled_total{grpc_code} and
grpc_server_handling_seconds, each by grpc_type, grpc_service and grpc_method.

Why an interceptor of our own: none of the instrumentations made for this measures a grpc.aio
server by method. py-grpc-prometheus has no asyncio interceptor (lchenn/py-grpc-prometheus#13),
OpenTelemetry's gRPC instrumentation makes spans but no metrics
(open-telemetry/opentelemetry-python-contrib#3375), and grpcio-observability pins grpcio to
its own exact release and, on grpc.aio, labels every method "other" (grpc/grpc#39061). This
one follows the go-grpc-prometheus conventions so that their dashboards work unchanged.

Streams are counted (started, handled, by code) but kept out of the latency histogram:
a WatchWorkflow stream lasts as long as its run, a worker's StreamTasks as long as the
worker, and their "latency" would drown the unary calls' in the same buckets.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

Context = grpc.aio.ServicerContext[Any, Any]

# Unary calls: from a cached read (~1 ms) to a long-polling PollTasks or a `wait=true` run.
HANDLING_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class GrpcMetrics(grpc.aio.ServerInterceptor):
    """Put first among the server's interceptors: a call the others refuse (authentication)
    is counted with its code."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["grpc_type", "grpc_service", "grpc_method"]
        self.started = Counter(
            "grpc_server_started_total", "RPCs started on the server.", labels,
            registry=registry,
        )  # fmt: skip
        self.handled = Counter(
            "grpc_server_handled_total", "RPCs completed on the server, whatever their status.",
            [*labels, "grpc_code"], registry=registry,
        )  # fmt: skip
        self.handling = Histogram(
            "grpc_server_handling_seconds",
            "Time from the start of a unary RPC to its status (streams are not timed).",
            labels, buckets=HANDLING_BUCKETS, registry=registry,
        )  # fmt: skip
        self._metered: dict[str, Any] = {}  # a method's handler never changes: wrapped once

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        metered = self._metered.get(details.method)
        if metered is None:
            handler: Any = await continuation(details)
            if handler is None:
                return None  # unknown method: gRPC answers UNIMPLEMENTED; no label for it
            metered = self._metered[details.method] = self._meter(details.method, handler)
        return metered

    def _meter(self, method: str, handler: Any) -> Any:
        service, _, name = method.lstrip("/").rpartition("/")
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _metered(_Call(self, "unary", service, name), handler.unary_unary),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _metered(_Call(self, "server_stream", service, name), handler.unary_stream),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                _metered(_Call(self, "bidi_stream", service, name), handler.stream_stream),
                handler.request_deserializer,
                handler.response_serializer,
            )
        return handler  # no client-streaming-only methods are served


class _Call:
    """One method's label values, bound once."""

    def __init__(self, metrics: GrpcMetrics, kind: str, service: str, method: str) -> None:
        self._labels = (kind, service, method)
        self._started = metrics.started.labels(*self._labels)
        self._handled_total = metrics.handled
        self._handled: dict[str, Any] = {}  # by code, made at its first use
        self._handling = metrics.handling.labels(kind, service, method) if kind == "unary" else None

    def begin(self) -> float:
        self._started.inc()
        return time.perf_counter()

    def end(self, code: str, began: float) -> None:
        handled = self._handled.get(code)
        if handled is None:
            handled = self._handled[code] = self._handled_total.labels(*self._labels, code)
        handled.inc()
        if self._handling is not None:
            self._handling.observe(time.perf_counter() - began)


def _metered(call: _Call, behaviour: Any) -> Any:
    """A method's behaviour, counted: a coroutine (unary methods, and the API's streams, which
    send with context.write) or an async generator (reflection's and health's streams)."""
    if inspect.isasyncgenfunction(behaviour):

        async def metered_generator(request: Any, context: Context) -> AsyncIterator[Any]:
            began = call.begin()
            code = "UNKNOWN"
            try:
                async for reply in behaviour(request, context):
                    yield reply
                code = _code(context, "OK")
            except BaseException as error:
                code = _failed(context, error)
                raise
            finally:
                call.end(code, began)

        return metered_generator

    async def metered_coroutine(request: Any, context: Context) -> Any:
        began = call.begin()
        code = "UNKNOWN"
        try:
            result = await behaviour(request, context)
            code = _code(context, "OK")
            return result
        except BaseException as error:
            code = _failed(context, error)
            raise
        finally:
            call.end(code, began)

    return metered_coroutine


def _failed(context: Context, error: BaseException) -> str:
    """The status of a call its handler left with `error`."""
    if isinstance(error, asyncio.CancelledError):
        return "CANCELLED"  # the client went away (or the server is stopping)
    return _code(context, "UNKNOWN")


def _code(context: Context, otherwise: str) -> str:
    """The status the call ends with: the one set on its context (abort, set_code), or
    `otherwise`."""
    code = context.code()
    return code.name if isinstance(code, grpc.StatusCode) else otherwise
