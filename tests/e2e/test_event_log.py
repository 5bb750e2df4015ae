"""The event log is the truth: replaying a run's stored events gives its stored state."""

from __future__ import annotations

from sluice.client import WorkflowClient
from sluice.engine.model import Event, Run
from sluice.engine.transitions import apply
from sluice.server import SluiceServer
from tests.support.templates import approval_gate, step, template, threshold_gate


def replay(stored: Run, events: list[Event]) -> Run:
    run = Run.new(
        id=stored.id, owner=stored.owner, template=stored.template, params=stored.params,
        now=stored.created_at,
    )  # fmt: skip
    for event in events:
        applied = apply(run, event)
        assert (applied.sequence, applied.run_status) == (event.sequence, event.run_status)
    return run


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
    stored = await server.store.get_run("local", run.id)
    assert stored is not None
    events = await server.store.list_events(run.id, 0, 10_000)
    assert [e.sequence for e in events] == list(range(1, stored.last_sequence + 1))

    replayed = replay(stored, events)
    assert replayed.status == stored.status
    assert replayed.steps == stored.steps
    assert replayed.gates == stored.gates
    assert (replayed.error, replayed.options) == (stored.error, stored.options)
