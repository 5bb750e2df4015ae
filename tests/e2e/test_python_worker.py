"""The Python worker SDK against a real server: task steps served by `Worker` handlers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from structlog.testing import capture_logs

from sluice.client import (
    EventType,
    NonRetryableError,
    StepStatus,
    Task,
    TaskError,
    Worker,
    WorkflowClient,
    WorkflowStatus,
)
from sluice.server import SluiceServer
from sluice.v1 import worker_service_pb2 as wpb
from sluice.v1 import worker_service_pb2_grpc as wpb_grpc
from tests.support.templates import step, template

ROOT = Path(__file__).resolve().parents[2]


def make_worker(server: SluiceServer, **settings: Any) -> Worker:
    # Heartbeats every 0.1 s, so a cancelled run's handler stops within a test's patience.
    defaults: dict[str, Any] = {"token": "", "worker_id": "test-worker", "heartbeat_interval": 0.1}
    return Worker(server.address, **{**defaults, **settings})


@contextlib.asynccontextmanager
async def serving(worker: Worker) -> AsyncIterator[asyncio.Task[None]]:
    run = asyncio.create_task(worker.run())
    try:
        yield run
    finally:
        await worker.stop(grace=5)
        async with asyncio.timeout(10):
            await run


def task_step(id: str, task_type: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return step(id, "task", *deps, taskType=task_type, **extra)


def output(run: Any, step_id: str) -> dict[str, Any]:
    [found] = [s for s in run.steps if s.step_id == step_id]
    return json_format.MessageToDict(found.output)


async def until(condition: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Wait for a condition that only a call can tell (a queue's size), asking every 20 ms."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def queue(client: WorkflowClient, task_type: str) -> wpb.TaskQueue:
    stub = wpb_grpc.WorkerServiceStub(client._channel)
    response = await stub.ListTaskQueues(wpb.ListTaskQueuesRequest())
    found = [q for q in response.queues if q.task_type == task_type]
    return found[0] if found else wpb.TaskQueue(task_type=task_type)


async def test_a_task_step_completes_through_a_worker_and_its_output_feeds_the_next(
    server: SluiceServer, client: WorkflowClient
) -> None:
    worker = make_worker(server)
    seen: dict[str, Task] = {}

    @worker.task("echo")
    async def echo(task: Task) -> dict[str, Any]:
        seen[task.step_id] = task
        return {"echo": task.config, "who": task.params["who"]}

    @worker.task("text.upper")
    async def upper(task: Task) -> dict[str, Any]:
        seen[task.step_id] = task
        return {"text": task.config["text"].upper()}

    tpl = template(
        "relay",
        task_step("a", "echo", config={"text": "hi {{ params.who }}", "n": 2}),
        task_step("b", "text.upper", "a", config={"text": "{{ steps.a.echo.text }}"}),
        params=[{"name": "who", "required": True}],
    )
    run = await client.create_workflow(tpl, {"who": "ada"})
    async with serving(worker):
        done = await client.execute_workflow(run.id, wait=True, timeout=20)

    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error
    assert output(done, "a") == {"echo": {"text": "hi ada", "n": 2}, "who": "ada"}
    assert output(done, "b") == {"text": "HI ADA"}
    b = seen["b"]
    assert (b.workflow_id, b.step_id, b.task_type) == (run.id, "b", "text.upper")
    assert b.attempt == 1 and b.retries_left == 0 and b.template_id == "relay"
    assert b.idempotency_key == f"{run.id}/b"
    assert b.params == {"who": "ada"}
    assert b.inputs == {"a": {"echo": {"text": "hi ada", "n": 2}, "who": "ada"}}
    assert b.upstream == b.inputs
    assert type(seen["a"].config["n"]) is int
    assert isinstance(b.deadline, datetime) and b.deadline.tzinfo is not None
    assert isinstance(b.queue_time, datetime)


class UnaryCalls(grpc.aio.UnaryUnaryClientInterceptor):
    """Records the unary methods called on a channel."""

    def __init__(self) -> None:
        self.methods: list[str] = []

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        method = client_call_details.method
        self.methods.append(method.decode() if isinstance(method, bytes) else method)
        return await continuation(client_call_details, request)


async def test_results_travel_on_the_stream_with_their_credit_and_no_call(
    server: SluiceServer, client: WorkflowClient
) -> None:
    calls = UnaryCalls()
    channel = grpc.aio.insecure_channel(server.address, interceptors=[calls])
    # One slot: each next task comes only with the credit a result on the stream frees.
    worker = make_worker(server, channel=channel, concurrency=1)

    @worker.task("echo")
    async def echo(task: Task) -> dict[str, Any]:
        if task.step_id == "c":
            raise NonRetryableError("no paper")
        return {"step": task.step_id}

    tpl = template(
        "three", task_step("a", "echo"), task_step("b", "echo", "a"), task_step("c", "echo", "b")
    )
    run = await client.create_workflow(tpl)
    async with serving(worker):
        done = await client.execute_workflow(run.id, wait=True, timeout=20)

    assert done.status == WorkflowStatus.WORKFLOW_STATUS_FAILED
    assert (output(done, "a"), output(done, "b")) == ({"step": "a"}, {"step": "b"})
    [c] = [s for s in done.steps if s.step_id == "c"]
    assert "no paper" in c.error
    reports = {"/sluice.v1.WorkerService/CompleteTask", "/sluice.v1.WorkerService/FailTask"}
    assert not reports & set(calls.methods)
    assert worker.running == 0


@pytest.mark.parametrize(
    ("fails", "error"),
    [
        (NonRetryableError("card declined"), "card declined"),
        (["not", "a", "dict"], "the handler returned list, not a JSON object"),
    ],
)
async def test_a_non_retryable_failure_fails_the_step_without_retry(
    server: SluiceServer, client: WorkflowClient, fails: object, error: str
) -> None:
    worker = make_worker(server)
    attempts: list[int] = []

    @worker.task("charge")
    async def charge(task: Task) -> Any:
        attempts.append(task.attempt)
        if isinstance(fails, Exception):
            raise fails
        return fails

    retry = {"maxAttempts": 3, "initialBackoff": "0.05s"}
    run = await client.create_workflow(template("pay", task_step("a", "charge", retry=retry)))
    async with serving(worker):
        done = await client.execute_workflow(run.id, wait=True, timeout=20)

    assert done.status == WorkflowStatus.WORKFLOW_STATUS_FAILED
    [a] = done.steps
    assert a.status == StepStatus.STEP_STATUS_FAILED and a.attempt == 1
    assert error in a.error
    assert attempts == [1]


async def test_an_error_type_the_policy_lists_ends_retries_and_shows_in_the_events(
    server: SluiceServer, client: WorkflowClient
) -> None:
    worker = make_worker(server)
    kinds: list[str] = []

    @worker.task("pay-card")
    async def pay(task: Task) -> Any:
        kind = "GatewayBusy" if task.attempt == 1 else "CardDeclined"
        kinds.append(kind)
        raise TaskError(f"{kind} on attempt {task.attempt}", error_type=kind)

    retry = {
        "maxAttempts": 5,
        "initialBackoff": "0.05s",
        "nonRetryableErrorTypes": ["CardDeclined"],
    }
    run = await client.create_workflow(
        template("pay-card", task_step("a", "pay-card", retry=retry))
    )
    async with serving(worker):
        done = await client.execute_workflow(run.id, wait=True, timeout=20)
    events = [e async for e in client.watch(run.id)]

    assert done.status == WorkflowStatus.WORKFLOW_STATUS_FAILED
    assert kinds == ["GatewayBusy", "CardDeclined"]  # two attempts of five
    ends = [
        (e.type, e.attempt, details.get("errorType"), details.get("nonRetryable"))
        for e in events
        if e.step_id == "a" and e.type != EventType.EVENT_TYPE_STEP_STARTED
        for details in [json_format.MessageToDict(e.details)]
    ]
    assert ends == [
        (EventType.EVENT_TYPE_STEP_RETRYING, 1, "GatewayBusy", None),
        (EventType.EVENT_TYPE_STEP_FAILED, 2, "CardDeclined", True),
    ]


async def test_a_plain_error_is_retried_by_the_policy_and_retry_after_sets_the_backoff(
    server: SluiceServer, client: WorkflowClient
) -> None:
    worker = make_worker(server)
    attempts: list[tuple[int, int]] = []

    @worker.task("flaky")
    async def flaky(task: Task) -> dict[str, Any]:
        attempts.append((task.attempt, task.retries_left))
        if task.attempt == 1:
            raise RuntimeError("connection reset")
        if task.attempt == 2:
            raise TaskError("rate limited", retry_after=0.3)
        return {"attempt": task.attempt}

    retry = {"maxAttempts": 3, "initialBackoff": "0.05s"}
    run = await client.create_workflow(template("flaky", task_step("a", "flaky", retry=retry)))
    async with serving(worker):
        done = await client.execute_workflow(run.id, wait=True, timeout=20)

    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error
    assert output(done, "a") == {"attempt": 3}
    assert attempts == [(1, 2), (2, 1), (3, 0)]
    events = [e async for e in client.watch(run.id)]
    retrying = [e for e in events if e.type == EventType.EVENT_TYPE_STEP_RETRYING]
    assert [e.details["error"] for e in retrying] == [
        "RuntimeError: connection reset",
        "rate limited",
    ]
    # The policy's backoff, then the handler's own.
    assert [e.details["delaySeconds"] for e in retrying] == pytest.approx([0.05, 0.3])


async def test_no_more_than_concurrency_handlers_run_at_once(
    server: SluiceServer, client: WorkflowClient
) -> None:
    n = 2
    worker = make_worker(server, concurrency=n)
    active, most, started = 0, 0, 0
    release, reached = asyncio.Event(), asyncio.Event()

    @worker.task("slow")
    async def slow(task: Task) -> dict[str, Any]:
        nonlocal active, most, started
        active, started = active + 1, started + 1
        most = max(most, active)
        if started == n:
            reached.set()
        try:
            await release.wait()
        finally:
            active -= 1
        return {}

    tpl = template("fan", *(task_step(f"s{i}", "slow") for i in range(3 * n)))
    run = await client.create_workflow(tpl)
    finished = asyncio.create_task(client.execute_workflow(run.id, wait=True, timeout=20))
    async with serving(worker):
        async with asyncio.timeout(10):
            await reached.wait()

        # Every other task waits in the queue, and the worker holds no more than it runs.
        async def held_n() -> bool:
            stats = await queue(client, "slow")
            return stats.active == n and stats.queued == 2 * n

        await until(held_n)
        assert (started, active) == (n, n)
        release.set()
        done = await finished

    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error
    assert started == 3 * n
    assert most == n


async def test_a_graceful_stop_finishes_running_handlers_and_reports_them(
    server: SluiceServer, client: WorkflowClient
) -> None:
    worker = make_worker(server, concurrency=4)
    started, release = asyncio.Event(), asyncio.Event()

    @worker.task("slow")
    async def slow(task: Task) -> dict[str, Any]:
        started.set()
        await release.wait()
        return {"finished": task.step_id}

    first = await client.create_workflow(template("one", task_step("a", "slow")))
    finished = asyncio.create_task(client.execute_workflow(first.id, wait=True, timeout=20))
    run = asyncio.create_task(worker.run())
    async with asyncio.timeout(10):
        await started.wait()
    assert (await queue(client, "slow")).workers == 1
    stopping = asyncio.create_task(worker.stop(grace=10))

    async def half_closed() -> bool:  # the server knows: no task goes to this worker now
        return (await queue(client, "slow")).workers == 0

    await until(half_closed)
    # The worker takes no new task now, though it has free slots...
    second = await client.create_workflow(template("two", task_step("a", "slow")))
    await client.execute_workflow(second.id)

    async def queued() -> bool:
        return (await queue(client, "slow")).queued == 1

    await until(queued)
    # ...and waits for the handler it runs.
    assert not stopping.done() and not run.done()
    release.set()
    async with asyncio.timeout(10):
        await stopping
        await run
    done = await finished
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error
    assert output(done, "a") == {"finished": "a"}
    assert (await queue(client, "slow")).queued == 1  # the second run's task still waits


async def test_cancelling_the_run_cancels_the_handler_at_its_next_heartbeat(
    server: SluiceServer, client: WorkflowClient
) -> None:
    worker = make_worker(server)
    started, cancelled = asyncio.Event(), asyncio.Event()

    @worker.task("forever")
    async def forever(task: Task) -> dict[str, Any]:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return {}

    run = await client.create_workflow(template("stuck", task_step("a", "forever")))
    await client.execute_workflow(run.id)
    with capture_logs() as logged:
        async with serving(worker):
            async with asyncio.timeout(10):
                await started.wait()
            stopped = await client.cancel_workflow(run.id)
            async with asyncio.timeout(10):
                await cancelled.wait()

            async def slot_free() -> bool:
                return worker.running == 0

            await until(slot_free)
    assert stopped.status == WorkflowStatus.WORKFLOW_STATUS_CANCELLED
    # A heartbeat said so (not a refused result: nothing was reported).
    worker_lines = [line["event"] for line in logged if line.get("step_id") == "a"]
    assert "task cancelled by its run; handler stopped" in worker_lines
    assert not any(line.startswith("task result") for line in worker_lines)
    final = await client.get_workflow(run.id)
    assert final.status == WorkflowStatus.WORKFLOW_STATUS_CANCELLED


async def test_the_example_worker_serves_the_example_template_and_stops_on_sigterm(
    server: SluiceServer, client: WorkflowClient
) -> None:
    env = {**os.environ, "SLUICE_TOKEN": "", "PYTHONUNBUFFERED": "1"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "examples" / "worker.py"),
        "--address", server.address, "--task-type", "echo", "--task-type", "upper",
        "--concurrency", "2",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        # The README's demo: examples/workers.json, served by this worker.
        tpl = json.loads((ROOT / "examples" / "workers.json").read_text(encoding="utf-8"))
        run = await client.create_workflow(tpl, {"text": "hi"})
        done = await client.execute_workflow(run.id, wait=True, timeout=30)
        assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error
        assert output(done, "echo") == {"echo": {"text": "hi"}, "inputs": {}, "attempt": 1}
        assert output(done, "shout") == {"text": "HI"}
        assert output(done, "format")["result"] == "HI"
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            printed, _ = await process.communicate()
        assert process.returncode == 0, printed.decode()
        assert b"worker stopped" in printed
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def readme_blocks() -> list[str]:
    """The ```python blocks of the Python client README's "Workers" section."""
    text = (ROOT / "clients" / "python" / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Workers\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```python\n(.*?)^```", section, flags=re.M | re.S)


async def test_the_readme_worker_serves_the_readme_template(
    server: SluiceServer, client: WorkflowClient, tmp_path: Path
) -> None:
    worker_code, template_code = readme_blocks()[:2]
    script = tmp_path / "readme_worker.py"
    script.write_text(worker_code)
    env = {**os.environ, "SLUICE_ADDRESS": server.address, "SLUICE_TOKEN": ""}
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        # The template block as written, in a function so its `await`s run here.
        namespace: dict[str, Any] = {}
        body = textwrap.indent(template_code + "return locals()\n", "    ")
        exec(f"async def block(client):\n{body}", namespace)
        ran = await namespace["block"](client)
        done = ran["done"]
        assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error
        assert output(done, "greet") == {"greeting": "hello ADA"}
        assert [s.attempt for s in done.steps] == [1, 2]
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            printed, _ = await process.communicate()
        assert process.returncode == 0, printed.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
