"""List replies that fit in one gRPC message: a page holds what fits (AIP-158 allows a short
page) and the rest follows from the last item sent."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from google.protobuf.message import Message

# Room kept in a reply for its page token and framing, and what each item adds to its own
# size in the reply (field tag and length prefix).
RESPONSE_MARGIN = 1024
FIELD_OVERHEAD = 6

T = TypeVar("T")
M = TypeVar("M", bound=Message)


def fill(
    target: RepeatedCompositeFieldContainer[M],
    items: Sequence[T],
    put: Callable[[T, M], M],
    max_bytes: int,
) -> int:
    """Write `items` into `target` (`put(item, target.add())`) while the reply stays under
    `max_bytes`; how many it holds. The first always goes in: a page is never empty."""
    budget = max_bytes - RESPONSE_MARGIN
    for i, item in enumerate(items):
        budget -= put(item, target.add()).ByteSize() + FIELD_OVERHEAD
        if budget < 0 and i > 0:
            del target[-1]
            return i
    return len(items)
