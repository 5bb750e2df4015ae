"""Waiting for a condition a test cannot be told about: ask again until it holds, or fail."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T | None]], timeout: float = 10, every: float = 0.05
) -> T:
    """The first truthy answer of `check`, asked every `every` seconds (TimeoutError after
    `timeout`)."""
    async with asyncio.timeout(timeout):
        while True:
            found = await check()
            if found:
                return found
            await asyncio.sleep(every)
