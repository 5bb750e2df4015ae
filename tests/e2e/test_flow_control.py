"""Branches and error types over real gRPC: a step's `when` condition, the skips it leads to and
the join after them; retry policies that refuse some error types."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from sluice.client import (
    EventType,
    GateStatus,
    GateType,
    InvalidArgumentError,
    StepStatus,
    Task,
    Worker,
    WorkflowClient,
    WorkflowStatus,
)
from sluice.server import SluiceServer
from tests.conftest import ServerFactory
from tests.support.handlers import Calls
from tests.support.receiver import Receiver, running_receiver
from tests.support.templates import step, template

BRANCHES = template(
    "branches",
    step("check", config={"output": {"platform": "{{ params.platform }}"}}),
    step("instagram", "sleep", "check", when='steps.check.platform == "instagram"'),
    step("resize", "sleep", "instagram"),
    step("facebook", "sleep", "check", when='steps.check.platform == "facebook"'),
    step("report", "sleep", "resize", "facebook", dependencyRule="DEPENDENCY_RULE_ANY_COMPLETED"),
    params=[{"name": "platform", "required": True}],
)


def statuses(run: Any) -> dict[str, str]:
    return {s.step_id: StepStatus.Name(s.status).removeprefix("STEP_STATUS_") for s in run.steps}


async def test_a_false_condition_skips_its_branch_with_the_reason_and_the_join_runs(
    client: WorkflowClient, calls: Calls
) -> None:
    run = await client.create_workflow(BRANCHES, {"platform": "facebook"})
    done = await client.execute_workflow(run.id, wait=True, timeout=20)
    events = [e async for e in client.watch(run.id)]

    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error
    assert statuses(done) == {
        "check": "COMPLETED", "instagram": "SKIPPED", "resize": "SKIPPED",
        "facebook": "COMPLETED", "report": "COMPLETED",
    }  # fmt: skip
    assert calls.of(run.id, "instagram") == [] and calls.of(run.id, "resize") == []
    skipped = {
        e.step_id: json_format.MessageToDict(e.details)
        for e in events
        if e.type == EventType.EVENT_TYPE_STEP_SKIPPED
    }
    assert skipped == {
        "instagram": {
            "reason": 'condition steps.check.platform == "instagram" is false; '
            'steps.check.platform = "facebook"',
            "condition": 'steps.check.platform == "instagram"',
        },
        "resize": {"reason": "dependency instagram skipped"},
    }
    # Metrics count the skipped steps.
    assert (done.metrics.completed_steps, done.metrics.skipped_steps) == (3, 2)


async def test_a_true_condition_runs_its_branch(client: WorkflowClient, calls: Calls) -> None:
    run = await client.create_workflow(BRANCHES, {"platform": "instagram"})
    done = await client.execute_workflow(run.id, wait=True, timeout=20)

    assert statuses(done) == {
        "check": "COMPLETED", "instagram": "COMPLETED", "resize": "COMPLETED",
        "facebook": "SKIPPED", "report": "COMPLETED",
    }  # fmt: skip
    assert len(calls.of(run.id, "resize")) == 1
    assert done.metrics.skipped_steps == 1


async def test_a_condition_that_cannot_be_evaluated_fails_the_run_saying_why(
    client: WorkflowClient,
) -> None:
    broken = template(
        "broken-branch",
        step("check", config={"output": {}}),
        step("next", "sleep", "check", when="steps.check.platform == 'x'"),
    )
    run = await client.create_workflow(broken)
    done = await client.execute_workflow(run.id, wait=True, timeout=20)
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_FAILED
    assert "the condition of step next could not be evaluated" in done.error
    assert "steps.check.platform is missing" in done.error


async def test_bad_conditions_are_refused_when_the_template_is_registered(
    client: WorkflowClient,
) -> None:
    bad = template(
        "bad-branch",
        step("a"),
        step("b", "sleep", when="output.x == 1"),
        step("c", "sleep", "a", when="steps.b.x == 1"),
        step("d", "sleep", "a", dependencyRule="DEPENDENCY_RULE_ANY_COMPLETED"),
        step("e", "sleep", dependencyRule="DEPENDENCY_RULE_ANY_COMPLETED"),
    )
    with pytest.raises(InvalidArgumentError) as refused:
        await client.create_template(bad)
    fields = {v.field: v.description for v in refused.value.violations}
    assert "unknown variable(s) output" in fields["template.steps[1].when"]
    assert "not upstream of 'c'" in fields["template.steps[2].when"]
    assert "needs dependencies" in fields["template.steps[4].dependency_rule"]
    assert "template.steps[3].dependency_rule" not in fields


@pytest.mark.parametrize(("error_type", "attempts"), [("CardDeclined", 1), ("GatewayBusy", 3)])
async def test_an_error_type_the_policy_lists_is_not_retried(
    client: WorkflowClient, calls: Calls, error_type: str, attempts: int
) -> None:
    retry = {
        "maxAttempts": 3,
        "initialBackoff": "0.01s",
        "nonRetryableErrorTypes": ["CardDeclined"],
    }
    charge = step("charge", "fail", config={"errorType": error_type}, retry=retry)
    run = await client.create_workflow(template("charge", charge))
    done = await client.execute_workflow(run.id, wait=True, timeout=20)
    events = [e async for e in client.watch(run.id) if e.step_id == "charge"]

    assert done.status == WorkflowStatus.WORKFLOW_STATUS_FAILED
    assert [c["attempt"] for c in calls.of(run.id, "charge")] == list(range(1, attempts + 1))
    started = [e for e in events if e.type == EventType.EVENT_TYPE_STEP_STARTED]
    assert len(started) == attempts  # each attempt is an event
    failed = json_format.MessageToDict(events[-1].details)
    assert events[-1].type == EventType.EVENT_TYPE_STEP_FAILED
    assert failed["errorType"] == error_type
    assert failed.get("nonRetryable", False) is (attempts == 1)


def readme_example() -> dict[str, Any]:
    """The branching template of the README's Flow control section, as written."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Flow control\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"^```json\n(\{\"id\": \"announce\".*?)^```", section, re.M | re.S)
    assert block is not None
    parsed: dict[str, Any] = json.loads(block.group(1))
    return parsed


