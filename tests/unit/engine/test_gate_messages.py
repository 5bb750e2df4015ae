"""A validation gate's message names the expression and the values it read."""

from __future__ import annotations

from typing import Any

import pytest

from sluice.engine import expressions, gates
from sluice.engine.model import GateAction, GateSpec, GateType, StepSpec, StepStatus
from tests.unit.engine.conftest import make_run, make_template


def outcome(expression: str, output: dict[str, Any], **params: Any) -> gates.GateOutcome:
    gate = GateSpec("check", GateType.VALIDATION, "review", GateAction.ABORT, expression=expression)
    run = make_run(
        make_template(StepSpec("gen", "x"), StepSpec("review", "x", dependencies=("gen",)))
    )
    run.params = dict(params)
    run.steps["gen"].status = StepStatus.COMPLETED
    run.steps["gen"].output = {"wordCount": 120.0}
    run.steps["review"].status = StepStatus.COMPLETED
    run.steps["review"].output = output
    return gates.evaluate(gate, run)


def test_a_false_expression_shows_the_values_it_read() -> None:
    result = outcome("output.qualityScore >= 0.9", {"qualityScore": 0.72})
    assert not result.passed
    assert result.message == "output.qualityScore >= 0.9 is false; output.qualityScore = 0.72"


def test_values_from_steps_and_params_and_inside_macros() -> None:
    result = outcome(
        'output.issues.filter(i, i.check == "compliance").size() == 0 '
        '&& steps["gen"].wordCount > 200 && params.topic != "output.x"',
        {"issues": [{"check": "compliance"}]},
        topic="Spring",
    )
    assert result.message == (
        'output.issues.filter(i, i.check == "compliance").size() == 0 && steps["gen"].wordCount '
        '> 200 && params.topic != "output.x" is false; '
        'output.issues = [{"check": "compliance"}]; steps.gen.wordCount = 120; '
        'params.topic = "Spring"'
    )


def test_a_failed_expression_names_the_missing_field_and_what_there_is() -> None:
    result = outcome("output.qualityScor >= 0.9", {"qualityScore": 0.72, "passed": True})
    assert not result.passed
    assert result.message == (
        "output.qualityScor >= 0.9 failed: no field 'qualityScor' in the data; "
        "output.qualityScor is missing (output has qualityScore, passed)"
    )


def test_long_values_and_many_paths_are_cut_short() -> None:
    issues = [{"check": "grammar", "message": "doubled word 'the the'"}] * 30
    result = outcome(
        "output.issues.size() < 3 && output.a == 1 && output.b == 1 && output.c == 1 "
        "&& output.d == 1",
        {"issues": issues, "a": 1, "b": 1, "c": 1, "d": 2},
    )
    values = result.message.split("; ")[1:]
    assert values[0].startswith('output.issues = [{"check": "grammar"')
    assert values[0].endswith("... (30 items)") and len(values[0]) < 120
    assert values[1:] == ["output.a = 1", "output.b = 1", "output.c = 1", "1 more"]


def test_a_passing_expression_says_so() -> None:
    assert outcome("output.ok", {"ok": True}).message == "output.ok is true"


@pytest.mark.parametrize(
    ("source", "paths"),
    [
        ("output.a.b > 1", [("output", "a", "b")]),
        ("has(output.a) && output.a.b[0] > 1", [("output", "a", "b", 0)]),
        ('steps["review-content"].x', [("steps", "review-content", "x")]),
        ("output.title.size() > 3", [("output", "title")]),
        ('"output.a" == params.p', [("params", "p")]),
        ("output.xs.all(x, x.ok)", [("output", "xs")]),
        ("size(output) > 0", [("output",)]),
    ],
)
def test_data_paths(source: str, paths: list[expressions.Path]) -> None:
    assert expressions.data_paths(source) == paths
