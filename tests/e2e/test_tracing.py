"""Traces: a real server over real gRPC with the OpenTelemetry SDK's in-memory exporter behind
its tracing, and real runs. One trace per run, rooted at the run's span, with a span per step
attempt under it; webhooks, workers and log lines carry the attempt's span; a restart keeps
the trace; and without the OTEL_* variables nothing is traced at all."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import DEFAULT_ON
from structlog.testing import capture_logs

from sluice.client import Task, Worker, WorkflowClient, WorkflowStatus
from sluice.engine.handlers import StepContext, StepResult
from sluice.observability.logs import add_trace_ids
from sluice.observability.trace_ids import run_span
from sluice.observability.tracing import Tracing
from sluice.server import SluiceServer
from tests.conftest import ServerFactory
from tests.support.handlers import Calls
from tests.support.process import ROOT, ServerProcess, _clean_environment, exit_of
from tests.support.receiver import Receiver, running_receiver
from tests.support.templates import step, template, validation_gate
from tests.support.workers import finished

RETRY = {"maxAttempts": 2, "initialBackoff": "0.01s"}


class Traced:
    """A server's tracing with the SDK's in-memory exporter behind it."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        # The SDK's default sampler, whatever OTEL_TRACES_SAMPLER says where the tests run.
        self.tracing = Tracing([SimpleSpanProcessor(self.exporter)], sampler=DEFAULT_ON)

    @property
    def spans(self) -> Sequence[ReadableSpan]:
        return self.exporter.get_finished_spans()

    def of_run(self, run_id: str) -> list[ReadableSpan]:
        return [s for s in self.spans if (s.attributes or {}).get("sluice.run.id") == run_id]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as state:
        yield state


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def parent_id(span: ReadableSpan) -> int:
    return span.parent.span_id if span.parent is not None else 0


async def stored_trace(server: SluiceServer, run_id: str) -> tuple[int, int]:
    """The run's trace id and span id as the store has them."""
    assert server.store is not None
    run = await server.store.get_run("local", run_id)
    assert run is not None
    stored = run_span(run.trace_context)
    assert stored is not None, run.trace_context
    return stored.trace_id, stored.span_id


def steps(spans: Sequence[ReadableSpan]) -> dict[tuple[str, int], ReadableSpan]:
    found = {
        (attrs(s)["sluice.step.id"], attrs(s)["sluice.step.attempt"]): s
        for s in spans
        if s.name.startswith("step ")
    }
    assert len(found) == len([s for s in spans if s.name.startswith("step ")]), "one per attempt"
    return found


async def test_a_run_is_one_trace_rooted_at_its_span_with_a_span_per_attempt(
    start_server: ServerFactory, receiver: Receiver
) -> None:
    traced = Traced()
    server = await start_server(tracing=traced.tracing, webhook_allow=receiver.allow)
    tpl = template(
        "diamond",
        step("a", config={"output": {"ok": True}}),
        step("b", "flaky", "a", config={"failures": 1}, retry=RETRY),
        step("hook", "notify", "a", config={"webhookUrl": receiver.url("/hook")}),
        step("d", "sleep", "b", "hook"),
        gates=[validation_gate("ok", "a", "PAUSE", "output.ok == true")],
    )
    async with WorkflowClient(server.address) as client:
        created = await client.create_workflow(tpl)
        done = await client.execute_workflow(created.id, wait=True, timeout=20)
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error

    trace_id, run_span_id = await stored_trace(server, created.id)
    spans = traced.of_run(created.id)
    # One trace, one root: the run's span, with the ids stored as the run was created.
    assert {s.context.trace_id for s in spans} == {trace_id}
    [root] = [s for s in spans if s.parent is None]
    assert (root.name, root.context.span_id) == ("run diamond", run_span_id)
    assert attrs(root)["sluice.run.status"] == "COMPLETED"
    assert root.start_time is not None and root.end_time is not None
    # Every step attempt is a child of it, within its time; the retried step has two.
    attempts = steps(spans)
    assert set(attempts) == {("a", 1), ("b", 1), ("b", 2), ("hook", 1), ("d", 1)}
    for span in attempts.values():
        assert parent_id(span) == run_span_id
        assert root.start_time <= (span.start_time or 0) <= (span.end_time or 0) <= root.end_time
    assert [attrs(attempts[("b", n)])["sluice.step.outcome"] for n in (1, 2)] == [
        "retrying",
        "completed",
    ]
    assert attempts[("b", 1)].context.span_id != attempts[("b", 2)].context.span_id
    assert not attempts[("b", 1)].status.is_ok and "transient failure" in str(
        attempts[("b", 1)].status.description
    )
    assert attrs(attempts[("hook", 1)])["sluice.step.type"] == "notify"
    # The gate's decision hangs from the run too.
    [gate] = [s for s in spans if s.name == "gate ok"]
    assert (parent_id(gate), attrs(gate)["sluice.gate.outcome"]) == (run_span_id, "passed")
    # The webhook's receiver joins the trace as a child of the hook step's attempt.
    [request] = receiver.requests
    hook = attempts[("hook", 1)].context
    assert request.headers["traceparent"] == f"00-{trace_id:032x}-{hook.span_id:016x}-03"
    # The run links to the call that created it, whose span the gRPC instrumentation made.
    [create_call] = [s for s in traced.spans if s.name.endswith("/CreateWorkflow")]
    assert [link.context.span_id for link in root.links] == [create_call.context.span_id]
    assert create_call.context.trace_id != trace_id
    assert attrs(create_call)["rpc.method"] == "CreateWorkflow"