@pytest.mark.parametrize(
    ("platform", "ran", "skipped"),
    [("instagram", "instagram", "email"), ("x", "email", "instagram")],
)
async def test_the_readme_branching_example_takes_one_branch_and_joins(
    client: WorkflowClient, platform: str, ran: str, skipped: str
) -> None:
    run = await client.create_workflow(readme_example(), {"platform": platform})
    done = await client.execute_workflow(run.id, wait=True, timeout=20)
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error
    found = statuses(done)
    assert (found[ran], found[skipped], found["tell"]) == ("COMPLETED", "SKIPPED", "COMPLETED")


# --- external validators ------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as state:
        yield state


def reviewed(action: str, external: dict[str, Any]) -> dict[str, Any]:
    return template(
        "externally-reviewed",
        step("draft", config={"output": {"text": "Sunny 3-bed, walk to the park", "words": 6}}),
        step("publish", "sleep", "draft"),
        gates=[
            {"id": "brand-check", "stepId": "draft", "action": f"GATE_ACTION_{action}",
             "external": external}
        ],
    )  # fmt: skip


async def test_a_webhook_validator_that_answers_fail_pauses_the_run_with_its_score_and_message(
    start_server: ServerFactory, receiver: Receiver, calls: Calls
) -> None:
    server = await start_server(webhook_allow=receiver.allow)
    receiver.body = b'{"passed": false, "score": 0.42, "message": "too salesy for the brand"}'
    tpl = reviewed("PAUSE", {"webhookUrl": receiver.url("/verdict")})
    async with WorkflowClient(server.address) as client:
        run = await client.create_workflow(tpl)
        paused = await client.execute_workflow(run.id, wait=True, timeout=20)

    assert paused.status == WorkflowStatus.WORKFLOW_STATUS_PAUSED
    assert paused.paused_gate_id == "brand-check"
    [gate] = paused.gate_results
    assert gate.status == GateStatus.GATE_STATUS_FAILED
    assert gate.type == GateType.GATE_TYPE_EXTERNAL
    assert gate.observed_value == pytest.approx(0.42)
    assert gate.message == "too salesy for the brand"
    assert paused.metrics.quality_gates_failed == 1
    assert calls.of(run.id, "publish") == []
    # The validator was asked once, with the gated step's output.
    [asked] = receiver.requests
    body = json.loads(asked.body)
    assert body == {"gateId": "brand-check", "stepId": "draft",
                    "output": {"text": "Sunny 3-bed, walk to the park", "words": 6}}  # fmt: skip
    assert asked.headers["Idempotency-Key"] == f"{run.id}/brand-check"


