"""Messages that name enum values name what a client writes in proto JSON, and each value they
name is one the server accepts."""

from __future__ import annotations

import re

import pytest

from sluice.client import InvalidArgumentError, WorkflowClient, WorkflowStatus
from tests.support.templates import step, template

NAMED = re.compile(r"\b(?:GATE_ACTION|COMPARISON_OPERATOR|WORKFLOW_STATUS)_[A-Z]+\b")


def gate(**fields: object) -> dict[str, object]:
    return template("gated", step("a", config={"output": {"score": 1}}), gates=[fields])


def threshold(action: str | None = None, operator: str | None = None) -> dict[str, object]:
    condition = {"metric": "score", "threshold": 0, **({"operator": operator} if operator else {})}
    return gate(id="g", stepId="a", threshold=condition, **({"action": action} if action else {}))


async def named_values(client: WorkflowClient, tpl: dict[str, object], field: str) -> list[str]:
    report = await client.validate_template(tpl)
    [description] = [v.description for v in report.violations if v.field == field]
    return NAMED.findall(description)


async def test_a_missing_action_names_the_values_to_write(client: WorkflowClient) -> None:
    missing = threshold(operator="COMPARISON_OPERATOR_GT")
    names = await named_values(client, missing, "quality_gates[0].action")
    assert names == ["GATE_ACTION_CONTINUE", "GATE_ACTION_PAUSE", "GATE_ACTION_ABORT"]
    for name in names:
        fixed = threshold(action=name, operator="COMPARISON_OPERATOR_GT")
        assert (await client.validate_template(fixed)).valid, name


async def test_a_missing_operator_names_the_values_to_write(client: WorkflowClient) -> None:
    missing = threshold(action="GATE_ACTION_ABORT")
    names = await named_values(client, missing, "quality_gates[0].threshold.operator")
    assert names == [f"COMPARISON_OPERATOR_{op}" for op in ("GT", "GTE", "LT", "LTE", "EQ", "NEQ")]
    for name in names:
        fixed = threshold(action="GATE_ACTION_ABORT", operator=name)
        assert (await client.validate_template(fixed)).valid, name


async def test_an_approval_gate_action_names_the_value_to_write(client: WorkflowClient) -> None:
    aborting = gate(id="g", stepId="a", action="GATE_ACTION_ABORT", approval={})
    assert await named_values(client, aborting, "quality_gates[0].action") == ["GATE_ACTION_PAUSE"]


async def test_an_unspecified_status_filter_names_the_statuses(client: WorkflowClient) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        await client.list_workflows(statuses=[WorkflowStatus.WORKFLOW_STATUS_UNSPECIFIED])
    [violation] = caught.value.violations
    assert violation.field == "statuses[0]"
    names = NAMED.findall(violation.description)
    assert names == [f"WORKFLOW_STATUS_{s}" for s in
                     ("PENDING", "RUNNING", "PAUSED", "COMPLETED", "FAILED", "CANCELLED")]  # fmt: skip


async def test_a_short_enum_name_in_json_says_what_to_write_instead(
    client: WorkflowClient,
) -> None:
    """The proto JSON parser refuses "PAUSE" (it wants GATE_ACTION_PAUSE); the client's error
    names the field and the value to write, where protobuf's names neither usefully."""
    short = threshold(action="PAUSE", operator="COMPARISON_OPERATOR_GTE")
    with pytest.raises(InvalidArgumentError) as refused:
        await client.validate_template(short)
    [violation] = refused.value.violations
    assert violation.field == "template"
    assert "qualityGates[0].action: PAUSE is not a GateAction value" in violation.description
    assert "write GATE_ACTION_PAUSE" in violation.description
