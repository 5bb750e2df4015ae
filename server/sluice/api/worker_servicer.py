"""sluice.v1.WorkerService: request checks and conversions around the task queue. No rules."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import Any

import grpc
import structlog

from sluice.api import task_tokens
from sluice.api.auth import current_user
from sluice.api.convert import _duration, _td, _timestamp, dict_to_struct, struct_to_dict
from sluice.api.errors import rpc, status_of
from sluice.api.requests import Checks
from sluice.engine.errors import InvalidArgument, SluiceError
from sluice.engine.ports import Clock, TaskKey, TaskRecord, TaskResult, TaskState
from sluice.engine.validation import TASK_TYPE, TASK_TYPE_RULE
from sluice.runtime.task_queue import MAX_CREDITS, TaskQueue, WorkerSession
from sluice.v1 import worker_service_pb2 as pb
from sluice.v1 import worker_service_pb2_grpc as pb_grpc

Context = grpc.aio.ServicerContext[Any, Any]
log = structlog.get_logger("sluice.workers")

MAX_TASK_TYPES = 100
MAX_POLLED = 100
MAX_WORKER_ID = 200
MAX_ERROR = 10_000
DEFAULT_POLL_WAIT = timedelta(seconds=20)
MAX_POLL_WAIT = timedelta(seconds=60)
MAX_RETRY_AFTER = timedelta(hours=24)


class WorkerServicer(pb_grpc.WorkerServiceServicer):
    def __init__(self, queue: TaskQueue, clock: Clock, *, max_output_bytes: int) -> None:
        self._queue = queue
        self._clock = clock
        self._max_output_bytes = max_output_bytes

    @rpc
    # Sends with context.write, as WatchWorkflow does (the stub describes a generator).
    async def StreamTasks(  # type: ignore[override]
        self, requests: AsyncIterator[pb.StreamTasksRequest], context: Context
    ) -> None:
        first = await anext(requests, None)
        if first is None:
            return  # closed before asking for anything
        checks = Checks()
        task_types = _task_types(first.task_types, checks)
        _worker_id(first.worker_id, checks)
        _credits(first.credits, checks)
        checks.done()
        # Headers now: the worker knows its stream was accepted before any task comes.
        await context.send_initial_metadata(())
        session = self._queue.session(current_user(), task_types, first.worker_id or context.peer())
        outbox = _Outbox(context)
        reports = _Reports(session, outbox, self._queue, self._completion, self._report)
        reports.take(first)
        problems: list[Exception] = []
        reader = asyncio.create_task(_read(requests, session, reports.take, problems))
        clean = False
        try:
            while tasks := await session.next():
                # One turn of the loop first: the answers to the results that freed these
                # tasks' credits (recorded by the same commits, as a rule) go out with them.
                await asyncio.sleep(0)
                for task in tasks:
                    await outbox.task(self._task(task))
            if problems:
                raise problems[0]
            # Half-closed: the worker reports what it holds, then the stream ends (cleanly).
            await session.reported()
            await reports.settled()  # their answers go out before the stream ends
            clean = True
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            # Results received are recorded before anything is handed back.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(reports.settled())
            held = len(session.held)
            if clean:
                session.forget()
            else:  # broken, refused or stopped: its tasks go to the next worker now
                await asyncio.shield(session.hand_back())
            log.info(
                "worker stream ended", worker=session.worker, task_types=task_types,
                clean=clean, handed_back=0 if clean else held,
            )  # fmt: skip

    async def _report(
        self,
        request: pb.StreamTasksRequest,
        outbox: _Outbox,
        session: WorkerSession,
        *,
        in_commit: bool = True,
    ) -> None:
        """Record the results a stream message carries, together, and answer each. (The
        credits the message brought were held back for the commits recording them: the
        worker's next tasks are taken there; those not taken are the stream's again now.)
        `in_commit`: False once tried with the outcome they bring (`_Reports`)."""
        recording = [
            *(_answer(r.task_token, self._complete(r, in_commit=in_commit))
              for r in request.completed),
            *(_answer(r.task_token, self._fail(r)) for r in request.failed),
        ]  # fmt: skip
        try:
            # (One result, the usual message, is recorded without gather's task around it.)
            one = len(recording) == 1
            answers = [await recording[0]] if one else await asyncio.gather(*recording)
        finally:
            session.recorded()
        outbox.answer(answers)

    @rpc
    async def PollTasks(
        self, request: pb.PollTasksRequest, context: Context
    ) -> pb.PollTasksResponse:
        checks = Checks()
        task_types = _task_types(request.task_types, checks)
        if not 0 <= request.max_tasks <= MAX_POLLED:
            checks.add("max_tasks", f"must be between 0 and {MAX_POLLED} (0 means 1)")
        wait = _td(request.wait) if request.HasField("wait") else DEFAULT_POLL_WAIT
        if not timedelta(0) <= wait <= MAX_POLL_WAIT:
            checks.add("wait", f"must be between 0s and {MAX_POLL_WAIT.total_seconds():g}s")
        _worker_id(request.worker_id, checks)
        checks.done()
        taken = await self._queue.poll(
            current_user(),
            task_types,
            request.max_tasks or 1,
            request.worker_id or context.peer(),
            wait.total_seconds(),
        )
        return pb.PollTasksResponse(tasks=[self._task(t) for t in taken])

    @rpc
    async def CompleteTask(
        self, request: pb.CompleteTaskRequest, context: Context
    ) -> pb.CompleteTaskResponse:
        await self._complete(request)
        return pb.CompleteTaskResponse()

    @rpc
    async def FailTask(self, request: pb.FailTaskRequest, context: Context) -> pb.FailTaskResponse:
        await self._fail(request)
        return pb.FailTaskResponse()

    async def _complete(self, request: pb.CompleteTaskRequest, *, in_commit: bool = True) -> None:
        key, output = self._completion(request)
        await self._queue.complete(current_user(), key, output, in_commit=in_commit)

    def _completion(self, request: pb.CompleteTaskRequest) -> tuple[TaskKey, dict[str, Any]]:
        """The task and output a completion names, checked: INVALID_ARGUMENT if bad."""
        checks = Checks()
        key = _token(request.task_token, checks)
        output = struct_to_dict(request.output)
        problem = _unstorable(output, self._max_output_bytes)
        if problem:
            checks.add("output", problem)
        checks.done()
        assert key is not None
        return key, output

    async def _fail(self, request: pb.FailTaskRequest) -> None:
        checks = Checks()
        key = _token(request.task_token, checks)
        if not request.error:
            checks.add("error", "is required: say what went wrong")
        else:
            checks.text("error", request.error, MAX_ERROR)
        retry_after = _td(request.retry_after) if request.HasField("retry_after") else None
        if retry_after is not None and not timedelta(0) <= retry_after <= MAX_RETRY_AFTER:
            checks.add("retry_after", f"must be between 0s and {MAX_RETRY_AFTER}")
        if request.error_type:
            checks.error_type(request.error_type)
        checks.done()
        assert key is not None
        await self._queue.fail(
            current_user(),
            key,
            request.error,
            retryable=not request.non_retryable,
            retry_after=retry_after,
            error_type=request.error_type,
        )

    @rpc
    async def HeartbeatTask(
        self, request: pb.HeartbeatTaskRequest, context: Context
    ) -> pb.HeartbeatTaskResponse:
        checks = Checks()
        key = _token(request.task_token, checks)
        checks.done()
        assert key is not None
        cancelled = await self._queue.heartbeat(current_user(), key)
        return pb.HeartbeatTaskResponse(cancelled=cancelled)

    @rpc
    async def ListTaskQueues(
        self, request: pb.ListTaskQueuesRequest, context: Context
    ) -> pb.ListTaskQueuesResponse:
        now = self._clock.now()
        streaming = self._queue.streaming(current_user())
        queues: dict[str, pb.TaskQueue] = {}
        for stats in await self._queue.stats(current_user()):
            queue = queues[stats.task_type] = pb.TaskQueue(
                task_type=stats.task_type, queued=stats.queued, active=stats.active
            )
            if stats.oldest_queued_at is not None:
                _timestamp(stats.oldest_queued_at, queue.oldest_queue_time)
                _duration(max(timedelta(0), now - stats.oldest_queued_at), queue.oldest_age)
        for task_type, count in streaming.items():
            queues.setdefault(task_type, pb.TaskQueue(task_type=task_type)).workers = count
        return pb.ListTaskQueuesResponse(queues=[queues[t] for t in sorted(queues)])

    def _task(self, task: TaskRecord) -> pb.Task:
        given = task.input
        message = pb.Task(
            task_token=task_tokens.encode(task.key),
            task_type=task.task_type,
            workflow_id=task.run_id,
            step_id=task.step_id,
            attempt=task.attempt,
            idempotency_key=f"{task.run_id}/{task.step_id}",
            retries_left=int(given.get("retriesLeft", 0)),
            template_id=str(given.get("templateId", "")),
        )
        dict_to_struct(given.get("config"), message.config)
        dict_to_struct(given.get("params"), message.params)
        for step_id, output in (given.get("inputs") or {}).items():
            dict_to_struct(output, message.inputs[step_id])
        for step_id, output in (given.get("upstream") or {}).items():
            dict_to_struct(output, message.upstream[step_id])
        _timestamp(task.expires_at, message.heartbeat_deadline)
        if task.activated_at is not None:
            _timestamp(task.activated_at + task.run_timeout, message.deadline)
        _timestamp(task.queued_at, message.queue_time)
        message.trace_context.update(given.get("traceContext") or {})
        return message


class _Outbox:
    """A stream's messages to its worker, one at a time (gRPC takes no more): each task in a
    message of its own, and the answers to the worker's results with the next task when one
    goes out in the same turn of the event loop, else in a message of their own."""

    def __init__(self, context: Context) -> None:
        self._context = context
        self._writing = asyncio.Lock()
        self._answers: list[pb.TaskReport] = []
        self._looking = False  # a look at the answers left is due at the next turn
        self._sending: asyncio.Task[None] | None = None

    async def task(self, task: pb.Task) -> None:
        async with self._writing:
            answers, self._answers = self._answers, []
            await self._context.write(pb.StreamTasksResponse(task=task, reports=answers))

    def answer(self, answers: list[pb.TaskReport]) -> None:
        self._answers += answers
        if not self._looking:  # a task going out in this turn takes them along, or:
            self._looking = True
            asyncio.get_running_loop().call_soon(self._look)

    def _look(self) -> None:
        self._looking = False
        if self._answers and self._sending is None:
            self._sending = asyncio.create_task(self._send())

    async def _send(self) -> None:
        try:
            with contextlib.suppress(Exception):  # a stream gone: its worker reports again
                while self._answers:
                    async with self._writing:
                        answers, self._answers = self._answers, []
                        if answers:
                            await self._context.write(pb.StreamTasksResponse(reports=answers))
        finally:
            self._sending = None

    async def sent(self) -> None:
        """Returns once the answers given have gone out (or the stream is gone)."""
        while self._looking or self._sending is not None:
            if self._sending is not None:
                await asyncio.shield(self._sending)
            else:
                await asyncio.sleep(0)


class _Reports:
    """The results a stream's worker reports on it, each recorded and answered once. A
    completion alone in its message (the usual one) is recorded with the outcome it brings
    without a task of its own: its answer is given when that commit is made. The rest, and
    one not recorded so after all, are recorded by `report`."""

    def __init__(
        self,
        session: WorkerSession,
        outbox: _Outbox,
        queue: TaskQueue,
        completion: Callable[[pb.CompleteTaskRequest], tuple[TaskKey, dict[str, Any]]],
        report: Callable[..., Coroutine[Any, Any, None]],
    ) -> None:
        """`completion`: a completion's task and output, checked; `report`: records and
        answers a message's results (`WorkerServicer._report`)."""
        self._session = session
        self._outbox = outbox
        self._queue = queue
        self._completion = completion
        self._report_all = report
        self._pending: set[asyncio.Future[Any]] = set()

    def take(self, request: pb.StreamTasksRequest) -> None:
        """A message of the worker's: its credits, and its results to record."""
        results = bool(request.completed or request.failed)
        self._session.grant(request.credits, with_results=results)
        if not results:
            return
        if len(request.completed) == 1 and not request.failed:
            with contextlib.suppress(SluiceError):  # a bad one is answered by _report
                key, output = self._completion(request.completed[0])
                result = TaskResult(key, current_user(), TaskState.COMPLETED, {"output": output})
                recording = self._queue.record_soon(result)
                if recording is not None:
                    self._track(recording)
                    recording.add_done_callback(lambda done: self._recorded(request, done))
                    return
        self._report(request)

    def _recorded(self, request: pb.StreamTasksRequest, recording: asyncio.Future[bool]) -> None:
        if recording.cancelled() or not recording.result():
            self._report(request, in_commit=False)  # recorded in the store, or refused
            return
        self._session.recorded()
        self._outbox.answer([pb.TaskReport(task_token=request.completed[0].task_token)])

    def _report(self, request: pb.StreamTasksRequest, *, in_commit: bool = True) -> None:
        self._track(
            asyncio.create_task(
                self._report_all(request, self._outbox, self._session, in_commit=in_commit)
            )
        )

    def _track(self, pending: asyncio.Future[Any]) -> None:
        self._pending.add(pending)
        pending.add_done_callback(self._pending.discard)

    async def settled(self) -> None:
        """Returns once every result received is recorded (or refused) and answered."""
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self._outbox.sent()


