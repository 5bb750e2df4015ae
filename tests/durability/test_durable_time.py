"""Waits that survive a crash: a wait step wakes at its stored time and an approval times out at
its deadline, also when the server was killed (SIGKILL) during the wait and started again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.protobuf import json_format

from sluice.client import EventType, GateStatus, StepStatus, WorkflowClient, WorkflowStatus
from sluice.store.factory import open_store
from tests.support.process import ServerProcess
from tests.support.templates import step, template


@pytest.fixture
async def servers(database_url: str, tmp_path: Path) -> AsyncIterator[list[ServerProcess]]:
    """Servers started with `start(servers)`, one at a time; killed at the end."""
    started: list[ServerProcess] = []
    yield started
    for server in started:
        await server.close()


async def start(servers: list[ServerProcess], database_url: str, tmp_path: Path) -> ServerProcess:
    # Port 0: the server picks its own (clients here connect to each server's own address).
    server = await ServerProcess(database_url, tmp_path / "ledger.jsonl", "127.0.0.1:0").start()
    servers.append(server)
    return server


def at(event: object) -> datetime:
    return event.time.ToDatetime(UTC)  # type: ignore[attr-defined,no-any-return]


async def test_content_to_social_posts_at_the_slot_after_a_kill_during_the_wait(
    servers: list[ServerProcess], database_url: str, tmp_path: Path
) -> None:
    first = await start(servers, database_url, tmp_path)
    slot = (datetime.now(UTC) + timedelta(seconds=8)).replace(microsecond=0)
    params = {"topic": "Open house", "publishAt": slot.isoformat(), "waitForSlot": True}
    async with WorkflowClient(first.address) as client:
        run = await client.create_workflow("content-to-social", params)
        await client.execute_workflow(run.id, auto_approve=True)
        async for event in client.watch(run.id):
            if event.type == EventType.EVENT_TYPE_STEP_STARTED and event.step_id == "wait-for-slot":
                wake = json_format.MessageToDict(event.details)["wakeAt"]
                break
        waiting = await client.get_workflow(run.id)
    assert datetime.fromisoformat(wake) == slot
    [wait] = [s for s in waiting.steps if s.step_id == "wait-for-slot"]
    assert wait.status == StepStatus.STEP_STATUS_RUNNING
    assert wait.wake_time.ToDatetime(UTC) == slot  # visible as a waiting step with its time

    await first.kill()
    second = await start(servers, database_url, tmp_path)
    restarted = datetime.now(UTC)
    assert restarted < slot, "the restart came after the slot: the test proves nothing"
    async with WorkflowClient(second.address) as client:
        events = [e async for e in client.watch(run.id)]
        done = await client.get_workflow(run.id)

    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error
    posts = [e for e in events if e.step_id == "post-content"
             and e.type == EventType.EVENT_TYPE_STEP_STARTED]  # fmt: skip
    woke = [e for e in events if e.step_id == "wait-for-slot"
            and e.type == EventType.EVENT_TYPE_STEP_COMPLETED]  # fmt: skip
    assert len(posts) == 1 and len(woke) == 1, "the post happened once"
    # At the slot: not at the restart, and not much after the slot either.
    assert slot <= at(woke[0]) <= at(posts[0]) < slot + timedelta(seconds=5)
    store = await open_store(database_url)
    try:
        assert [r["kind"] for r in await store.list_outbox(run.id)] == ["post"]
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("timeout", "restart"),
    [
        (2, ""),
        # Killed at once: the deadline may pass before another server has the run (a
        # takeover on PostgreSQL waits for the dead server's lease to expire): it acts then.
        (2, "kill"),
        # Time enough for the new server to hold the run first: its timer acts at the deadline.
        (8, "kill"),
    ],
    ids=["same-server", "killed", "killed-then-back-before-the-deadline"],
)
async def test_an_approval_with_a_timeout_rejects_at_the_deadline(
    servers: list[ServerProcess], database_url: str, tmp_path: Path, timeout: int, restart: str
) -> None:
    tpl = template(
        "publish-by-deadline",
        step("draft", "work"),
        step("publish", "work", "draft"),
        gates=[{"id": "sign-off", "stepId": "draft", "approval": {"timeout": f"{timeout}s"}}],
    )
    server = await start(servers, database_url, tmp_path)
    async with WorkflowClient(server.address) as client:
        run = await client.create_workflow(tpl)
        paused = await client.execute_workflow(run.id, wait=True, timeout=20)
    assert paused.status == WorkflowStatus.WORKFLOW_STATUS_PAUSED
    [gate] = paused.gate_results
    assert gate.status == GateStatus.GATE_STATUS_AWAITING_APPROVAL
    deadline = gate.deadline.ToDatetime(UTC)
    waited = deadline - paused.update_time.ToDatetime(UTC)
    assert timedelta(seconds=timeout - 0.5) < waited <= timedelta(seconds=timeout)

    back = deadline
    if restart:
        await server.kill()
        server = await start(servers, database_url, tmp_path)
        back = max(deadline, datetime.now(UTC))
        if timeout > 2:
            assert datetime.now(UTC) < deadline, "the restart came after the deadline"
    async with WorkflowClient(server.address) as client:
        events = [e async for e in client.watch(run.id)]
        done = await client.get_workflow(run.id)

    assert done.status == WorkflowStatus.WORKFLOW_STATUS_FAILED
    assert "gate sign-off rejected: no decision by the deadline" in done.error
    [gate] = done.gate_results
    assert gate.status == GateStatus.GATE_STATUS_REJECTED and not gate.HasField("deadline")
    # At the deadline (or, when no server was up then, as soon as one took the run over).
    assert deadline <= at(events[-1]) < back + timedelta(seconds=4)
    [publish] = [s for s in done.steps if s.step_id == "publish"]
    assert publish.status == StepStatus.STEP_STATUS_SKIPPED
