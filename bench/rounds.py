"""A scenario's rounds (`--rounds N`) as one result: each figure's median."""

from __future__ import annotations

import statistics
from typing import Any


def merge(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One scenario's rounds as one result: the first error if a round errored (or the reason
    a peer was not available), else each figure's median over the rounds."""
    for key in ("error", "unavailable"):
        failed = [r for r in rounds if key in r]
        if failed:
            return {key: failed[0][key] + (f" (in {len(failed)} of {len(rounds)} rounds)"
                                           if len(rounds) > 1 else "")}  # fmt: skip
    merged = _median(rounds)
    assert isinstance(merged, dict)
    return {**merged, "rounds": len(rounds)}


def _median(values: list[Any]) -> Any:
    first = values[0]
    if isinstance(first, bool) or first is None or isinstance(first, str):
        return first
    if isinstance(first, int | float):
        numbers = [v for v in values if isinstance(v, int | float)]
        return statistics.median(numbers)
    if isinstance(first, dict):
        return {k: _median([v[k] for v in values if k in v]) for k in first}
    if isinstance(first, list) and all(len(v) == len(first) for v in values):
        return [_median([v[i] for v in values]) for i in range(len(first))]
    return first