@contextlib.asynccontextmanager
async def serving(worker: Worker) -> AsyncIterator[None]:
    running = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        await worker.stop(grace=5)
        async with asyncio.timeout(10):
            await running


async def test_a_workers_span_joins_the_run_trace(start_server: ServerFactory) -> None:
    traced = Traced()
    server = await start_server(tracing=traced.tracing)
    # The worker is another process as far as tracing goes: its own provider and exporter.
    worker_spans = InMemorySpanExporter()
    worker_provider = TracerProvider()
    worker_provider.add_span_processor(SimpleSpanProcessor(worker_spans))
    worker = Worker(
        server.address, token="", heartbeat_interval=0.1, tracer_provider=worker_provider
    )
    seen: list[Task] = []

    @worker.task("shout")
    async def shout(task: Task) -> dict[str, Any]:
        seen.append(task)
        return {"text": "HELLO"}

    tpl = template("remote", step("work", "task", taskType="shout"), step("after", "sleep", "work"))
    async with serving(worker), WorkflowClient(server.address) as client:
        created = await client.create_workflow(tpl)
        done = await client.execute_workflow(created.id, wait=True, timeout=20)
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error

    trace_id, run_span_id = await stored_trace(server, created.id)
    attempt = steps(traced.of_run(created.id))[("work", 1)]
    assert parent_id(attempt) == run_span_id
    assert attrs(attempt)["sluice.task.type"] == "shout"
    [task] = seen
    assert task.traceparent == f"00-{trace_id:032x}-{attempt.context.span_id:016x}-03"
    [handled] = worker_spans.get_finished_spans()
    assert handled.name == "task shout" and handled.kind is trace.SpanKind.CONSUMER
    assert handled.context.trace_id == trace_id
    assert parent_id(handled) == attempt.context.span_id
    assert attrs(handled)["sluice.run.id"] == created.id
    worker_provider.shutdown()


async def test_a_run_resumed_after_a_restart_keeps_its_trace(
    start_server: ServerFactory, calls: Calls
) -> None:
    first = Traced()
    server = await start_server(tracing=first.tracing)
    tpl = template("resumed", step("a"), step("b", "latch", "a", config={"latch": "b"}))
    async with WorkflowClient(server.address) as client:
        created = await client.create_workflow(tpl)
        await client.execute_workflow(created.id)
        async with asyncio.timeout(10):
            await calls.started[f"{created.id}/b"].wait()
    await server.stop()  # b's attempt is cut off: it stays RUNNING in the store
    assert set(steps(first.of_run(created.id))) == {("a", 1)}

    calls.started[f"{created.id}/b"].clear()
    second = Traced()
    again = await start_server(tracing=second.tracing)  # the same SQLite file
    trace_id, run_span_id = await stored_trace(again, created.id)
    assert {s.context.trace_id for s in first.of_run(created.id)} == {trace_id}
    async with asyncio.timeout(10):
        await calls.started[f"{created.id}/b"].wait()
    calls.open("b")
    async with WorkflowClient(again.address) as client:
        done = await finished(client, created.id)
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error

    spans = second.of_run(created.id)
    assert {s.context.trace_id for s in spans} == {trace_id}
    [root] = [s for s in spans if s.parent is None]
    assert root.context.span_id == run_span_id
    # It began as the run was created, before the first server ran step a.
    assert (root.start_time or 0) <= (steps(first.of_run(created.id))[("a", 1)].start_time or 0)
    attempts = steps(spans)
    assert set(attempts) == {("b", 1), ("b", 2)}
    assert [attrs(attempts[("b", n)])["sluice.step.outcome"] for n in (1, 2)] == [
        "interrupted",
        "completed",
    ]
    assert {parent_id(s) for s in attempts.values()} == {run_span_id}


class Chatty:
    """Logs a line while it runs, as a plugin's handler would."""

    async def run(self, ctx: StepContext) -> StepResult:
        structlog.get_logger("tests.chatty").info("working on it", step_id=ctx.step_id)
        return StepResult({})


