"""One task on a worker, from receipt to report: the handler (under its span), the heartbeats
that hold its lease, and the result sent back."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import structlog
from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Tracer

from sluice.client._outcome import (
    Completed,
    Failed,
    Outcome,
    ResultRequest,
    TaskError,
    error_text,
    raised,
    returned,
)
from sluice.client._task import Task
from sluice.v1 import worker_service_pb2 as pb
from sluice.v1 import worker_service_pb2_grpc as pb_grpc

# An async function from a task to the step's output.
Handler = Callable[[Task], Coroutine[Any, Any, Mapping[str, Any]]]
# Sends an attempt's result on the stream that brought its task, with the credit its slot frees,
# and returns the server's answer; None when that stream cannot take it (half-closed, gone) or
# ends before answering: the unary calls report it then.
Carry = Callable[["Attempt", ResultRequest], Awaitable[pb.TaskReport | None]]
# What a report got: the status CompleteTask or FailTask answered (or a TaskReport carried) and
# its message.
Status = tuple[grpc.StatusCode, str]

log = structlog.get_logger("sluice.worker")

# Every unary call's deadline: a server that does not answer within it is treated as
# unavailable, and the call is tried again.
CALL_TIMEOUT_SECONDS = 10.0
# A heartbeat or report that failed for want of a server is tried again after this, doubling.
RETRY_INITIAL_SECONDS = 0.1
RETRY_MAX_SECONDS = 5.0
# How long a result is offered to an unreachable server when the task names no deadline.
REPORT_PATIENCE = timedelta(minutes=1)
# The first heartbeat waits this long (at most a quarter of the time to the task's heartbeat
# deadline): a handler done by then acknowledges the task with its result, and a task costs
# the server one call less.
FIRST_HEARTBEAT_SECONDS = 1.0

# The lease is gone (timed out, handed to another worker, the run cancelled, or no such task
# for this user): the work is no longer this worker's, and a result would be refused.
LEASE_GONE = frozenset({grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND})
# Answers that say nothing about the task: the server was not reached, or not in time.
TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)
# CompleteTask refusing the output itself (too large, not a JSON value the server takes): no
# attempt would be accepted, so the step fails now rather than timing out.
OUTPUT_REFUSED = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE})
# A TaskReport's code is the number of a status code.
_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}


@dataclass(frozen=True, slots=True)
class Calls:
    """The worker's connection, as an attempt uses it."""

    stub: pb_grpc.WorkerServiceAsyncStub
    metadata: tuple[tuple[str, str], ...]
    heartbeat_interval: float
    # Makes each handler's span (a no-op one unless the process set up an OpenTelemetry SDK).
    tracer: Tracer