async def test_a_webhook_validator_is_retried_like_a_step_and_its_pass_lets_the_run_go_on(
    start_server: ServerFactory, receiver: Receiver
) -> None:
    server = await start_server(webhook_allow=receiver.allow)
    receiver.status = 503  # unavailable at first: retried under the gate's policy
    receiver.body = b'{"passed": true, "score": 0.97}'
    retry = {"maxAttempts": 3, "initialBackoff": "0.05s"}
    tpl = reviewed("ABORT", {"webhookUrl": receiver.url("/verdict"), "retry": retry})
    async with WorkflowClient(server.address) as client:
        run = await client.create_workflow(tpl)
        await client.execute_workflow(run.id)
        async for event in client.watch(run.id, follow=True):
            if event.type == EventType.EVENT_TYPE_STEP_RETRYING and event.step_id == "brand-check":
                receiver.status = 200
                break
        done = await client.execute_workflow(run.id, wait=True, timeout=20)

    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error
    [gate] = done.gate_results
    assert (gate.status, gate.observed_value) == (GateStatus.GATE_STATUS_PASSED, 0.97)
    validator = next(s for s in done.steps if s.step_id == "brand-check")
    assert validator.attempt == 2 and validator.type == "http"
    assert len(receiver.requests) == 2


async def test_a_worker_validator_gives_the_verdict_and_bad_gates_are_refused(
    server: SluiceServer, client: WorkflowClient
) -> None:
    worker = Worker(server.address, token="", worker_id="validator", heartbeat_interval=0.1)

    @worker.task("brand.review")
    async def review(task: Task) -> dict[str, Any]:
        words = task.upstream["draft"]["words"]
        return {"passed": words < 5, "score": words, "message": f"{words} words"}

    run = await client.create_workflow(reviewed("CONTINUE", {"taskType": "brand.review"}))
    running = asyncio.create_task(worker.run())
    try:
        done = await client.execute_workflow(run.id, wait=True, timeout=20)
    finally:
        await worker.stop(grace=5)
        await running
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED  # CONTINUE: recorded, goes on
    [gate] = done.gate_results
    assert (gate.status, gate.observed_value, gate.message) == (
        GateStatus.GATE_STATUS_FAILED, 6.0, "6 words",
    )  # fmt: skip

    bad = reviewed("PAUSE", {"webhookUrl": "https://elsewhere.example.com/v"})
    bad["qualityGates"].append(
        {"id": "draft", "stepId": "draft", "action": "GATE_ACTION_PAUSE",
         "external": {}}
    )  # fmt: skip
    with pytest.raises(InvalidArgumentError) as refused:
        await client.create_template(bad)
    fields = {v.field: v.description for v in refused.value.violations}
    assert "SLUICE_WEBHOOK_ALLOW" in fields["template.quality_gates[0].external.webhook_url"]
    assert "exactly one of webhook_url or task_type" in fields["template.quality_gates[1].external"]
    assert "already a step's id" in fields["template.quality_gates[1].id"]
