"""The handler contract, checked when a handler is registered, and config schemas of plugins."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from sluice.engine.config_schema import ConfigSchema, InvalidSchema
from sluice.engine.handlers import (
    HandlerRegistry,
    InvalidHandler,
    PermanentStepError,
    StepContext,
    StepResult,
)


class Good:
    config_schema = {"type": "object", "properties": {"n": {"type": "integer"}}}

    async def run(self, ctx: StepContext) -> StepResult:
        return StepResult({})

    def check_config(self, config: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
        if config.get("n") == 13:
            yield "n", "is unlucky"


async def plain_function(ctx: StepContext) -> StepResult:
    return StepResult({})


class SyncRun:
    def run(self, ctx: StepContext) -> StepResult:
        return StepResult({})


class TwoArguments:
    async def run(self, ctx: StepContext, extra: int) -> StepResult:
        return StepResult({})


class NoArgument:
    async def run(self) -> StepResult:
        return StepResult({})


class ListSchema(Good):
    config_schema = [{"type": "object"}]  # type: ignore[assignment]


class BadSchema(Good):
    config_schema = {"type": "objekt"}


class RemoteRef(Good):
    config_schema = {"$ref": "https://example.com/schema.json"}


class AsyncCheck(Good):
    async def check_config(self, config: Mapping[str, Any]) -> Iterable[tuple[str, str]]:  # type: ignore[override]
        return []


class BrokenCheck(Good):
    def check_config(self, config: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
        raise KeyError("oops")


@pytest.mark.parametrize(
    ("handler", "fragment"),
    [
        (plain_function, "'plain_function' is a function; register an object with a method"),
        (Good, "the class Good was registered, not an instance: register Good()"),
        (object(), "object has no method `async def run(self, ctx) -> StepResult`"),
        (SyncRun(), "SyncRun.run must be `async def run(self, ctx)`, not a plain def"),
        (TwoArguments(), "TwoArguments.run must take one argument (the StepContext)"),
        (NoArgument(), "NoArgument.run must take one argument"),
        (ListSchema(), "ListSchema.config_schema is not a valid JSON Schema: must be a dict"),
        (BadSchema(), "BadSchema.config_schema is not a valid JSON Schema: $.type: 'objekt'"),
        (RemoteRef(), "the server never downloads schemas"),
        (AsyncCheck(), "AsyncCheck.check_config must be a plain def"),
    ],
)
def test_what_breaks_the_contract_is_refused_at_registration(handler: Any, fragment: str) -> None:
    registry = HandlerRegistry()
    with pytest.raises(InvalidHandler) as caught:
        registry.register("mine", handler)
    assert str(caught.value).startswith("step type 'mine': ")
    assert fragment in str(caught.value)
    assert "mine" not in registry


def test_a_step_type_must_be_named() -> None:
    with pytest.raises(InvalidHandler, match="non-empty string"):
        HandlerRegistry().register(" ", Good())


def test_schema_and_check_config_problems_come_together() -> None:
    registry = HandlerRegistry({"mine": Good()})
    assert registry.config_problems("mine", {"n": 13}, written=True) == [("n", "is unlucky")]
    assert registry.config_problems("mine", {"n": "x"}, written=True) == [
        ("n", "must be a whole number (got a string)")
    ]
    with pytest.raises(PermanentStepError, match=r"^config\.n: is unlucky$"):
        registry.check_resolved("mine", {"n": 13})


def test_a_handler_without_a_schema_gets_no_config_check() -> None:
    class Bare:
        async def run(self, ctx: StepContext) -> StepResult:
            return StepResult({})

    registry = HandlerRegistry({"bare": Bare()})
    assert registry.config_problems("bare", {"anything": [1, {"goes": True}]}, written=False) == []


def test_a_failing_check_config_is_reported_not_raised() -> None:
    registry = HandlerRegistry({"mine": BrokenCheck()})
    [(path, text)] = registry.config_problems("mine", {}, written=True)
    assert (path, text) == ("", "the mine step type's check_config failed: KeyError('oops')")
    # Where the schema already found the config wrong, the check's failure adds nothing.
    assert registry.config_problems("mine", {"n": "x"}, written=True) == [
        ("n", "must be a whole number (got a string)")
    ]


def test_schema_messages_are_sentences() -> None:
    schema = ConfigSchema(
        {
            "type": "object",
            "properties": {
                "mode": {"enum": ["a", "b"]},
                "when": {"type": "string", "pattern": "^[0-9]+$", "description": "digits"},
                "tags": {"type": "array", "uniqueItems": True, "maxItems": 2},
                "either": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
            },
            "additionalProperties": False,
            "dependentRequired": {"mode": ["when"]},
        }
    )
    found = schema.problems(
        {"mode": "c", "when": "soon", "tags": [1, 1, 2], "either": [], "mood": 1}, written=False
    )
    assert found == [
        ("either", "must be a string or a whole number (got a list)"),
        ("mode", "must be 'a' or 'b' (got 'c')"),
        ("mood", "is not a known key; did you mean 'mode'? Known keys: either, mode, tags, when."),
        ("tags", "lists the same value more than once"),
        ("tags", "must have at most 2 items"),
        ("when", "must be digits (got 'soon')"),
    ]
    assert schema.problems({"mode": "a"}, written=False) == [("mode", "needs when too")]


def test_a_condition_is_named_through_a_ref() -> None:
    schema = ConfigSchema(
        {
            "$defs": {
                "measure": {
                    "type": "object",
                    "if": {"properties": {"op": {"const": "sum"}}, "required": ["op"]},
                    "then": {"required": ["field"]},
                }
            },
            "type": "object",
            "additionalProperties": {"$ref": "#/$defs/measure"},
        }
    )
    assert schema.problems({"total": {"op": "sum"}}, written=False) == [
        ("total.field", "is required when op is 'sum'")
    ]


@pytest.mark.parametrize("schema", [{"type": 3}, {"properties": []}, {"minimum": "1"}])
def test_schemas_that_are_not_json_schema_are_refused(schema: dict[str, Any]) -> None:
    with pytest.raises(InvalidSchema, match=r"^\$"):
        ConfigSchema(schema)
