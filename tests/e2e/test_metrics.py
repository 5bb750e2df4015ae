"""Prometheus metrics on SLUICE_METRICS_LISTEN: scraped over HTTP after real runs, they moved by
the right amounts, and no label holds a run id."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections import Counter
from collections.abc import Callable

import pytest

from sluice.client import (
    GateStatus,
    GateType,
    StepStatus,
    Task,
    Worker,
    WorkflowClient,
    WorkflowStatus,
)
from sluice.client.errors import NotFoundError
from tests.conftest import ServerFactory
from tests.e2e.test_template_library import RUNS, run_to_rest
from tests.support.scrape import Samples, scrape, value
from tests.support.templates import step, template


async def test_runs_steps_gates_and_waits_are_counted_without_run_ids(
    start_server: ServerFactory,
) -> None:
    server = await start_server(metrics_listen="127.0.0.1:0")
    assert server.metrics_address
    retry = {"maxAttempts": 2, "initialBackoff": "0.01s"}
    tpl = template(
        "metered",
        step("a", config={"output": {"ok": True}}),
        step("nap", "wait", "a", config={"duration": "0.05s"}),
        step("flaky", "flaky", "nap", config={"failures": 1}, retry=retry),
        step("never", "sleep", "a", when="params.go == true"),
        gates=[{"id": "ok", "stepId": "a", "action": "GATE_ACTION_PAUSE",
                "validation": {"expression": "output.ok == true"}}],
        params=[{"name": "go", "defaultValue": False}],
    )  # fmt: skip
    async with WorkflowClient(server.address) as client:
        before = await scrape(server.metrics_address)
        runs = [await client.create_workflow(tpl) for _ in range(2)]
        for run in runs:
            done = await client.execute_workflow(run.id, wait=True, timeout=20)
            assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error
    after = await scrape(server.metrics_address)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("sluice_workflow_runs_started_total", template="metered") == 2
    assert moved("sluice_workflow_runs_ended_total", template="metered", status="COMPLETED") == 2
    assert moved("sluice_step_attempt_duration_seconds_count", step_type="sleep",
                 outcome="completed") == 2  # fmt: skip
    # The flaky step: a retried attempt, then a completed one, in each run.
    assert moved("sluice_step_attempt_duration_seconds_count", step_type="flaky",
                 outcome="retrying") == 2  # fmt: skip
    assert moved("sluice_step_attempt_duration_seconds_count", step_type="flaky",
                 outcome="completed") == 2  # fmt: skip
    assert moved("sluice_steps_skipped_total", step_type="sleep") == 2
    assert moved("sluice_gate_outcomes_total", gate_type="validation", outcome="passed") == 2
    assert moved("sluice_timer_lateness_seconds_count") == 2
    assert moved("sluice_step_attempt_duration_seconds_sum", step_type="wait",
                 outcome="completed") >= 2 * 0.05  # fmt: skip

    assert_no_run_ids(after, {run.id for run in runs})


async def test_no_metrics_endpoint_unless_configured(start_server: ServerFactory) -> None:
    server = await start_server()
    assert server.metrics_address == ""


async def test_each_predefined_template_moves_its_metrics(start_server: ServerFactory) -> None:
    server = await start_server(metrics_listen="127.0.0.1:0")
    async with WorkflowClient(server.address) as client:
        before = await scrape(server.metrics_address)
        done = [
            await run_to_rest(client, template_id, params, auto_approve=True)
            for template_id, params in RUNS.items()
        ]
        with pytest.raises(NotFoundError):
            await client.get_workflow(str(uuid.uuid4()))
        # A stream, open while the gauge is read, then closed by its client.
        watching = client.watch(done[0].id, follow=True)
        async for _ in watching:
            break
        during = await scrape(server.metrics_address)
        await watching.aclose()
        # The server sees the stream end once the client's cancel arrives.
        after = await until_scraped(server.metrics_address, lambda s: grpc_handled(
            s, "WatchWorkflow", "CANCELLED") == 1)  # fmt: skip

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # What the finished runs say happened, counted by hand.
    completed: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    gates: Counter[tuple[str, str]] = Counter()
    for run in done:
        assert moved("sluice_workflow_runs_started_total", template=run.template_id) == 1
        assert moved("sluice_workflow_runs_ended_total", template=run.template_id,
                     status="COMPLETED") == 1  # fmt: skip
        for s in run.steps:
            assert s.attempt <= 1, "no retries expected: the counts below assume one attempt"
            if s.status == StepStatus.STEP_STATUS_COMPLETED:
                completed[s.type] += 1
            elif s.status == StepStatus.STEP_STATUS_SKIPPED:
                skipped[s.type] += 1
        for g in run.gate_results:
            if g.status == GateStatus.GATE_STATUS_SKIPPED:
                continue  # its step never ran: no outcome
            gate_type = GateType.Name(g.type).removeprefix("GATE_TYPE_").lower()
            gates[(gate_type, GateStatus.Name(g.status).removeprefix("GATE_STATUS_").lower())] += 1
    assert completed["wait"] and skipped and gates, "the templates exercise waits, skips, gates"
    for step_type, count in completed.items():
        assert moved("sluice_step_attempt_duration_seconds_count", step_type=step_type,
                     outcome="completed") == count, step_type  # fmt: skip
        # Every built-in handler that ran waited for its start, and is timed once; a wait
        # step runs no handler: its timer is measured instead.
        started = 0 if step_type == "wait" else count
        assert moved("sluice_step_start_delay_seconds_count", step_type=step_type) == started
    for step_type, count in skipped.items():
        assert moved("sluice_steps_skipped_total", step_type=step_type) == count, step_type
    for (gate_type, outcome), count in gates.items():
        assert moved("sluice_gate_outcomes_total", gate_type=gate_type,
                     outcome=outcome) == count, (gate_type, outcome)  # fmt: skip
    assert moved("sluice_timer_lateness_seconds_count") == completed["wait"]
    # The waits were until times already past, or a second: none was an hour late.
    assert moved("sluice_timer_lateness_seconds_sum") < completed["wait"] * 1.0

    # The gRPC server metrics, by method and code; streams counted but not timed.
    for method in ("CreateWorkflow", "ExecuteWorkflow"):
        assert grpc_handled(after, method, "OK") - grpc_handled(before, method, "OK") == 8
        assert moved("grpc_server_handling_seconds_count", grpc_type="unary",
                     grpc_service=SERVICE, grpc_method=method) == 8  # fmt: skip
    assert grpc_handled(after, "GetWorkflow", "NOT_FOUND") == 1
    assert not [labels for name, labels in after
                if name.startswith("grpc_server_handling") and ("grpc_method", "WatchWorkflow")
                in labels]  # fmt: skip
    assert value(during, "sluice_watch_streams") == 1
    assert value(after, "sluice_watch_streams") == 0

    batches = moved("sluice_store_commit_batch_writes_count")
    assert batches > 0
    assert moved("sluice_store_commit_duration_seconds_count") == batches
    # Each run is created, then changed at least once per step: that many writes committed.
    assert moved("sluice_store_commit_batch_writes_sum") >= sum(len(r.steps) for r in done)
    assert_no_run_ids(after, {run.id for run in done})


async def test_queues_and_active_runs_are_read_when_scraped(start_server: ServerFactory) -> None:
    server = await start_server(metrics_listen="127.0.0.1:0")
    tpl = template("queued", step("t", "task", taskType="metered.echo"))
    async with WorkflowClient(server.address) as client:
        run = await client.create_workflow(tpl)
        await client.execute_workflow(run.id)
        waiting = await until_scraped(server.metrics_address, lambda s: value(
            s, "sluice_task_queue_depth", task_type="metered.echo") == 1)  # fmt: skip
        assert value(waiting, "sluice_task_queue_in_progress", task_type="metered.echo") == 0
        assert value(waiting, "sluice_task_queue_oldest_age_seconds", task_type="metered.echo") > 0
        assert value(waiting, "sluice_workflow_runs_active", template="queued",
                     status="RUNNING") == 1  # fmt: skip

        worker = Worker(server.address, token="", worker_id="metered", heartbeat_interval=0.1)

        @worker.task("metered.echo")
        async def echo(task: Task) -> dict[str, object]:
            return {"ok": True}

        serving = asyncio.create_task(worker.run())
        try:
            done = await client.execute_workflow(run.id, wait=True, timeout=20)
        finally:
            await worker.stop(grace=5)
            await asyncio.wait_for(serving, 10)
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error
    after = await scrape(server.metrics_address)
    assert (
        value(after, "sluice_task_schedule_to_start_seconds_count", task_type="metered.echo") == 1
    )
    assert value(after, "sluice_task_queue_depth", task_type="metered.echo") == 0
    assert value(after, "sluice_workflow_runs_active", template="queued", status="RUNNING") == 0


SERVICE = "sluice.v1.WorkflowService"


def grpc_handled(samples: Samples, method: str, code: str) -> float:
    return value(samples, "grpc_server_handled_total", grpc_type=(
        "server_stream" if method == "WatchWorkflow" else "unary"), grpc_service=SERVICE,
        grpc_method=method, grpc_code=code)  # fmt: skip


async def until_scraped(address: str, condition: Callable[[Samples], bool]) -> Samples:
    """Scrape until `condition` holds (a state the server reaches on its own), for 10 s."""
    deadline = asyncio.get_running_loop().time() + 10
    while not condition(samples := await scrape(address)):
        assert asyncio.get_running_loop().time() < deadline, "the metrics never got there"
        await asyncio.sleep(0.02)
    return samples


def assert_no_run_ids(samples: Samples, run_ids: set[str]) -> None:
    uuid_like = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-")
    for _, labels in samples:
        for _, label_value in labels:
            assert label_value not in run_ids and not uuid_like.match(label_value)
