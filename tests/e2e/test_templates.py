"""Templates: the predefined ones run end to end; custom ones register, version, validate."""

from __future__ import annotations

import pytest

from sluice.client import (
    AlreadyExistsError,
    GateStatus,
    InvalidArgumentError,
    NotFoundError,
    StepStatus,
    WorkflowClient,
    WorkflowStatus,
)
from sluice.server import SluiceServer
from tests.support.templates import step, template, threshold_gate

PREDEFINED = {"content-to-social", "listing-campaign", "market-analysis-report"}


async def test_predefined_templates_are_listed(client: WorkflowClient) -> None:
    templates = {t.id: t for t in await client.list_templates()}
    assert set(templates) >= PREDEFINED
    assert all(templates[i].predefined and templates[i].version == 1 for i in PREDEFINED)


async def test_content_to_social_with_auto_approve_completes(
    server: SluiceServer, client: WorkflowClient
) -> None:
    run = await client.create_workflow(
        "content-to-social", {"topic": "Spring Market Update", "platform": "facebook"}
    )
    assert run.status == WorkflowStatus.WORKFLOW_STATUS_PENDING
    assert dict(run.params) == {
        "topic": "Spring Market Update", "platform": "facebook", "tone": "friendly", "timezone": "UTC",
        "publishAt": "", "waitForSlot": False,
    }  # fmt: skip
    done = await client.execute_workflow(run.id, auto_approve=True, wait=True, timeout=20)

    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error
    m = done.metrics
    assert m.total_steps == len(done.steps) == 6
    assert (
        m.completed_steps
        == sum(s.status == StepStatus.STEP_STATUS_COMPLETED for s in done.steps)
        == 5
    )
    # Without waitForSlot the wait for the slot is skipped, and the post joins without it.
    assert (m.failed_steps, m.skipped_steps) == (0, 1)
    wait = next(s for s in done.steps if s.step_id == "wait-for-slot")
    assert wait.status == StepStatus.STEP_STATUS_SKIPPED
    assert wait.error.startswith("condition params.waitForSlot == true is false")
    assert m.quality_gates_passed == 2 and m.quality_gates_failed == 0
    assert {g.gate_id: g.status for g in done.gate_results} == {
        "quality-check": GateStatus.GATE_STATUS_PASSED,
        "publish-approval": GateStatus.GATE_STATUS_APPROVED,
    }
    assert set(m.step_durations) == {s.step_id for s in done.steps} - {"wait-for-slot"}
    assert m.total_duration.ToTimedelta() >= max(d.ToTimedelta() for d in m.step_durations.values())
    post = next(s for s in done.steps if s.step_id == "post-content")
    assert post.output["platform"] == "facebook"
    # The publication was written to the outbox with the step's completion.
    assert server.store is not None
    [record] = await server.store.list_outbox(run.id)
    assert (record["kind"], record["channel"], record["step_id"]) == (
        "post",
        "facebook",
        "post-content",
    )
    assert record["payload"]["postId"] == post.output["postId"]


async def test_content_to_social_without_auto_approve_waits_for_publish_approval(
    client: WorkflowClient,
) -> None:
    run = await client.create_workflow("content-to-social", {"topic": "Open house"})
    paused = await client.execute_workflow(run.id, wait=True, timeout=20)
    assert paused.status == WorkflowStatus.WORKFLOW_STATUS_PAUSED
    assert paused.paused_gate_id == "publish-approval"
    done = await client.approve_gate(run.id, "publish-approval", wait=True, timeout=20)
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error


@pytest.mark.parametrize(
    ("template_id", "params"),
    [
        (
            "listing-campaign",
            {"listingId": "listing-123", "address": "123 Main St", "price": 500000},
        ),
        ("market-analysis-report", {"location": "San Francisco, CA", "timeframe": "90days"}),
    ],
)
async def test_other_predefined_templates_complete(
    client: WorkflowClient, template_id: str, params: dict[str, object]
) -> None:
    run = await client.create_workflow(template_id, params)
    done = await client.execute_workflow(run.id, auto_approve=True, wait=True, timeout=20)
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error
    assert done.metrics.completed_steps == done.metrics.total_steps


