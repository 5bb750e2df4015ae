"""Evaluating threshold and validation gates: pure functions of the run's data."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sluice.engine import expressions
from sluice.engine.model import GateSpec, GateType, Run, StepStatus

# A gate's message is stored with its result and its event: a few short values say why.
MAX_SHOWN_VALUES = 4
MAX_VALUE_TEXT = 80
MAX_EXPRESSION_TEXT = 160
_NAME = re.compile(r"^[A-Za-z_]\w*$")


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


def condition(expression: str, run: Run) -> GateOutcome:
    """A step's `when` condition over the run's params and completed outputs: whether it holds,
    and a message showing the values it read. ExpressionError (with that message) when it
    cannot be evaluated."""
    variables = {"steps": _completed_outputs(run), "params": run.params}
    try:
        holds = expressions.evaluate_bool(expression, variables)
    except expressions.ExpressionError as exc:
        raise expressions.ExpressionError(
            _explained(expression, f"failed: {exc}", variables)
        ) from None
    return GateOutcome(holds, _explained(expression, "is true" if holds else "is false", variables))


def _completed_outputs(run: Run) -> dict[str, Any]:
    return {
        step_id: step.output or {}
        for step_id, step in run.steps.items()
        if step.status is StepStatus.COMPLETED
    }


def _validation(gate: GateSpec, run: Run, output: dict[str, Any]) -> GateOutcome:
    variables = {"output": output, "steps": _completed_outputs(run), "params": run.params}
    try:
        passed = expressions.evaluate_bool(gate.expression, variables)
    except expressions.ExpressionError as exc:
        return GateOutcome(False, _explained(gate.expression, f"failed: {exc}", variables))
    if passed:
        return GateOutcome(True, f"{_cut(_one_line(gate.expression), MAX_EXPRESSION_TEXT)} is true")
    return GateOutcome(False, _explained(gate.expression, "is false", variables))


def _explained(expression: str, verdict: str, variables: Mapping[str, Any]) -> str:
    """`output.score >= 0.9 is false; output.score = 0.72`: the expression, then the values it
    read (at most a few, each cut short), so a failed gate says why without a look at the data."""
    shown = [_shown(path, variables) for path in expressions.data_paths(expression)]
    more = len(shown) - MAX_SHOWN_VALUES
    values = shown[:MAX_SHOWN_VALUES] + ([f"{more} more"] if more > 0 else [])
    head = f"{_cut(_one_line(expression), MAX_EXPRESSION_TEXT)} {verdict}"
    return "; ".join([head, *values])


def _shown(path: expressions.Path, variables: Mapping[str, Any]) -> str:
    current: Any = variables
    for depth, key in enumerate(path):
        in_map = isinstance(current, Mapping) and isinstance(key, str) and key in current
        in_list = isinstance(current, list) and isinstance(key, int) and key < len(current)
        if in_map or in_list:
            current = current[key]
        else:
            where = _path_text(path[:depth])
            has = (
                f" ({where} has {_cut(', '.join(map(str, current)), MAX_VALUE_TEXT)})"
                if isinstance(current, Mapping) and current
                else ""
            )
            return f"{_path_text(path)} is missing{has}"
    return f"{_path_text(path)} = {_value_text(current)}"


def _path_text(path: expressions.Path) -> str:
    out = str(path[0])
    for key in path[1:]:
        if isinstance(key, int):
            out += f"[{key}]"
        elif _NAME.match(key):
            out += f".{key}"
        else:
            out += f"[{json.dumps(key)}]"
    return out


def _value_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
    if isinstance(value, list) and len(text) > MAX_VALUE_TEXT:
        return f"{_cut(text, MAX_VALUE_TEXT)} ({len(value)} items)"
    return _cut(text, MAX_VALUE_TEXT)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
