"""Step config over gRPC: checked against each step type's schema when a template is validated,
and again, resolved, before each attempt."""

from __future__ import annotations

import pytest

from sluice.client import InvalidArgumentError, StepStatus, WorkflowClient, WorkflowStatus
from tests.conftest import ServerFactory
from tests.support.templates import step, template

# The example: an aggregate with nothing to aggregate, valid until a run failed.
AGGREGATE_WITHOUT_AGGREGATIONS = template(
    "totals",
    step("sum-prices", "transform", config={"transformation": "aggregate", "inputDat": []}),
)


async def test_validate_template_reports_every_config_problem_at_its_path(
    client: WorkflowClient,
) -> None:
    report = await client.validate_template(AGGREGATE_WITHOUT_AGGREGATIONS)
    assert not report.valid
    assert {(v.field, v.description) for v in report.violations} == {
        ("steps[0].config.aggregations", "is required when transformation is 'aggregate'"),
        ("steps[0].config.inputData", "is required"),
        (
            "steps[0].config.inputDat",
            "is not a known key; did you mean 'inputData'? Known keys: aggregations, fields, "
            "format, groupBy, inputData, transformation, where.",
        ),
    }

    with pytest.raises(InvalidArgumentError) as caught:
        await client.create_template(AGGREGATE_WITHOUT_AGGREGATIONS)
    assert "template.steps[0].config.aggregations" in {v.field for v in caught.value.violations}
    with pytest.raises(InvalidArgumentError):
        await client.create_workflow(AGGREGATE_WITHOUT_AGGREGATIONS)


async def test_a_webhook_outside_the_allow_list_is_refused_at_validation(
    start_server: ServerFactory,
) -> None:
    server = await start_server(webhook_allow="hooks.example.com")
    hooks = template(
        "hooks",
        step("say", "notify", config={"webhookUrl": "https://hooks.example.com/in"}),
        step("post", "post", "say", config={"content": "x", "webhookUrl": "https://example.com/"}),
    )
    async with WorkflowClient(server.address) as client:
        report = await client.validate_template(hooks)
    assert [(v.field, v.description) for v in report.violations] == [
        (
            "steps[1].config.webhookUrl",
            "webhook host example.com:443 is not allowed: the server's SLUICE_WEBHOOK_ALLOW must "
            "list example.com or example.com:443",
        )
    ]


async def test_a_substituted_value_passes_validation_and_is_checked_when_resolved(
    client: WorkflowClient,
) -> None:
    flexible = template(
        "flexible",
        step(
            "shape",
            "transform",
            config={"transformation": "{{ params.kind }}", "inputData": [{"a": 1}]},
            retry={"maxAttempts": 3, "initialBackoff": "0s"},
        ),
        params=[{"name": "kind", "required": True}],
    )
    assert (await client.validate_template(flexible)).valid
    await client.create_template(flexible)

    good = await client.create_workflow("flexible", {"kind": "format"})
    done = await client.execute_workflow(good.id, wait=True, timeout=10)
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED

    bad = await client.create_workflow("flexible", {"kind": "explode"})
    failed = await client.execute_workflow(bad.id, wait=True, timeout=10)
    assert failed.status == WorkflowStatus.WORKFLOW_STATUS_FAILED
    shape = failed.steps[0]
    assert shape.status == StepStatus.STEP_STATUS_FAILED
    assert shape.attempt == 1, "a config that does not fit fails at once, without retries"
    assert shape.error == (
        "PermanentStepError: config.transformation: must be one of 'format', 'filter' or "
        "'aggregate' (got 'explode')"
    )
