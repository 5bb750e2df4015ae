"""The event log is the truth: replaying a run's stored events gives its stored state."""

from __future__ import annotations

from sluice.client import WorkflowClient
from sluice.server import SluiceServer
from tests.support.replay import assert_log_matches_state
from tests.support.templates import approval_gate, step, template, threshold_gate


async def test_replaying_the_events_gives_the_stored_run(
    server: SluiceServer, client: WorkflowClient
) -> None:
    tpl = template(
        "replayed",
        step("a", config={"output": {"qualityScore": 0.5}}),
        step("b", "flaky", "a", config={"failures": 1}, retry={"maxAttempts": 2, "initialBackoff": "0.01s"}),
        step("c", "fail", "a", optional=True),
        step("d", "sleep", "b"),
        gates=[threshold_gate("q", "a", "PAUSE"), approval_gate("ok", "b")],
    )  # fmt: skip
    run = await client.create_workflow(tpl)
    await client.execute_workflow(run.id, wait=True, timeout=10)
    await client.resume_workflow(run.id, wait=True, timeout=10)
    await client.approve_gate(run.id, "ok", wait=True, timeout=10)

    assert server.store is not None
    events = await assert_log_matches_state(server.store, "local", run.id)
    assert len(events) > 15