async def _read(
    requests: AsyncIterator[pb.StreamTasksRequest],
    session: WorkerSession,
    take: Callable[[pb.StreamTasksRequest], None],
    problems: list[Exception],
) -> None:
    """The worker's messages after its first: credits and results (`take`); its half-close
    ends the session's supply. A message that breaks the rules ends the stream with
    INVALID_ARGUMENT, and a stream that breaks hands the worker's tasks back (`problems` says
    which)."""
    try:
        async for request in requests:
            checks = Checks()
            if request.task_types:
                checks.add("task_types", "is set in the first message of the stream only")
            if request.worker_id:
                checks.add("worker_id", "is set in the first message of the stream only")
            _credits(request.credits, checks)
            if checks.violations:
                problems.append(InvalidArgument(checks.violations))
                break
            take(request)
    except Exception as exc:  # the stream broke, or a message could not be decoded
        problems.append(exc)
    finally:
        session.close()


async def _answer(token: str, recording: Awaitable[None]) -> pb.TaskReport:
    """What a result reported on a stream got: the status its unary call would have."""
    try:
        await recording
    except SluiceError as exc:
        code, message = status_of(exc)
        return pb.TaskReport(task_token=token, code=code.value[0], message=message)
    except Exception:
        log.exception("unexpected error recording a result", user=current_user())
        return pb.TaskReport(
            task_token=token,
            code=grpc.StatusCode.INTERNAL.value[0],
            message="internal error; see the server log",
        )
    return pb.TaskReport(task_token=token)


