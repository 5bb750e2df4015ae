"""`{{ params.NAME }}` and `{{ steps.STEP_ID.PATH }}` in step config: one small, safe syntax.

A reference is a dotted path, nothing more: no expressions, no calls. A string that is exactly
one reference takes the referenced value as is (a number stays a number); references inside a
longer string are rendered as text (JSON for objects and lists).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}")
_SEGMENT = re.compile(r"^[A-Za-z0-9_-]+$")


class SubstitutionError(ValueError):
    """A reference is malformed, or names something the run does not have."""


@dataclass(frozen=True, slots=True)
class Reference:
    root: str  # "params" or "steps"
    name: str  # the param name or the step id
    path: tuple[str, ...]  # further keys (or list indexes) into the value

    def __str__(self) -> str:
        return ".".join((self.root, self.name, *self.path))


def has_reference(value: Any) -> bool:
    """Whether `value` is a string holding a "{{ ... }}" reference: its final value (and type)
    is known only when the step runs."""
    return isinstance(value, str) and _PLACEHOLDER.search(value) is not None


def parse(text: str) -> Reference:
    segments = text.strip().split(".")
    if len(segments) < 2 or segments[0] not in ("params", "steps"):
        raise SubstitutionError(
            f"'{{{{{text}}}}}' must start with 'params.' or 'steps.', e.g. '{{{{ params.topic }}}}'"
        )
    if not all(_SEGMENT.match(s) for s in segments):
        raise SubstitutionError(f"'{{{{{text}}}}}' is not a dotted path of names")
    return Reference(segments[0], segments[1], tuple(segments[2:]))


def references(value: Any, where: str = "config") -> Iterator[tuple[str, Reference]]:
    """Every reference in a JSON value, with the path of the string it stands in.

    Raises SubstitutionError (with the location) for a malformed one.
    """
    if isinstance(value, str):
        for match in _PLACEHOLDER.finditer(value):
            try:
                yield where, parse(match.group(1))
            except SubstitutionError as exc:
                raise SubstitutionError(f"{where}: {exc}") from None
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from references(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from references(item, f"{where}[{index}]")


def resolve(value: Any, params: Mapping[str, Any], outputs: Mapping[str, Any]) -> Any:
    """`value` with every reference replaced; SubstitutionError if one cannot be resolved."""
    if isinstance(value, str):
        whole = _PLACEHOLDER.fullmatch(value.strip())
        if whole is not None:
            return _lookup(parse(whole.group(1)), params, outputs)
        return _PLACEHOLDER.sub(
            lambda m: _render(_lookup(parse(m.group(1)), params, outputs)), value
        )
    if isinstance(value, Mapping):
        return {key: resolve(item, params, outputs) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, params, outputs) for item in value]
    return value


def _lookup(ref: Reference, params: Mapping[str, Any], outputs: Mapping[str, Any]) -> Any:
    source = params if ref.root == "params" else outputs
    if ref.name not in source:
        kind = "parameter" if ref.root == "params" else "output of step"
        raise SubstitutionError(f"{{{{ {ref} }}}}: no {kind} {ref.name!r}")
    current = source[ref.name]
    for key in ref.path:
        if isinstance(current, Mapping) and key in current:
            current = current[key]
        elif isinstance(current, list) and key.isdigit() and int(key) < len(current):
            current = current[int(key)]
        else:
            raise SubstitutionError(f"{{{{ {ref} }}}}: no {key!r} in the value")
    return current


def _render(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value, sort_keys=True)
