"""Free-form data (params, step outputs) for people: JSON text, integral numbers as integers.

google.protobuf.Struct keeps every number as a double, so a step's `count: 3` comes back as
3.0; machine output (--json) stays proto JSON, but people see 3.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format, struct_pb2

from sluice.json_numbers import whole_numbers


def plain(value: struct_pb2.Struct | struct_pb2.Value | struct_pb2.ListValue) -> Any:
    """The Python data of a Struct, Value or ListValue, integral numbers as ints."""
    return whole_numbers(json_format.MessageToDict(value))


def number(value: float) -> str:
    """`0.7` as 0.7 and `3.0` as 3."""
    return json.dumps(whole_numbers(value))


def to_text(data: Any, *, indent: int | None = None) -> str:
    separators = None if indent else (", ", ": ")
    return json.dumps(data, ensure_ascii=False, indent=indent, separators=separators)


def summary_lines(
    data: dict[str, Any], *, max_keys: int = 8, width: int = 100
) -> tuple[list[str], bool]:
    """One `key: value` line per top-level key, each cut to `width`, at most `max_keys`; and
    whether anything was cut."""
    lines = []
    for key, value in list(data.items())[:max_keys]:
        line = f"{key}: {to_text(value)}"
        lines.append(line if len(line) <= width else line[: width - 1] + "…")
    cut = len(data) > max_keys or any(line.endswith("…") for line in lines)
    if len(data) > max_keys:
        lines.append(f"… {len(data) - max_keys} more")
    return lines, cut
