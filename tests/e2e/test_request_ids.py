"""AIP-155 request ids: a retry gets the first call's answer; the same id on a different
request is refused, naming the field, and changes nothing."""

from __future__ import annotations

import pytest

from sluice.client import InvalidArgumentError, WorkflowClient, WorkflowStatus

PARAMS = {"location": "Denver, CO"}


async def test_create_refuses_a_request_id_reused_for_other_params(
    client: WorkflowClient,
) -> None:
    first = await client.create_workflow("market-analysis-report", PARAMS, request_id="req-1")
    again = await client.create_workflow("market-analysis-report", PARAMS, request_id="req-1")
    assert again.id == first.id

    for template, params in (
        ("market-analysis-report", {"location": "Austin, TX"}),  # other params
        ("content-to-social", {"topic": "x"}),  # another template
    ):
        with pytest.raises(InvalidArgumentError) as refused:
            await client.create_workflow(template, params, request_id="req-1")
        [violation] = refused.value.violations
        assert violation.field == "request_id"
        assert "already used for a different CreateWorkflow request" in violation.description

    page = await client.list_workflows()
    assert [w.id for w in page.workflows] == [first.id], "nothing was created by the refusals"


async def test_execute_refuses_a_request_id_reused_with_other_options(
    client: WorkflowClient,
) -> None:
    run = await client.create_workflow("market-analysis-report", PARAMS)
    started = await client.execute_workflow(run.id, request_id="go-1")
    assert started.status != WorkflowStatus.WORKFLOW_STATUS_PENDING

    # A retry may differ in `wait` (only how long the reply takes), and gets the run back.
    done = await client.execute_workflow(run.id, request_id="go-1", wait=True, timeout=10)
    assert done.id == run.id and done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED

    with pytest.raises(InvalidArgumentError) as refused:
        await client.execute_workflow(run.id, request_id="go-1", auto_approve=True)
    assert [v.field for v in refused.value.violations] == ["request_id"]
    assert "different ExecuteWorkflow request" in refused.value.violations[0].description
