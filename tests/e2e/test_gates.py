"""Quality gates: threshold / validation / approval, with continue / pause / abort."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from sluice.client import (
    EventType,
    FailedPreconditionError,
    GateStatus,
    StepStatus,
    WorkflowClient,
    WorkflowStatus,
)
from tests.support.templates import (
    approval_gate,
    step,
    template,
    threshold_gate,
    validation_gate,
)

LOW = {"output": {"qualityScore": 0.5}}
HIGH = {"output": {"qualityScore": 0.9}}


def scored(action: str, config: Mapping[str, object] = LOW) -> dict[str, object]:
    return template(
        f"gated-{action.lower()}",
        step("review", config=config),
        step("publish", "sleep", "review"),
        step("report", "sleep", "publish"),
        gates=[threshold_gate("quality", "review", action)],
    )


def statuses(workflow: object) -> dict[str, int]:
    return {s.step_id: s.status for s in workflow.steps}  # type: ignore[attr-defined]


async def test_passing_threshold_gate_lets_the_run_complete(client: WorkflowClient) -> None:
    run = await client.create_workflow(scored("ABORT", HIGH))
    done = await client.execute_workflow(run.id, wait=True, timeout=10)
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
    gate = done.gate_results[0]
    assert gate.status == GateStatus.GATE_STATUS_PASSED
    assert gate.observed_value == pytest.approx(0.9)
    assert (done.metrics.quality_gates_passed, done.metrics.quality_gates_failed) == (1, 0)


async def test_pause_action_pauses_naming_the_gate_and_resume_continues(
    client: WorkflowClient,
) -> None:
    run = await client.create_workflow(scored("PAUSE"))
    paused = await client.execute_workflow(run.id, wait=True, timeout=10)

    assert paused.status == WorkflowStatus.WORKFLOW_STATUS_PAUSED
    assert paused.paused_gate_id == "quality"
    assert "quality" in paused.pause_reason and "0.5" in paused.pause_reason
    assert statuses(paused)["publish"] == StepStatus.STEP_STATUS_PENDING
    assert paused.gate_results[0].status == GateStatus.GATE_STATUS_FAILED

    done = await client.resume_workflow(run.id, wait=True, timeout=10)
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
    assert done.gate_results[0].status == GateStatus.GATE_STATUS_APPROVED
    assert set(statuses(done).values()) == {StepStatus.STEP_STATUS_COMPLETED}


async def test_pause_action_can_be_approved_with_approve_gate(client: WorkflowClient) -> None:
    run = await client.create_workflow(scored("PAUSE"))
    await client.execute_workflow(run.id, wait=True, timeout=10)
    done = await client.approve_gate(
        run.id, "quality", comment="good enough", wait=True, timeout=10
    )
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
    assert done.gate_results[0].message == "good enough"


async def test_abort_action_fails_the_run_and_skips_the_rest(client: WorkflowClient) -> None:
    run = await client.create_workflow(scored("ABORT"))
    done = await client.execute_workflow(run.id, wait=True, timeout=10)

    assert done.status == WorkflowStatus.WORKFLOW_STATUS_FAILED
    assert "gate quality failed" in done.error
    assert statuses(done) == {
        "review": StepStatus.STEP_STATUS_COMPLETED,
        "publish": StepStatus.STEP_STATUS_SKIPPED,
        "report": StepStatus.STEP_STATUS_SKIPPED,
    }
    assert (done.metrics.quality_gates_failed, done.metrics.skipped_steps) == (1, 2)


async def test_continue_action_goes_on_and_counts_the_failure(client: WorkflowClient) -> None:
    run = await client.create_workflow(scored("CONTINUE"))
    done = await client.execute_workflow(run.id, wait=True, timeout=10)

    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
    assert done.gate_results[0].status == GateStatus.GATE_STATUS_FAILED
    assert (done.metrics.quality_gates_passed, done.metrics.quality_gates_failed) == (0, 1)
    assert done.metrics.completed_steps == 3


async def test_validation_gate_evaluates_a_cel_expression(client: WorkflowClient) -> None:
    tpl = template(
        "validated",
        step("review", config={"output": {"issues": [{"check": "compliance"}]}}),
        step("publish", "sleep", "review"),
        gates=[validation_gate("fair-housing", "review", "ABORT",
                               'output.issues.filter(i, i.check == "compliance").size() == 0')],
    )  # fmt: skip
    run = await client.create_workflow(tpl)
    done = await client.execute_workflow(run.id, wait=True, timeout=10)
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_FAILED
    assert done.gate_results[0].status == GateStatus.GATE_STATUS_FAILED
    assert "fair-housing" in done.error


async def test_a_failed_validation_gate_says_what_it_saw(client: WorkflowClient) -> None:
    tpl = template(
        "explained",
        step("review", config={"output": {"qualityScore": 0.72}}),
        gates=[validation_gate("good-enough", "review", "CONTINUE", "output.qualityScore >= 0.9")],
    )
    run = await client.create_workflow(tpl)
    done = await client.execute_workflow(run.id, wait=True, timeout=10)
    expected = "output.qualityScore >= 0.9 is false; output.qualityScore = 0.72"
    assert done.gate_results[0].message == expected
    [failed] = [e async for e in client.watch(run.id) if e.type == EventType.EVENT_TYPE_GATE_FAILED]
    assert failed.details["message"] == expected


def approval_template() -> dict[str, object]:
    return template(
        "approval",
        step("draft"),
        step("publish", "sleep", "draft"),
        gates=[approval_gate("sign-off", "draft")],
    )


async def test_approval_gate_waits_for_approve_gate(client: WorkflowClient) -> None:
    run = await client.create_workflow(approval_template())
    waiting = await client.execute_workflow(run.id, wait=True, timeout=10)

    assert waiting.status == WorkflowStatus.WORKFLOW_STATUS_PAUSED
    assert waiting.paused_gate_id == "sign-off"
    assert waiting.gate_results[0].status == GateStatus.GATE_STATUS_AWAITING_APPROVAL
    assert statuses(waiting)["publish"] == StepStatus.STEP_STATUS_PENDING

    done = await client.approve_gate(run.id, "sign-off", wait=True, timeout=10)
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
    assert done.gate_results[0].status == GateStatus.GATE_STATUS_APPROVED
    assert done.metrics.quality_gates_passed == 1


async def test_rejecting_an_approval_gate_aborts_the_run(client: WorkflowClient) -> None:
    run = await client.create_workflow(approval_template())
    await client.execute_workflow(run.id, wait=True, timeout=10)

    done = await client.approve_gate(run.id, "sign-off", approve=False, comment="off-brand")
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_FAILED
    assert "sign-off rejected: off-brand" in done.error
    assert done.gate_results[0].status == GateStatus.GATE_STATUS_REJECTED
    assert statuses(done)["publish"] == StepStatus.STEP_STATUS_SKIPPED
    assert done.metrics.quality_gates_failed == 1


async def test_auto_approve_passes_approval_gates_at_once(client: WorkflowClient) -> None:
    run = await client.create_workflow(approval_template())
    done = await client.execute_workflow(run.id, auto_approve=True, wait=True, timeout=10)
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
    assert done.gate_results[0].message == "auto-approved"


async def test_approving_a_gate_the_run_is_not_waiting_on_is_refused(
    client: WorkflowClient,
) -> None:
    run = await client.create_workflow(approval_template())
    with pytest.raises(FailedPreconditionError, match="not waiting on gate sign-off"):
        await client.approve_gate(run.id, "sign-off")
