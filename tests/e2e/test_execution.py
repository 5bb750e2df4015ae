"""Running workflows over real gRPC: parallelism, retries, optional steps, timeouts, data flow."""

from __future__ import annotations

import pytest

from sluice.client import EventType, StepStatus, WorkflowClient, WorkflowStatus
from tests.support.handlers import Calls
from tests.support.templates import step, template


async def test_independent_steps_overlap_in_time(client: WorkflowClient, calls: Calls) -> None:
    slow = {"seconds": 0.3}
    tpl = template(
        "diamond",
        step("a"),
        step("b", "sleep", "a", config=slow),
        step("c", "sleep", "a", config=slow),
        step("d", "sleep", "b", "c"),
    )
    run = await client.create_workflow(tpl)
    done = await client.execute_workflow(run.id, wait=True, timeout=10)

    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
    b, c = calls.of(run.id, "b")[0], calls.of(run.id, "c")[0]
    assert b["start"] < c["end"] and c["start"] < b["end"], "b and c did not run at the same time"
    steps = {s.step_id: s for s in done.steps}
    # The recorded intervals intersect too, and d started only after both ended.
    assert steps["b"].start_time.ToDatetime() < steps["c"].end_time.ToDatetime()
    assert steps["c"].start_time.ToDatetime() < steps["b"].end_time.ToDatetime()
    assert steps["d"].start_time.ToDatetime() >= max(
        steps["b"].end_time.ToDatetime(), steps["c"].end_time.ToDatetime()
    )


async def test_flaky_step_is_retried_with_exponential_backoff(
    client: WorkflowClient, calls: Calls
) -> None:
    retry = {"maxAttempts": 3, "initialBackoff": "0.2s", "backoffMultiplier": 2}
    tpl = template("flaky", step("f", "flaky", config={"failures": 2}, retry=retry))
    run = await client.create_workflow(tpl)
    done = await client.execute_workflow(run.id, wait=True, timeout=10)

    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
    assert done.steps[0].attempt == 3
    attempts = calls.of(run.id, "f")
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    gaps = [attempts[i + 1]["start"] - attempts[i]["end"] for i in range(2)]
    for gap, delay in zip(gaps, (0.2, 0.4), strict=True):
        assert delay - 0.01 <= gap < delay + 0.5, f"gap {gap:.3f}s for a {delay}s backoff"

    events = [e async for e in client.watch(run.id)]
    retrying = [e for e in events if e.type == EventType.EVENT_TYPE_STEP_RETRYING]
    assert [e.details["delaySeconds"] for e in retrying] == pytest.approx([0.2, 0.4])
    assert [e.attempt for e in events if e.type == EventType.EVENT_TYPE_STEP_STARTED] == [1, 2, 3]
    assert done.metrics.total_attempts == 3


async def test_step_that_exhausts_its_attempts_fails_the_run(client: WorkflowClient) -> None:
    retry = {"maxAttempts": 2, "initialBackoff": "0.05s"}
    tpl = template("doomed", step("a", "fail", retry=retry), step("b", "sleep", "a"))
    run = await client.create_workflow(tpl)
    done = await client.execute_workflow(run.id, wait=True, timeout=10)

    assert done.status == WorkflowStatus.WORKFLOW_STATUS_FAILED
    assert "step a failed" in done.error and "always fails" in done.error
    a, b = done.steps
    assert (a.status, a.attempt) == (StepStatus.STEP_STATUS_FAILED, 2)
    assert b.status == StepStatus.STEP_STATUS_SKIPPED
    assert (done.metrics.failed_steps, done.metrics.skipped_steps) == (1, 1)


async def test_permanent_error_is_not_retried(client: WorkflowClient, calls: Calls) -> None:
    retry = {"maxAttempts": 5, "initialBackoff": "0.05s"}
    tpl = template("perm", step("a", "fail", config={"permanent": True}, retry=retry))
    run = await client.create_workflow(tpl)
    done = await client.execute_workflow(run.id, wait=True, timeout=10)
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_FAILED
    assert len(calls.of(run.id, "a")) == 1


async def test_failing_optional_step_leaves_run_completed(client: WorkflowClient) -> None:
    tpl = template(
        "optional",
        step("a"),
        step("extra", "fail", "a", optional=True),
        step("b", "sleep", "a"),
    )
    run = await client.create_workflow(tpl)
    done = await client.execute_workflow(run.id, wait=True, timeout=10)

    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
    m = done.metrics
    assert (m.total_steps, m.completed_steps, m.failed_steps, m.skipped_steps) == (3, 2, 1, 0)
    assert {s.step_id: s.status for s in done.steps}["extra"] == StepStatus.STEP_STATUS_FAILED


async def test_attempt_that_outlives_its_timeout_fails(client: WorkflowClient) -> None:
    tpl = template("slow", step("a", config={"seconds": 30}, timeout="0.2s"))
    run = await client.create_workflow(tpl)
    done = await client.execute_workflow(run.id, wait=True, timeout=10)
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_FAILED
    assert "timed out after 0.2s" in done.steps[0].error


async def test_config_substitutes_params_and_upstream_outputs(client: WorkflowClient) -> None:
    tpl = template(
        "data-flow",
        step("a", config={"output": {"score": 7, "title": "{{ params.topic }}"}}),
        step("b", "sleep", "a", config={"output": {"copied": "{{ steps.a.score }}",
                                                  "text": "Score of {{ steps.a.title }}: {{ steps.a.score }}"}}),
        params=[{"name": "topic", "required": True}],
    )  # fmt: skip
    run = await client.create_workflow(tpl, {"topic": "Spring"})
    done = await client.execute_workflow(run.id, wait=True, timeout=10)
    output = dict(done.steps[1].output)
    assert output == {"copied": 7, "text": "Score of Spring: 7"}


async def test_notify_on_completion_emits_a_notification(client: WorkflowClient) -> None:
    run = await client.create_workflow(template("note", step("a")))
    await client.execute_workflow(run.id, notify_on_completion=True, wait=True, timeout=10)
    events = [e async for e in client.watch(run.id)]
    assert [e.type for e in events][-2:] == [
        EventType.EVENT_TYPE_NOTIFICATION,
        EventType.EVENT_TYPE_WORKFLOW_COMPLETED,
    ]
    assert events[-2].details["kind"] == "completion"