class Attempt:
    """Runs one task. `abandon` stops it without a report (lease lost, run cancelled, worker
    stopped); otherwise its handler's outcome is reported once the handler ends."""

    def __init__(
        self, message: pb.Task, handler: Handler | None, calls: Calls, carry: Carry
    ) -> None:
        self.task = Task.from_proto(message)
        self._heartbeat_deadline = (
            message.heartbeat_deadline.ToDatetime(UTC)
            if message.HasField("heartbeat_deadline")
            else None
        )
        self._handler = handler
        self._calls = calls
        self._carry = carry
        self._running: asyncio.Task[Mapping[str, Any]] | None = None
        # Why the work is no longer ours; set once, and then nothing is reported.
        self.abandoned: str | None = None
        # Why the worker stopped the handler: reported as a retryable failure.
        self.interrupted: str | None = None
        self.log = log.bind(
            task_type=self.task.task_type,
            workflow_id=self.task.workflow_id,
            step_id=self.task.step_id,
            attempt=self.task.attempt,
        )

    @property
    def handler_running(self) -> bool:
        return self._running is not None and not self._running.done()

    def abandon(self, reason: str) -> None:
        """Stop the handler (it sees asyncio.CancelledError) and report nothing."""
        if self.abandoned is None:
            self.abandoned = reason
        if self._running is not None:
            self._running.cancel()

    def interrupt(self, reason: str) -> None:
        """Stop the handler and report the attempt failed (retryable), so the step's next
        attempt need not wait for its lease to run out."""
        if self.abandoned is None and self.interrupted is None:
            self.interrupted = reason
        if self._running is not None:
            self._running.cancel()

    async def run(self) -> None:
        if self._handler is None:  # the server sent a type this worker did not ask for
            await self._report(
                Failed(f"no handler for task type {self.task.task_type!r}", non_retryable=True)
            )
            return
        # Heartbeats run beside the handler: the first extends the lease from the short
        # heartbeat deadline to the step's timeout (unless the result comes first), and each
        # says whether the run was cancelled.
        self._running = asyncio.create_task(self._traced(self._handler))
        beats = asyncio.create_task(self._keep_lease())
        try:
            await asyncio.wait({self._running})
        finally:
            beats.cancel()
            if not self._running.done():  # this runner was cancelled: take the handler along
                self._running.cancel()
                await asyncio.wait({self._running})
        if self.abandoned is not None:
            self.log.info("task abandoned", reason=self.abandoned)
            return
        if self.interrupted is not None:
            self.log.info("task interrupted", reason=self.interrupted)
            await self._report(Failed(self.interrupted))
            return
        await self._report(self._outcome(self._running))

    async def _traced(self, handler: Handler) -> Mapping[str, Any]:
        """The handler under its span "task <type>": a child of the attempt's span when the
        task carries it (a server that traces: the span joins the run's trace), a trace of its
        own otherwise. Current while the handler runs, so its own spans are its children."""
        task = self.task
        parent = (
            propagate.extract(task.trace_context)
            if task.trace_context
            else otel_context.Context()  # not whatever the worker itself runs under
        )
        attributes: dict[str, str | int] = {
            "sluice.run.id": task.workflow_id,
            "sluice.step.id": task.step_id,
            "sluice.step.attempt": task.attempt,
            "sluice.task.type": task.task_type,
            "sluice.template.id": task.template_id,
        }
        with self._calls.tracer.start_as_current_span(
            f"task {task.task_type}", parent, SpanKind.CONSUMER, attributes
        ) as span:
            try:
                return await handler(task)
            except TaskError as error:
                if error.error_type:
                    span.set_attribute("error.type", error.error_type)
                raise

    def _outcome(self, handler: asyncio.Task[Mapping[str, Any]]) -> Outcome:
        if handler.cancelled():  # cancelled by the handler's own code, not by this worker
            return Failed("the handler was cancelled")
        error = handler.exception()
        if error is None:
            return returned(handler.result())
        outcome = raised(error)
        if isinstance(error, TaskError):  # the handler said what went wrong: no traceback
            self.log.info("task failed", error=outcome.error, non_retryable=outcome.non_retryable)
        else:
            self.log.warning("task failed", error=outcome.error, exc_info=error)
        return outcome

    async def _keep_lease(self) -> None:
        request = pb.HeartbeatTaskRequest(task_token=self.task.token)
        interval = self._calls.heartbeat_interval
        retry = RETRY_INITIAL_SECONDS
        first = min(FIRST_HEARTBEAT_SECONDS, interval)
        if self._heartbeat_deadline is not None:
            left = (self._heartbeat_deadline - datetime.now(UTC)).total_seconds()
            first = min(first, max(0.0, left / 4))
        await asyncio.sleep(first)
        while True:
            try:
                response = await self._calls.stub.HeartbeatTask(
                    request, metadata=self._calls.metadata, timeout=CALL_TIMEOUT_SECONDS
                )
            except grpc.RpcError as error:
                code = _code(error)
                if code in LEASE_GONE:
                    self.log.warning("task lease lost; handler stopped", code=code.name)
                    self.abandon(f"lease lost ({code.name})")
                    return
                self.log.warning("task heartbeat failed", code=code.name, retry_in=retry)
                await asyncio.sleep(min(retry, interval))
                retry = min(retry * 2, interval)
                continue
            if response.cancelled:
                self.log.info("task cancelled by its run; handler stopped")
                self.abandon("the run was cancelled")
                return
            retry = RETRY_INITIAL_SECONDS
            await asyncio.sleep(interval)

    async def _report(self, outcome: Outcome) -> None:
        give_up = self.task.deadline or datetime.now(UTC) + REPORT_PATIENCE
        retry = RETRY_INITIAL_SECONDS
        # The stream first: the result and the credit it frees in one message. The unary calls
        # for what it cannot take or leaves unanswered (they answer OK to a result the stream
        # recorded before it broke), and for every try after the first.
        status = await self._on_stream(outcome) or await self._call(outcome)
        while status[0] != grpc.StatusCode.OK:
            code, details = status
            if code in LEASE_GONE:
                self.log.warning("task result refused: the lease is gone", code=code.name)
                return
            if isinstance(outcome, Completed) and code in OUTPUT_REFUSED:
                message = error_text(f"the server refused the output: {details}")
                self.log.warning("task output refused", error=message)
                outcome = Failed(message, non_retryable=True)
            elif code not in TRANSIENT or datetime.now(UTC) >= give_up:
                self.log.error("task result not reported", code=code.name, error=details)
                return
            else:
                self.log.warning("task result not reported yet", code=code.name, retry_in=retry)
                await asyncio.sleep(retry)
                retry = min(retry * 2, RETRY_MAX_SECONDS)
            status = await self._call(outcome)
        if isinstance(outcome, Completed):
            self.log.info("task completed")
        else:
            self.log.info("task failure reported", non_retryable=outcome.non_retryable)

    async def _on_stream(self, outcome: Outcome) -> Status | None:
        """The stream's answer to the result; None when it was not answered there."""
        try:
            # As long as a call's deadline: a server that keeps the answer longer is asked again
            # with a call.
            async with asyncio.timeout(CALL_TIMEOUT_SECONDS):
                answer = await self._carry(self, outcome.request(self.task.token))
        except TimeoutError:
            self.log.warning("task result unanswered on the stream; reporting it with a call")
            return None
        if answer is None:
            return None
        return _STATUS_CODES.get(answer.code, grpc.StatusCode.UNKNOWN), answer.message

    async def _call(self, outcome: Outcome) -> Status:
        """Report with CompleteTask or FailTask."""
        stub, metadata = self._calls.stub, self._calls.metadata
        try:
            if isinstance(outcome, Completed):
                request = outcome.request(self.task.token)
                await stub.CompleteTask(request, metadata=metadata, timeout=CALL_TIMEOUT_SECONDS)
            else:
                failure = outcome.request(self.task.token)
                await stub.FailTask(failure, metadata=metadata, timeout=CALL_TIMEOUT_SECONDS)
        except grpc.RpcError as error:
            return _code(error), _details(error)
        return grpc.StatusCode.OK, ""


def _code(error: grpc.RpcError) -> grpc.StatusCode:
    code = getattr(error, "code", None)
    return code() if callable(code) else grpc.StatusCode.UNKNOWN


def _details(error: grpc.RpcError) -> str:
    details = getattr(error, "details", None)
    return (details() if callable(details) else None) or str(error)
