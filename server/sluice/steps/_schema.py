"""Pieces of the built-in step types' config schemas (JSON Schema, draft 2020-12).

A key's `description` says what the value means; it fills the README's table of each type's
keys, with the standard `default` annotation beside it. A value checked by a pattern keeps the
pattern in a schema of its own (under `allOf`) whose description says the form, as a noun
phrase ("a time like 09:00"): a value that does not match is told it "must be" that.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

Schema = dict[str, Any]

# Display text. A number is fine too: "{{ params.bedrooms }}" may well stand for 3.
TEXT: Schema = {"type": ["string", "number"]}
STRING: Schema = {"type": "string"}
WEBHOOK_URL: Schema = {
    "type": "string",
    "description": "an http(s) URL whose host the server's SLUICE_WEBHOOK_ALLOW lists",
}


def text(description: str, **more: Any) -> Schema:
    return {**TEXT, "description": description, **more}


def string(description: str, **more: Any) -> Schema:
    return {**STRING, "description": description, **more}


_STRINGS: Schema = {
    "type": ["array", "string"],
    "items": TEXT,
    "description": "a list of texts, or one text with the items separated by commas",
}


def strings(description: str, **more: Any) -> Schema:
    """A list of texts, or one text of comma-separated items (a substituted param)."""
    return formed(description, _STRINGS, **more)


def names(choices: Sequence[str], description: str, **more: Any) -> Schema:
    """A non-empty list of some of `choices`, or the same names separated by commas."""
    one = "(?:" + "|".join(re.escape(c) for c in choices) + ")"
    return formed(
        description,
        {
            "type": ["array", "string"],
            "items": {"enum": list(choices)},
            "minItems": 1,
            "uniqueItems": True,
            "pattern": rf"^\s*{one}(?:\s*,\s*{one})*\s*$",
            "description": f"a list of {', '.join(choices)}, or those names in one text "
            "separated by commas",
        },
        **more,
    )


def formed(description: str, form: Schema, **more: Any) -> Schema:
    """A value of the `form` (a schema whose description names the form), meaning
    `description`."""
    return {"description": description, "allOf": [form], **more}


def choice(choices: Sequence[str], description: str, **more: Any) -> Schema:
    return {"enum": list(choices), "description": description, **more}


def whole_number(description: str, minimum: int = 0, **more: Any) -> Schema:
    return {"type": "integer", "minimum": minimum, "description": description, **more}


def obj(properties: Mapping[str, Schema], required: Sequence[str] = (), **more: Any) -> Schema:
    """An object with exactly these keys: a misspelt key is an error, not silently ignored."""
    schema: Schema = {"type": "object", "properties": dict(properties)}
    if required:
        schema["required"] = list(required)
    return {**schema, "additionalProperties": False, **more}


def when(key: str, value: str | Sequence[str], then: Schema) -> Schema:
    """`then` applies when config[key] is `value` (or one of the values): an if/then whose
    condition the error messages name ("is required when op is 'sum' or 'avg'")."""
    condition = {"const": value} if isinstance(value, str) else {"enum": list(value)}
    return {"if": {"properties": {key: condition}, "required": [key]}, "then": then}