async def test_missing_and_unknown_params_are_invalid(client: WorkflowClient) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        await client.create_workflow("content-to-social", {"platfrom": "x"})
    fields = {v.field for v in caught.value.violations}
    assert fields == {"params.topic", "params.platfrom"}


async def test_registered_templates_are_versioned(client: WorkflowClient) -> None:
    first = await client.create_template(template("mine", step("a")))
    before = await client.create_workflow("mine")  # by id: the latest version, 1
    second = await client.create_template(template("mine", step("a"), step("b", "sleep", "a")))
    after = await client.create_workflow("mine")  # the latest is 2 at once (no stale cache)
    assert (first.version, second.version) == (1, 2)
    assert (before.template_version, after.template_version) == (1, 2)
    assert (await client.get_template("mine")).version == 2
    assert len((await client.get_template("mine", version=1)).steps) == 1

    run = await client.create_workflow("mine", version=1)
    assert (run.template_version, len(run.steps)) == (1, 1)
    assert {t.id for t in await client.list_templates()} >= PREDEFINED | {"mine"}


async def test_predefined_ids_cannot_be_registered(client: WorkflowClient) -> None:
    with pytest.raises(AlreadyExistsError):
        await client.create_template(template("content-to-social", step("a")))


async def test_unknown_template_is_not_found(client: WorkflowClient) -> None:
    with pytest.raises(NotFoundError):
        await client.create_workflow("no-such-template")


BROKEN = {
    "id": "Bad Id",
    "steps": [
        step("a", "sleep", "a"),                       # depends on itself
        step("a", "sleep"),                            # duplicate id
        step("b", "teleport", "ghost"),                # unknown type, unknown dependency
        step("c", "sleep", "d"),                       # c <-> d: a cycle
        step("d", "sleep", "c", retry={"maxAttempts": 99}),
        step("e", "sleep", config={"x": "{{ params.nope }}"}),
    ],
    "qualityGates": [
        threshold_gate("g1", "zzz", "PAUSE"),          # unknown step
        threshold_gate("g2", "a", "PAUSE", op="UNSPECIFIED"),
        {"id": "g3", "stepId": "a", "action": "GATE_ACTION_ABORT", "validation": {"expression": "output.x >"}},
        {"id": "g4", "stepId": "a"},                   # no condition
    ],
}  # fmt: skip

EXPECTED_FIELDS = {
    "template.id",
    "template.steps[0].dependencies[0]",
    "template.steps[1].id",
    "template.steps[2].type",
    "template.steps[2].dependencies[0]",
    "template.steps[3].dependencies",
    "template.steps[4].retry.max_attempts",
    "template.steps[5].config.x",
    "template.quality_gates[0].step_id",
    "template.quality_gates[1].threshold.operator",
    "template.quality_gates[2].validation.expression",
    "template.quality_gates[3].condition",
}


async def test_invalid_template_lists_every_violation(client: WorkflowClient) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        await client.create_workflow(BROKEN)
    assert {v.field for v in caught.value.violations} == EXPECTED_FIELDS
    assert all(v.description for v in caught.value.violations)
    assert (await client.list_workflows()).workflows == [], "nothing was written"

    report = await client.validate_template(BROKEN)
    assert not report.valid
    assert {"template." + v.field for v in report.violations} == EXPECTED_FIELDS

    with pytest.raises(InvalidArgumentError):
        await client.create_template(BROKEN)
    assert "Bad Id" not in {t.id for t in await client.list_templates()}


async def test_valid_template_validates_clean(client: WorkflowClient) -> None:
    report = await client.validate_template(template("fine", step("a"), step("b", "sleep", "a")))
    assert report.valid and not report.violations
