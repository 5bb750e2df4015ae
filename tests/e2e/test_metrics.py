"""Prometheus metrics on SLUICE_METRICS_LISTEN: scraped over HTTP after real runs, they moved by
the right amounts, and no label holds a run id."""

from __future__ import annotations

import re

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from sluice.client import WorkflowClient, WorkflowStatus
from tests.conftest import ServerFactory
from tests.support.templates import step, template


async def scrape(address: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    # Asynchronously: the server answers on this test's event loop.
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{address}/metrics") as reply,
    ):
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = await reply.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


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

    run_ids = {run.id for run in runs}
    uuid = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-")
    for _, labels in after:
        for _, label_value in labels:
            assert label_value not in run_ids and not uuid.match(label_value)


async def test_no_metrics_endpoint_unless_configured(start_server: ServerFactory) -> None:
    server = await start_server()
    assert server.metrics_address == ""
