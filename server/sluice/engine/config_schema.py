"""Step config checked against the JSON Schema (draft 2020-12) its step type declares.

The one module that uses the jsonschema library. Its own messages are often poor ("{...} is
not valid under any of the given schemas"), so each kind of failure is rewritten here into a
sentence that says what to write, at the path of the value it is about.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, cast

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from sluice.engine.substitution import has_reference

# (path inside the config, e.g. "aggregations.total.op" or "" for the config itself; a sentence)
Problem = tuple[str, str]

# Per step: a config with more problems than this is better fixed a few at a time.
MAX_PROBLEMS = 10

_TYPE_NAMES = {
    "string": "a string",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
    "null": "null",
}
_META = Draft202012Validator(Draft202012Validator.META_SCHEMA)


class InvalidSchema(ValueError):
    """A declared config schema that is not a JSON Schema this server can use."""


class ConfigSchema:
    """A step type's config schema, checked once when it is registered."""

    def __init__(self, schema: object) -> None:
        if not isinstance(schema, Mapping):
            raise InvalidSchema(f"must be a dict (a JSON Schema object), not {json_type(schema)}")
        error = best_match(_META.iter_errors(schema))
        if error is not None:
            raise InvalidSchema(f"{error.json_path}: {error.message}")
        remote = next(_remote_refs(schema), None)
        if remote is not None:
            raise InvalidSchema(
                f"$ref {remote!r} is not inside the schema; the server never downloads schemas: "
                "put the definition under $defs and refer to it as '#/$defs/NAME'"
            )
        self.schema = schema
        self._validator = Draft202012Validator(schema)

    def problems(self, config: Mapping[str, Any], *, written: bool) -> list[Problem]:
        """Every way `config` does not fit the schema, each once, in the order of their paths.

        `written`: the config as a template has it, where a "{{ ... }}" string stands for a value
        of any type known only at run time: such values are not judged (the engine checks the
        resolved config again before each attempt).
        """
        found: dict[Problem, None] = {}
        for error in self._validator.iter_errors(config):
            if written and _stands_in(error):
                continue
            found.update(dict.fromkeys(self._describe(error)))
        return sorted(found, key=lambda problem: problem[0])

    def _describe(self, error: ValidationError) -> Iterator[Problem]:
        where = list(error.absolute_path)
        kind, value = error.validator, error.instance
        expected: Any = error.validator_value
        if kind == "required":
            condition = self._condition(error)
            for name in expected:
                if isinstance(value, Mapping) and name not in value:
                    yield _path([*where, name]), "is required" + condition
        elif kind in ("additionalProperties", "unevaluatedProperties"):
            known = (
                sorted(error.schema.get("properties", {}))
                if isinstance(error.schema, Mapping)
                else []
            )
            for name in _unexpected(error):
                yield _path([*where, name]), _unknown_key(name, known)
        elif kind in ("anyOf", "oneOf"):
            yield from self._alternatives(error, where)
        elif kind == "dependentRequired" and isinstance(value, Mapping):
            for name, needs in expected.items():
                missing = [n for n in needs if name in value and n not in value]
                if missing:
                    yield _path([*where, name]), f"needs {_either(missing, 'and')} too"
        else:
            yield _path(where), _sentence(error)

    def _alternatives(self, error: ValidationError, where: list[str | int]) -> Iterator[Problem]:
        branches = list(error.context or ())
        if branches and all(b.validator == "required" and not b.relative_path for b in branches):
            listed = (cast(list[str], b.validator_value) for b in branches)
            names = list(dict.fromkeys(name for names in listed for name in names))
            rule = "exactly one of" if error.validator == "oneOf" else "at least one of"
            yield _path(where), f"needs {rule} {_either(names, 'or')}{self._condition(error)}"
            return
        if branches and all(b.validator == "type" and not b.relative_path for b in branches):
            types = [t for b in branches for t in _listed_types(b.validator_value)]
            yield _path(where), f"must be {_types(types)} (got {json_type(error.instance)})"
            return
        description = error.schema.get("description") if isinstance(error.schema, Mapping) else None
        if description:
            yield _path(where), f"must be {description} (got {_short(error.instance)})"
            return
        best = best_match(branches)
        if best is None:  # oneOf with more than one branch matching
            yield _path(where), "fits more than one of the forms allowed here; make it fit one"
        else:
            yield from self._describe(best)

    def _condition(self, error: ValidationError) -> str:
        """The clause " when transformation is 'aggregate'" for a rule under an if/then."""
        schema_path = list(error.absolute_schema_path)
        if len(schema_path) < 2 or schema_path[-2] != "then":
            return ""
        condition: Any = self.schema
        for key in [*schema_path[:-2], "if"]:
            # jsonschema's paths go through a $ref without naming it: follow it where the key
            # is not beside it.
            if isinstance(condition, Mapping) and key not in condition and "$ref" in condition:
                condition = _local(self.schema, str(condition["$ref"]))
            condition = _child(condition, key)
        properties = condition.get("properties", {}) if isinstance(condition, Mapping) else {}
        parts = []
        for name, rule in properties.items():
            if "const" in rule:
                parts.append(f"{name} is {_short(rule['const'])}")
            elif "enum" in rule:
                parts.append(f"{name} is {_either([_short(v) for v in rule['enum']], 'or')}")
        return f" when {' and '.join(parts)}" if parts else ""


