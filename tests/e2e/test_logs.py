"""What a server process logs: JSON lines off a terminal, with each run's lifecycle, its step
failures and retries, and every refused call; never a token or the secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sluice.client import (
    NotFoundError,
    UnauthenticatedError,
    WorkflowClient,
    WorkflowStatus,
)
from tests.support.crypto import SECRET, token
from tests.support.process import ServerProcess
from tests.support.templates import step, template, threshold_gate

# A step that fails once and is retried, a gate after it that pauses the run, a last step.
PAUSING = template(
    "pausing",
    step("fetch", "flaky", config={"failures": 1},
         retry={"maxAttempts": 2, "initialBackoff": "0.05s"}),
    step("report", "work", "fetch"),
    gates=[threshold_gate("enough", "fetch", "PAUSE", metric="attempts", value=5)],
)  # fmt: skip


@pytest.fixture
async def server(tmp_path: Path) -> Any:
    process = ServerProcess(
        f"sqlite+aiosqlite:///{tmp_path / 'sluice.db'}", tmp_path / "ledger.jsonl",
        "127.0.0.1:0", auth_jwt_secret=SECRET,
    )  # fmt: skip
    await process.start()
    yield process
    await process.close()


def line(message: str, **fields: Any) -> Any:
    return lambda entry: entry["message"] == message and fields.items() <= entry.items()


async def test_a_runs_life_is_logged_with_its_ids(server: ServerProcess) -> None:
    async with WorkflowClient(server.address, token=token("alice")) as client:
        run = await client.create_workflow(PAUSING)
        paused = await client.execute_workflow(run.id, wait=True, timeout=20)
        assert paused.status == WorkflowStatus.WORKFLOW_STATUS_PAUSED
        done = await client.resume_workflow(run.id, wait=True, timeout=20)
        assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED

    ids = {"run_id": run.id}
    created = await server.logged(line("workflow created", **ids))
    assert created["template_id"] == "pausing" and created["user"] == "alice"
    assert created["level"] == "info" and created["timestamp"].endswith("Z")
    await server.logged(line("workflow started", **ids))
    retry = await server.logged(line("step retrying", **ids, step_id="fetch", attempt=1))
    assert retry["level"] == "warning"
    assert retry["error"] == "ConnectionError: transient failure on attempt 1"
    assert retry["delay_s"] == 0.05
    await server.logged(line("gate failed", **ids, gate_id="enough", step_id="fetch"))
    paused_line = await server.logged(line("workflow paused", **ids, gate_id="enough"))
    assert "enough" in paused_line["reason"]
    await server.logged(line("workflow resumed", **ids))
    finished = await server.logged(line("workflow finished", **ids, status="COMPLETED"))
    assert finished["duration_s"] >= 0
    order = [e["message"] for e in server.log_lines() if e.get("run_id") == run.id]
    assert order == [
        "workflow created", "workflow started", "step retrying", "gate failed",
        "workflow paused", "workflow resumed", "workflow finished",
    ]  # fmt: skip


async def test_refused_calls_are_logged_without_the_token(server: ServerProcess) -> None:
    forged = token("mallory", key="another-secret-of-enough-length!!")
    async with WorkflowClient(server.address, token=forged) as client:
        with pytest.raises(UnauthenticatedError):
            await client.list_templates()
    good = token("alice")
    missing = "00000000-0000-4000-8000-000000000000"
    async with WorkflowClient(server.address, token=good) as client:
        with pytest.raises(NotFoundError):
            await client.get_workflow(missing)

    method = "/sluice.v1.WorkflowService/"
    unauthenticated = await server.logged(line("call refused", code="UNAUTHENTICATED"))
    assert unauthenticated["method"] == method + "ListTemplates"
    assert unauthenticated["level"] == "warning"
    assert "user" not in unauthenticated, "nobody was authenticated"
    not_found = await server.logged(line("call refused", code="NOT_FOUND"))
    assert not_found["method"] == method + "GetWorkflow"
    assert not_found["user"] == "alice" and not_found["level"] == "info"
    assert missing in not_found["detail"]
    text = server.log.decode()
    for secret in (forged, good, SECRET):
        assert secret not in text


async def test_a_rerun_and_a_retry_now_are_logged_with_their_origin(server: ServerProcess) -> None:
    retry = {"maxAttempts": 2, "initialBackoff": "3600s", "maxBackoff": "3600s"}
    slow = template("slow-retry", step("fetch", "flaky", config={"failures": 1}, retry=retry))
    async with WorkflowClient(server.address, token=token("alice")) as client:
        run = await client.create_workflow(slow)
        await client.execute_workflow(run.id)
        await server.logged(line("step retrying", run_id=run.id, step_id="fetch"))
        await client.retry_step(run.id, "fetch")
        await server.logged(line("workflow finished", run_id=run.id))
        fails = step("b", "flaky", "a", config={"failures": 1})
        cut = await client.create_workflow(template("cut", step("a", "work"), fails))
        failed = await client.execute_workflow(cut.id, wait=True, timeout=20)
        assert failed.status == WorkflowStatus.WORKFLOW_STATUS_FAILED
        rerun = await client.rerun_workflow(cut.id, from_step="b")

    retried = await server.logged(
        line("step retried now", run_id=run.id, step_id="fetch", attempt=2, user="alice")
    )
    assert retried["level"] == "info"
    created = await server.logged(line("workflow created", run_id=rerun.id))
    assert (created["rerun_of"], created["from_step"], created["reused_steps"]) == (cut.id, "b", 1)