def _task_types(given: Any, checks: Checks) -> list[str]:
    types = list(dict.fromkeys(given))
    if not types:
        checks.add("task_types", "is required: name the task types this worker serves")
    elif len(types) > MAX_TASK_TYPES:
        checks.add("task_types", f"has more than {MAX_TASK_TYPES} entries")
    for i, task_type in enumerate(given):
        if not TASK_TYPE.match(task_type):
            checks.add(f"task_types[{i}]", TASK_TYPE_RULE)
    return types


def _worker_id(value: str, checks: Checks) -> None:
    checks.text("worker_id", value, MAX_WORKER_ID)


def _credits(value: int, checks: Checks) -> None:
    if not 0 <= value <= MAX_CREDITS:
        checks.add("credits", f"must be between 0 and {MAX_CREDITS}")


def _token(token: str, checks: Checks) -> TaskKey | None:
    if not token:
        checks.add("task_token", "is required")
        return None
    key = task_tokens.decode(token)
    if key is None:
        checks.add("task_token", "is not a task token this service handed out")
    return key


def _unstorable(output: dict[str, Any], limit: int) -> str:
    try:
        size = len(json.dumps(output, allow_nan=False, separators=(",", ":")))
    except ValueError:
        return "must be JSON data: NaN and infinities are not"
    if size > limit:
        return f"is {size} bytes as JSON; the limit is {limit}"
    return ""
