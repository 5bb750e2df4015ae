"""The README's table of a step type's config keys, written from the type's schema, so that the
README cannot drift from what validation enforces."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

_TYPES = {
    "string": "text",
    "number": "number",
    "integer": "whole number",
    "boolean": "true or false",
    "array": "list",
    "object": "object",
}
# Nested objects with more keys than this are one row (a schedule's seven weekdays, say).
_EXPANDED_KEYS = 4


def config_table(step_type: str, schema: Mapping[str, Any]) -> str:
    lines = [
        f"`{step_type}` config:",
        "",
        "| key | value | meaning |",
        "|---|---|---|",
        *(_row(key, rule, required) for key, rule, required in _rows(schema, "")),
    ]
    notes = list(_conditions(schema))
    return "\n".join(lines + (["", *notes] if notes else []))


def _rows(schema: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, Mapping[str, Any], bool]]:
    required = set(schema.get("required", ()))
    for key, rule in schema.get("properties", {}).items():
        nested = rule.get("properties", {})
        values = rule.get("additionalProperties")
        if nested and len(nested) <= _EXPANDED_KEYS:
            yield from _rows(rule, f"{prefix}{key}.")
        elif isinstance(values, Mapping) and values.get("properties"):
            yield prefix + key, rule, key in required
            yield from _rows(values, f"{prefix}{key}.NAME.")
        else:
            yield prefix + key, rule, key in required


def _row(key: str, rule: Mapping[str, Any], required: bool) -> str:
    value = _value(rule)
    if required:
        value = f"**required**; {value}"
    meaning = rule.get("description", "")
    if "default" in rule:
        meaning += f" (default `{_literal(rule['default'])}`)"
    return f"| `{key}` | {value} | {meaning} |"


def _value(rule: Mapping[str, Any]) -> str:
    forms = [f for f in rule.get("allOf", ()) if "description" in f]
    if forms:
        return str(forms[0]["description"])
    if "enum" in rule:
        return _either([f"`{v}`" for v in rule["enum"]])
    if "type" not in rule:
        return "any JSON value"
    types = [rule["type"]] if isinstance(rule["type"], str) else rule["type"]
    names = [_TYPES[t] for t in types]
    items = rule.get("items", {}).get("type")
    if "array" in types and items in _TYPES:
        names[types.index("array")] = f"list of {_TYPES[items]}s"
    text = _either(names)
    if "minimum" in rule:
        text += f" >= {rule['minimum']}"
    if rule.get("minProperties") == 1 or rule.get("minItems") == 1:
        text = f"non-empty {text}"
    return text


def _conditions(schema: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """The if/then rules of an object (and of the objects inside it), as sentences."""
    for rule in [schema, *schema.get("allOf", ())]:
        if "if" not in rule:
            continue
        ((key, condition),) = rule["if"]["properties"].items()
        then = rule["then"]
        values = condition.get("enum", [condition.get("const")])
        when = f"With `{prefix}{key}` {_either([f'`{v}`' for v in values])}"
        if "required" in then:
            names = [f"`{prefix}{k}`" for k in then["required"]]
            yield f"- {when}, {_either(names)} is required."
        if "anyOf" in then:
            names = [f"`{prefix}{k}`" for branch in then["anyOf"] for k in branch["required"]]
            yield f"- {when}, at least one of {_either(names)} is required."
    for key, rule in schema.get("properties", {}).items():
        values = rule.get("additionalProperties")
        if isinstance(values, Mapping):
            yield from _conditions(values, f"{prefix}{key}.NAME.")
        elif "properties" in rule:
            yield from _conditions(rule, f"{prefix}{key}.")


def _literal(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _either(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"
