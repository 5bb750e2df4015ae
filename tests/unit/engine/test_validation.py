"""Template checks, expressions and substitutions."""

from __future__ import annotations

import pytest

from sluice.engine import expressions, substitution
from sluice.engine.graph import find_cycle
from sluice.engine.model import StepSpec
from sluice.engine.validation import validate_template
from tests.unit.engine.conftest import make_template, step_types


def test_cycle_is_reported_with_its_path() -> None:
    template = make_template(
        StepSpec("a", "x", dependencies=("c",)),
        StepSpec("b", "x", dependencies=("a",)),
        StepSpec("c", "x", dependencies=("b",)),
    )
    problems = validate_template(template, step_types("x"))
    assert [(p.field, p.description) for p in problems] == [
        ("steps[0].dependencies", "forms a cycle: a -> c -> b -> a")
    ]


def test_deep_chains_do_not_exhaust_the_stack() -> None:
    graph = {f"s{i}": (f"s{i - 1}",) if i else () for i in range(20_000)}
    assert find_cycle(graph) is None
    graph["s0"] = ("s19999",)
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1] and len(cycle) == 20_001


def test_references_must_point_upstream() -> None:
    template = make_template(
        StepSpec("a", "x", config={"v": "{{ steps.b.value }}"}),
        StepSpec("b", "x", dependencies=("a",)),
    )
    [problem] = validate_template(template, step_types("x"))
    assert problem.field == "steps[0].config.v"
    assert "not upstream" in problem.description


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("", "is empty"),
        ("output.x >", "does not parse"),
        ("secrets.key == 1", "unknown variable(s) secrets"),
        ('exec("rm -rf /")', "unknown function(s) exec"),
        ("x" * 2001, "the limit is 2000"),
    ],
)
def test_bad_expressions_are_rejected_before_they_run(source: str, fragment: str) -> None:
    [problem] = expressions.problems(source)
    assert fragment in problem


def test_macro_variables_are_not_unknown_variables() -> None:
    assert expressions.problems('output.issues.exists(i, i.check == "seo")') == []


def test_expression_evaluation_errors_are_friendly() -> None:
    with pytest.raises(expressions.ExpressionError, match="no field 'score'"):
        expressions.evaluate_bool("output.score > 1", {"output": {}})
    with pytest.raises(expressions.ExpressionError, match="not a bool"):
        expressions.evaluate_bool("1 + 1", {})


def test_substitution_keeps_types_for_whole_values_and_renders_inside_text() -> None:
    outputs = {"gen": {"score": 0.9, "tags": ["a", "b"], "n": 3.0}}
    config = {"s": "{{ steps.gen.score }}", "t": "tags: {{steps.gen.tags}} n={{ steps.gen.n }}",
              "first": "{{ steps.gen.tags.0 }}", "p": "{{ params.topic }}"}  # fmt: skip
    assert substitution.resolve(config, {"topic": "Spring"}, outputs) == {
        "s": 0.9, "t": 'tags: ["a", "b"] n=3', "first": "a", "p": "Spring",
    }  # fmt: skip
    with pytest.raises(substitution.SubstitutionError, match="no 'missing'"):
        substitution.resolve("{{ steps.gen.missing }}", {}, outputs)
    with pytest.raises(substitution.SubstitutionError, match="must start with"):
        list(substitution.references("{{ __import__('os') }}"))
