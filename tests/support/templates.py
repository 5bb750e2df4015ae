"""Builders for inline templates in proto-JSON form (what a client sends)."""

from __future__ import annotations

from typing import Any


def step(id: str, type: str = "sleep", *deps: str, **extra: Any) -> dict[str, Any]:
    config = extra.pop("config", {})
    return {"id": id, "type": type, "dependencies": list(deps), "config": config, **extra}


def threshold_gate(
    id: str,
    step_id: str,
    action: str,
    *,
    metric: str = "qualityScore",
    op: str = "GTE",
    value: float = 0.8,
) -> dict[str, Any]:
    return {
        "id": id,
        "stepId": step_id,
        "action": f"GATE_ACTION_{action}",
        "threshold": {
            "metric": metric,
            "operator": f"COMPARISON_OPERATOR_{op}",
            "threshold": value,
        },
    }


def validation_gate(id: str, step_id: str, action: str, expression: str) -> dict[str, Any]:
    return {
        "id": id,
        "stepId": step_id,
        "action": f"GATE_ACTION_{action}",
        "validation": {"expression": expression},
    }


def approval_gate(id: str, step_id: str) -> dict[str, Any]:
    return {"id": id, "stepId": step_id, "approval": {}}


def template(id: str, *steps: dict[str, Any], gates: list[dict[str, Any]] | None = None,
             params: list[dict[str, Any]] | None = None) -> dict[str, Any]:  # fmt: skip
    return {
        "id": id,
        "name": id,
        "steps": list(steps),
        "qualityGates": gates or [],
        "params": params or [],
    }