async def test_a_line_logged_during_a_step_names_its_trace_and_span(
    start_server: ServerFactory,
) -> None:
    traced = Traced()
    server = await start_server(tracing=traced.tracing)
    server.registry.register("chatty", Chatty())
    tpl = template("chat", step("talk", "chatty"), step("fail", "fail", "talk", optional=True))
    with capture_logs(processors=[add_trace_ids]) as lines:
        async with WorkflowClient(server.address) as client:
            created = await client.create_workflow(tpl)
            done = await client.execute_workflow(created.id, wait=True, timeout=20)
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error

    trace_id, run_span_id = await stored_trace(server, created.id)
    attempts = steps(traced.of_run(created.id))
    [working] = [line for line in lines if line["event"] == "working on it"]
    # The handler's line: under the attempt's span (the processor reads the current span).
    assert working["trace_id"] == f"{trace_id:032x}"
    assert working["span_id"] == f"{attempts[('talk', 1)].context.span_id:016x}"
    # The run log's lines name the run's trace too, and the attempt a step line is about.
    [failed] = [line for line in lines if line["event"] == "step failed"]
    assert failed["trace_id"] == f"{trace_id:032x}"
    assert failed["span_id"] == f"{attempts[('fail', 1)].context.span_id:016x}"
    [finished] = [line for line in lines if line["event"] == "workflow finished"]
    assert (finished["trace_id"], finished["span_id"]) == (
        f"{trace_id:032x}",
        f"{run_span_id:016x}",
    )


async def test_without_otel_variables_nothing_is_traced(
    start_server: ServerFactory, receiver: Receiver
) -> None:
    server = await start_server(webhook_allow=receiver.allow)
    server.registry.register("chatty", Chatty())
    assert server.tracing is None
    worker = Worker(server.address, token="", heartbeat_interval=0.1)
    seen: list[Task] = []

    @worker.task("shout")
    async def shout(task: Task) -> dict[str, Any]:
        seen.append(task)
        return {}

    tpl = template(
        "untraced",
        step("talk", "chatty"),
        step("hook", "notify", "talk", config={"webhookUrl": receiver.url()}),
        step("work", "task", "talk", taskType="shout"),
    )
    with capture_logs(processors=[add_trace_ids]) as lines:
        async with serving(worker), WorkflowClient(server.address) as client:
            created = await client.create_workflow(tpl)
            done = await client.execute_workflow(created.id, wait=True, timeout=20)
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error

    # The process's provider is OpenTelemetry's no-op default: nothing set one up.
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert not trace.get_tracer("probe").start_span("probe").is_recording()
    assert server.store is not None
    stored = await server.store.get_run("local", created.id)
    assert stored is not None and stored.trace_context == {}
    [request] = receiver.requests
    assert "traceparent" not in request.headers
    [task] = seen
    assert task.trace_context == {} and task.traceparent is None
    assert lines and not [line for line in lines if "trace_id" in line]


def console_spans(output: bytes) -> list[dict[str, Any]]:
    """The spans a console exporter printed: JSON objects one after another."""
    text, spans, at = output.decode(), [], 0
    decoder = json.JSONDecoder()
    while (at := text.find("{", at)) != -1:
        span, at = decoder.raw_decode(text, at)
        spans.append(span)
    return spans


async def test_otel_variables_turn_tracing_on_in_a_server_process(tmp_path: Path) -> None:
    env = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "sluice-under-test"}
    server = ServerProcess(
        f"sqlite+aiosqlite:///{tmp_path / 'sluice.db'}", tmp_path / "ledger", "127.0.0.1:0",
        env=env,
    )  # fmt: skip
    await server.start()
    try:
        tpl = template("traced", step("a", "work"), step("b", "work", "a"))
        async with WorkflowClient(server.address) as client:
            created = await client.create_workflow(tpl)
            done = await client.execute_workflow(created.id, wait=True, timeout=20)
        assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error
    finally:
        assert await server.terminate() == 0  # its batch of spans is exported on the way out
    finished = next(line for line in server.log_lines() if line["message"] == "workflow finished")
    spans = console_spans(bytes(server.stdout))
    by_name = {span["name"]: span for span in spans}
    assert {"run traced", "step a", "step b", "/sluice.v1.WorkflowService/CreateWorkflow"} <= set(
        by_name
    )
    root = by_name["run traced"]
    assert root["context"]["trace_id"] == f"0x{finished['trace_id']}"
    assert root["parent_id"] is None
    assert by_name["step b"]["parent_id"] == root["context"]["span_id"]
    assert root["resource"]["attributes"]["service.name"] == "sluice-under-test"


async def test_an_exporter_that_is_not_there_stops_the_server_with_one_line(
    tmp_path: Path,
) -> None:
    exited = await exit_of(
        ("sluice.server",),
        {
            **_clean_environment(),
            "PYTHONPATH": str(ROOT),
            "SLUICE_LISTEN": "127.0.0.1:0",
            "SLUICE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'sluice.db'}",
            "OTEL_TRACES_EXPORTER": "jaegerx",
        },
    )
    assert exited.code == 2, exited.stderr
    [line] = exited.lines
    assert "OTEL_TRACES_EXPORTER: no span exporter 'jaegerx' is installed" in line
    assert not (tmp_path / "sluice.db").exists()  # refused before touching a database
