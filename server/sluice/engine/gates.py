"""Evaluating threshold and validation gates: pure functions of the run's data."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sluice.engine import expressions
from sluice.engine.model import GateSpec, GateType, Run, StepStatus


@dataclass(frozen=True, slots=True)
class GateOutcome:
    passed: bool
    message: str
    observed_value: float | None = None


def evaluate(gate: GateSpec, run: Run) -> GateOutcome:
    """Check a threshold or validation gate against the completed step it follows."""
    output = run.steps[gate.step_id].output or {}
    if gate.type is GateType.THRESHOLD:
        return _threshold(gate, output)
    if gate.type is GateType.VALIDATION:
        return _validation(gate, run, output)
    raise ValueError(f"gate {gate.id} is an approval gate; it is decided, not evaluated")


def _threshold(gate: GateSpec, output: dict[str, Any]) -> GateOutcome:
    assert gate.operator is not None  # guaranteed by template validation
    value = lookup_path(output, gate.metric)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return GateOutcome(
            False, f"metric {gate.metric!r} is not a finite number in the output of {gate.step_id}"
        )
    number = float(value)
    passed = gate.operator.holds(number, gate.threshold)
    relation = "meets" if passed else "does not meet"
    return GateOutcome(
        passed,
        f"{gate.metric} = {number:g} {relation} {gate.operator.value} {gate.threshold:g}",
        number,
    )


def _validation(gate: GateSpec, run: Run, output: dict[str, Any]) -> GateOutcome:
    variables = {
        "output": output,
        "steps": {
            step_id: step.output or {}
            for step_id, step in run.steps.items()
            if step.status is StepStatus.COMPLETED
        },
        "params": run.params,
    }
    try:
        passed = expressions.evaluate_bool(gate.expression, variables)
    except expressions.ExpressionError as exc:
        return GateOutcome(False, f"expression failed: {exc}")
    return GateOutcome(passed, "expression is true" if passed else "expression is false")


def lookup_path(data: Any, path: str) -> Any:
    """The value at a dotted path ("scores.seo", "items.0.price"), or None."""
    current = data
    for key in path.split("."):
        if isinstance(current, dict) and key in current:
            current = current[key]
        elif isinstance(current, list) and key.isdigit() and int(key) < len(current):
            current = current[int(key)]
        else:
            return None
    return current
