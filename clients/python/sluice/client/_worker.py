"""The worker: serves a Sluice server's "task" steps with async Python functions.

One StreamTasks stream brings tasks, never more than the credits granted: `concurrency` at
first, one more as each task ends, so no more than `concurrency` handlers run at once. Each
task runs as an `Attempt` (heartbeats, handler, report) beside the others. A result goes back
on the stream that brought its task, with its credit, while that stream is open; with the unary
calls otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import os
import re
import signal
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import grpc
import structlog
from opentelemetry import trace

from sluice.client import _targets
from sluice.client._attempt import Attempt, Calls, Handler
from sluice.client._connect import connect
from sluice.client._outcome import ResultRequest
from sluice.client._targets import Addresses
from sluice.client.errors import SluiceError
from sluice.client.tls_probe import ServerSpeaksTlsError
from sluice.v1 import worker_service_pb2 as pb
from sluice.v1 import worker_service_pb2_grpc as pb_grpc

H = TypeVar("H", bound=Handler)

log = structlog.get_logger("sluice.worker")

DEFAULT_CONCURRENCY = 8
DEFAULT_HEARTBEAT_INTERVAL = 10.0
DEFAULT_GRACE = 30.0
# The server takes 0-1000 credits a message and 200 characters of worker id.
MAX_CONCURRENCY = 1000
MAX_WORKER_ID = 200
# Task types as template.proto's StepSpec.task_type allows them.
TASK_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9._:/-]{0,99}$")
# After the grace of a stop, results still being sent get this long before they are dropped.
REPORT_GRACE_SECONDS = 5.0
# A result larger than this goes by call: a message over the server's limit (4 MiB unless set
# otherwise) would break the stream and hand back every task it holds, where a call fails
# alone. The server refuses step outputs over 1 MiB anyway, unless set otherwise.
STREAM_RESULT_BYTES = 1024 * 1024

# A stream broken by these is opened again; any other answer (a bad token, a server with no
# WorkerService, task types it refuses) would come back the same, so run() raises it.
_RECONNECT_ON = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"[:MAX_WORKER_ID]


def next_backoff(delay: float, maximum: float) -> float:
    return min(delay * 2, maximum)


class Worker:
    """Serves tasks of the registered task types until stopped.

    ```python
    worker = Worker("127.0.0.1:50051", concurrency=4)

    @worker.task("echo")
    async def echo(task: Task) -> dict[str, Any]:
        return {"echo": task.config}

    await worker.run(handle_signals=True)
    ```
    """

    def __init__(
        self,
        target: Addresses | None = None,
        *,
        token: str | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        tls: bool = False,
        server_name: str | None = None,
        channel: grpc.aio.Channel | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        keepalive: float | None = _targets.KEEPALIVE_SECONDS,
        concurrency: int = DEFAULT_CONCURRENCY,
        worker_id: str | None = None,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        initial_backoff: float = 0.1,
        max_backoff: float = 5.0,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        """Connect as WorkflowClient does (target, token, TLS, keepalive: the same arguments and
        SLUICE_* variables).

        concurrency: most handlers running at once (1-1000).
        worker_id: the name the server logs and lists for this worker; "<hostname>-<pid>".
        heartbeat_interval: seconds between heartbeats of a running task; a cancelled run's
        handler is stopped within about that long.
        initial_backoff / max_backoff: seconds before opening a broken stream again, doubling.
        tracer_provider: makes each handler's span "task <type>" (None: OpenTelemetry's global
        one, a no-op until the process sets up an SDK). A server that traces puts its step
        attempt's span in each task: the handler's span is its child, in the run's trace.
        """
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be 1 to {MAX_CONCURRENCY}, not {concurrency}")
        if heartbeat_interval <= 0:
            raise ValueError(f"heartbeat_interval must be positive, not {heartbeat_interval}")
        if not 0 < initial_backoff <= max_backoff:
            raise ValueError("backoff needs 0 < initial_backoff <= max_backoff")
        self.concurrency = concurrency
        self.worker_id = (worker_id or default_worker_id())[:MAX_WORKER_ID]
        self._backoff = (initial_backoff, max_backoff)
        self._connection = connect(
            target,
            token=token,
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
            tls=tls,
            server_name=server_name,
            channel=channel,
            credentials=credentials,
            metadata=metadata,
            keepalive=keepalive,
        )
        self._stub = pb_grpc.WorkerServiceStub(self._connection.channel)
        self._calls = Calls(
            self._stub,
            self._connection.metadata,
            heartbeat_interval,
            trace.get_tracer("sluice.worker", tracer_provider=tracer_provider),
        )
        self._handlers: dict[str, Handler] = {}
        self._running: dict[Attempt, asyncio.Task[None]] = {}
        # Attempts whose result went on a stream with the credit of their slot: still running
        # (until the result is answered) but no longer holding a slot.
        self._credited: set[Attempt] = set()
        self._stream: _Stream | None = None
        self._started = False
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        # Loop time by which handlers still running are stopped; a later stop() may bring it
        # nearer (a second Ctrl-C), which _stop_moved announces.
        self._stop_at: float | None = None
        self._stop_moved = asyncio.Event()
        self._signal_stops: set[asyncio.Task[None]] = set()

    # --- handlers -------------------------------------------------------------------------------

    def task(self, task_type: str) -> Callable[[H], H]:
        """Decorator: `@worker.task("images.resize")` over `async def handler(task) -> dict`."""

        def register(handler: H) -> H:
            self.register(task_type, handler)
            return handler

        return register

    def register(self, task_type: str, handler: Handler) -> None:
        """Serve `task_type` with `handler`: an async function taking a Task and returning the
        step's output, a JSON object (dict). Raising fails the attempt (retryable, unless it is a
        NonRetryableError or a TaskError with non_retryable=True)."""
        if self._started:
            raise RuntimeError("register handlers before run(): the server is told the types then")
        if not TASK_TYPE.match(task_type):
            raise ValueError(
                f"task type {task_type!r}: 1-100 letters, digits, '.', '_', '-', ':' or '/', "
                "starting with a letter"
            )
        if task_type in self._handlers:
            raise ValueError(f"task type {task_type!r} has a handler already")
        if not _is_async(handler):
            raise TypeError(f"the handler of {task_type!r} must be an async function")
        self._handlers[task_type] = handler

    @property
    def task_types(self) -> list[str]:
        return list(self._handlers)

    @property
    def running(self) -> int:
        """Tasks taken and not yet reported."""
        return len(self._running)

    @property
    def _held(self) -> int:
        """Slots taken: tasks running, less those whose credit went back with their result."""
        return len(self._running) - len(self._credited)

    # --- running and stopping -------------------------------------------------------------------

    async def run(self, *, handle_signals: bool = False, grace: float = DEFAULT_GRACE) -> None:
        """Serve tasks until stop() (or, with handle_signals, SIGINT/SIGTERM: a graceful stop
        with `grace`; a second signal stops at once), then close the connection.

        Raises the server's answer when it refuses the stream for good (a bad token, unknown
        service, task types it rejects); a broken stream is opened again with backoff.
        """
        if self._started:
            raise RuntimeError("a Worker runs once")
        if not self._handlers:
            raise ValueError("no handler registered: use @worker.task(...) or worker.register()")
        self._started = True
        loop = asyncio.get_running_loop()
        restore = self._handle_signals(loop, grace) if handle_signals else _nothing
        log.info(
            "worker started",
            worker_id=self.worker_id,
            task_types=self.task_types,
            concurrency=self.concurrency,
        )
        serving = asyncio.create_task(self._serve())
        try:
            stop = asyncio.create_task(self._stopping.wait())
            try:
                await asyncio.wait({serving, stop}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
            if serving.done():
                serving.result()  # the server refused the stream: raise its answer
            await self._drain(serving)
        finally:
            restore()
            await self._shut(serving)
            log.info("worker stopped", worker_id=self.worker_id)

    async def stop(self, grace: float = DEFAULT_GRACE) -> None:
        """Stop taking tasks, give running handlers `grace` seconds to finish (their results are
        reported; those still running then are cancelled and report nothing), and close.
        Returns once run() has. Calling it again with a shorter grace shortens the wait."""
        self._request_stop(grace)
        if self._started:
            await self._stopped.wait()
        else:
            await self.close()

    async def close(self) -> None:
        """Close the connection of a worker that was never run (run() closes its own)."""
        await self._connection.channel.close()

    def _request_stop(self, grace: float) -> None:
        at = asyncio.get_running_loop().time() + max(grace, 0.0)
        if self._stop_at is None or at < self._stop_at:
            self._stop_at = at
            self._stop_moved.set()
        if self._stopping.is_set():
            return
        log.info("worker stopping", worker_id=self.worker_id, grace=grace, running=self.running)
        self._stopping.set()
        if self._stream is not None:
            self._stream.close()

    def _handle_signals(self, loop: asyncio.AbstractEventLoop, grace: float) -> Callable[[], None]:
        def on_signal(signum: signal.Signals) -> None:
            now = 0.0 if self._stopping.is_set() else grace
            log.info("signal received", signal=signum.name, grace=now)
            stopping = asyncio.create_task(self.stop(now))
            self._signal_stops.add(stopping)
            stopping.add_done_callback(self._signal_stops.discard)

        installed: list[signal.Signals] = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, on_signal, signum)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
                log.warning("signal not handled", signal=signum.name)
                continue
            installed.append(signum)

        def restore() -> None:
            for signum in installed:
                loop.remove_signal_handler(signum)

        return restore

    async def _drain(self, serving: asyncio.Task[None]) -> None:
        """Wait, until the stop's grace is over, for the stream to end and the handlers to
        finish; then stop the handlers still running (their tasks handed back, or reported
        failed)."""
        loop = asyncio.get_running_loop()
        while True:
            pending = {task for task in (serving, *self._running.values()) if not task.done()}
            assert self._stop_at is not None
            remaining = self._stop_at - loop.time()
            if not pending or remaining <= 0:
                break
            self._stop_moved.clear()
            moved = asyncio.create_task(self._stop_moved.wait())
            try:
                await asyncio.wait(
                    {*pending, moved}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                moved.cancel()
        # The server keeps a half-closed stream open until its tasks are reported: breaking it
        # hands those still running back at once, to the next worker, as the same attempt.
        # Only when the stream has ended already are they reported failed (retryable).
        handed_back = not serving.done()
        for attempt in list(self._running):
            if attempt.handler_running:
                if handed_back:
                    attempt.abandon("the worker stopped; the server hands the task on")
                else:
                    attempt.interrupt("the worker stopped before the task finished")
        if handed_back:
            serving.cancel()
        runners = list(self._running.values())
        if runners:
            await asyncio.wait(runners, timeout=REPORT_GRACE_SECONDS)

    async def _shut(self, serving: asyncio.Task[None]) -> None:
        """Cancel whatever still runs and close the connection."""
        leftovers = [serving, *self._running.values(), *self._signal_stops]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)
        await self._connection.channel.close()
        self._stopped.set()

    # --- the task stream ------------------------------------------------------------------------

    async def _serve(self) -> None:
        """Keep a stream open until the worker stops, opening it again when it breaks."""
        loop = asyncio.get_running_loop()
        initial, maximum = self._backoff
        delay = initial
        while not self._stopping.is_set():
            stream = _Stream()
            opened = loop.time()
            try:
                await self._stream_once(stream)
            except grpc.RpcError as exc:
                if self._stopping.is_set():
                    return
                error = await self._connection.error(exc)
                if error.code not in _RECONNECT_ON or isinstance(error, ServerSpeaksTlsError):
                    raise error from None
                self._log_break(error, delay)
            else:
                if self._stopping.is_set():
                    # The server saw the half-close: it sends no more tasks.
                    log.info("task stream closed", worker_id=self.worker_id)
                    return
                log.info("task stream ended by the server; reopening", retry_in=delay)
            # A stream that lived or brought work was a good connection: start the backoff over.
            if stream.received or loop.time() - opened >= maximum:
                delay = initial
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)
            delay = next_backoff(delay, maximum)

    def _log_break(self, error: SluiceError, delay: float) -> None:
        log.warning(
            "task stream broke; reopening",
            code=error.code.name,
            error=error.message,
            retry_in=delay,
            running=self.running,
        )

    async def _stream_once(self, stream: _Stream) -> None:
        call = self._stub.StreamTasks(metadata=self._connection.metadata)
        # Tasks still running from a broken stream keep their slots: their heartbeats will
        # tell whether the server still counts them as ours.
        credits = self.concurrency - self._held
        first = pb.StreamTasksRequest(
            task_types=self.task_types, worker_id=self.worker_id, credits=credits
        )
        self._stream = stream
        writer = asyncio.create_task(stream.write(call, first))
        try:
            while True:
                response = await call.read()
                if not isinstance(response, pb.StreamTasksResponse):
                    return  # grpc.aio.EOF: the server ended the stream with OK
                if response.HasField("task"):
                    stream.received += 1
                    self._start(stream, response.task)
                stream.answer(response.reports)
        finally:
            if self._stream is stream:
                self._stream = None
            writer.cancel()
            call.cancel()
            # Each may have been recorded or not: its attempt reports it again with a call.
            if unanswered := stream.end():
                log.info(
                    "task results unanswered when the stream ended",
                    worker_id=self.worker_id,
                    results=unanswered,
                )

    def _start(self, stream: _Stream, message: pb.Task) -> None:
        if self._held >= self.concurrency:
            log.error("the server sent a task beyond the credits granted", running=self.running)
        handler = self._handlers.get(message.task_type)
        attempt = Attempt(message, handler, self._calls, functools.partial(self._carry, stream))
        self._running[attempt] = asyncio.create_task(self._run(attempt))

    async def _carry(
        self, stream: _Stream, attempt: Attempt, result: ResultRequest
    ) -> pb.TaskReport | None:
        """Report on the stream the task came by while it is open and not half-closed: the
        result and the credit its slot frees in one message. Its answer, or None."""
        if self._stream is not stream or stream.closing:
            return None
        if result.ByteSize() > STREAM_RESULT_BYTES:
            return None
        self._credited.add(attempt)
        return await stream.report(result)

    async def _run(self, attempt: Attempt) -> None:
        try:
            await attempt.run()
        except Exception:  # a bug here must not take the worker down with it
            attempt.log.exception("task runner failed")
        finally:
            del self._running[attempt]
            if attempt in self._credited:
                self._credited.discard(attempt)  # its credit went with its result
            elif self._stream is not None and not self._stopping.is_set():
                self._stream.grant(1)


class _Stream:
    """One StreamTasks call's request side: the credits owed to the server, the results to
    send and those awaiting their answers, and the half-close. One writer sends them, so writes
    never overlap."""

    def __init__(self) -> None:
        self.received = 0
        self._owed = 0
        # Results to send, one a message, each with the credit its task's slot frees.
        self._results: list[ResultRequest] = []
        # Results sent (or about to be), by task token, until the server answers them.
        self._answers: dict[str, asyncio.Future[pb.TaskReport | None]] = {}
        self._closing = False
        self._wake = asyncio.Event()

    @property
    def closing(self) -> bool:
        return self._closing

    def grant(self, credits: int) -> None:
        self._owed += credits
        self._wake.set()

    def report(self, result: ResultRequest) -> asyncio.Future[pb.TaskReport | None]:
        """Send a result with the credit its slot frees. The future gets the server's answer,
        or None if the stream ends first."""
        answer = asyncio.get_running_loop().create_future()
        self._answers[result.task_token] = answer
        self._results.append(result)
        self._wake.set()
        return answer

    def answer(self, reports: Iterable[pb.TaskReport]) -> None:
        for report in reports:
            answer = self._answers.pop(report.task_token, None)
            if answer is not None and not answer.done():  # done: its attempt stopped waiting
                answer.set_result(report)

    def end(self) -> int:
        """The stream is over: the results still unanswered get None. How many there were."""
        unanswered = [answer for answer in self._answers.values() if not answer.done()]
        for answer in unanswered:
            answer.set_result(None)
        self._answers.clear()
        return len(unanswered)

    def close(self) -> None:
        """Half-close: the server sends no more tasks and ends the stream."""
        self._closing = True
        self._wake.set()

    async def write(
        self,
        call: grpc.aio.StreamStreamCall[pb.StreamTasksRequest, pb.StreamTasksResponse],
        first: pb.StreamTasksRequest,
    ) -> None:
        try:
            await call.write(first)
            while True:
                await self._wake.wait()
                self._wake.clear()
                # Results taken before the half-close still go, before it.
                while self._results or (self._owed and not self._closing):
                    await call.write(self._next())
                if self._closing:
                    await call.done_writing()
                    return
        except (grpc.RpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
            return  # the stream ended; its reader sees why

    def _next(self) -> pb.StreamTasksRequest:
        """The next message: the credits owed, and the next result with the credit it frees.
        One result a message keeps each message within the size of one."""
        request = pb.StreamTasksRequest(credits=self._owed)
        self._owed = 0
        if self._results:
            result = self._results.pop(0)
            if isinstance(result, pb.CompleteTaskRequest):
                request.completed.append(result)
            else:
                request.failed.append(result)
            request.credits += 1
        if self._closing:
            request.credits = 0  # half-closed: the server sends no more tasks
        return request


def _is_async(handler: object) -> bool:
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004  # an object with `async def __call__`
    )


def _nothing() -> None:
    return None