def cap(problems: list[Problem]) -> list[Problem]:
    """At most MAX_PROBLEMS, the last saying how many more there were."""
    if len(problems) <= MAX_PROBLEMS:
        return problems
    hidden = len(problems) - MAX_PROBLEMS + 1
    return [*problems[: MAX_PROBLEMS - 1], ("", f"and {hidden} more problems in this config")]


def field_path(base: str, path: str) -> str:
    """`steps[2].config` + `aggregations.total.op` (or `checks[1]`, or "")."""
    if not path:
        return base
    return base + path if path.startswith("[") else f"{base}.{path}"


def _sentence(error: ValidationError) -> str:
    kind, value = error.validator, error.instance
    expected: Any = error.validator_value
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    match kind:
        case "type":
            return f"must be {_types(_listed_types(expected))} (got {json_type(value)})"
        case "enum":
            rule = "one of " if len(expected) > 2 else ""
            return f"must be {rule}{_either([_short(v) for v in expected], 'or')} (got {_short(value)})"
        case "const":
            return f"must be {_short(expected)} (got {_short(value)})"
        case "pattern":
            description = schema.get("description") or f"text matching {expected}"
            return f"must be {description} (got {_short(value)})"
        case "minimum":
            return f"must be at least {_short(expected)} (got {_short(value)})"
        case "exclusiveMinimum":
            return f"must be more than {_short(expected)} (got {_short(value)})"
        case "maximum":
            return f"must be at most {_short(expected)} (got {_short(value)})"
        case "exclusiveMaximum":
            return f"must be less than {_short(expected)} (got {_short(value)})"
        case "minItems" | "minProperties" | "minLength" if expected == 1:
            return "must not be empty"
        case "minItems":
            return f"must have at least {expected} items"
        case "maxItems":
            return f"must have at most {expected} items"
        case "minProperties":
            return f"must have at least {expected} entries"
        case "maxProperties":
            return f"must have at most {expected} entries"
        case "minLength":
            return f"must be at least {expected} characters long"
        case "maxLength":
            return f"must be at most {expected} characters long"
        case "uniqueItems":
            return "lists the same value more than once"
        case "multipleOf":
            return f"must be a multiple of {_short(expected)} (got {_short(value)})"
        case "not" | None:  # None: a `false` schema, which allows nothing
            return "is not allowed here"
    return _cut(error.message, 200)


def _listed_types(expected: Any) -> list[str]:
    return [expected] if isinstance(expected, str) else list(expected)


def _types(types: list[str]) -> str:
    return _either([_TYPE_NAMES.get(t, t) for t in dict.fromkeys(types)], "or")


def _stands_in(error: ValidationError) -> bool:
    """Whether the error is about a "{{ ... }}" string (or a problem found inside one of the
    forms it could take): its real value is checked once resolved."""
    if has_reference(error.instance):
        return True
    return any(has_reference(b.instance) for b in error.context or ())


def _unexpected(error: ValidationError) -> list[str]:
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    value = error.instance if isinstance(error.instance, Mapping) else {}
    known = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    return [
        name
        for name in value
        if name not in known and not any(re.search(p, name) for p in patterns)
    ]


def _unknown_key(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    listed = f" Known keys: {', '.join(known)}." if known else ""
    return f"is not a known key{hint}{listed}" if hint else f"is not a known key.{listed}"


def _local(schema: Mapping[str, Any], ref: str) -> Any:
    """The part of `schema` a local $ref ("#/$defs/name") points at, or None."""
    current: Any = schema
    for token in ref.removeprefix("#").split("/")[1:]:
        key = token.replace("~1", "/").replace("~0", "~")
        current = _child(current, int(key) if key.isdigit() else key)
    return current


def _child(value: Any, key: str | int) -> Any:
    """value[key] for a JSON object or list, or None when it has no such entry."""
    if isinstance(value, Mapping):
        return value.get(key)
    if isinstance(value, list) and isinstance(key, int) and 0 <= key < len(value):
        return value[key]
    return None


def _remote_refs(schema: Any) -> Iterator[str]:
    if isinstance(schema, Mapping):
        for key, value in schema.items():
            if (
                key in ("$ref", "$dynamicRef")
                and isinstance(value, str)
                and not value.startswith("#")
            ):
                yield value
            else:
                yield from _remote_refs(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _remote_refs(item)


def _path(parts: Iterable[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _either(items: Sequence[str], word: str) -> str:
    items = [str(i) for i in items]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {word} {items[-1]}"


def _short(value: Any, limit: int = 60) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    return _cut(text, limit)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_type(value: Any) -> str:
    """The kind of a JSON value, for messages: "a string", "a list", ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__
