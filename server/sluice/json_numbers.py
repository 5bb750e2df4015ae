"""JSON numbers as people and receivers expect them.

google.protobuf.Struct, which carries step config, params and outputs, keeps every number as a
double: a `count: 3` comes back as 3.0. People reading it, and services receiving it, want 3.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Doubles are exact integers up to 2**53; beyond that a float is what was stored.
_EXACT = 2**53


def whole_numbers(value: Any) -> Any:
    """`value` with every integral float (3.0) as an int (3), all through lists and objects."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= _EXACT:
        return int(value)
    if isinstance(value, Mapping):
        return {key: whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [whole_numbers(item) for item in value]
    return value
