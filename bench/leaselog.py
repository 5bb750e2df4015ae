"""Logs the timing of a server's lease work, for the failover benchmark.

The plugin `bench.leaselog:register` (loaded with SLUICE_PLUGINS) wraps, in the server
process, the lease store's `renew` and the engine's `_claim` (a claim of expired runs and the
resumption of what it took: the heartbeat waits for both before its next renewal), and logs
one line per call: `bench lease call` with `op`, `seconds` and `runs`. The failover scenario
reads them back from the survivors' logs: the longest gap between two renewals of a server
says how close it came to losing its own leases (a gap longer than the lease TTL loses them).
Measurement only: the wrapped methods behave as before.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from sluice.runtime.driver import Engine
from sluice.store.postgres_leases import PostgresLeases

log = structlog.get_logger("bench.leaselog")
MESSAGE = "bench lease call"


def _timed(
    op: str, method: Callable[..., Awaitable[Any]], runs: Callable[[Any], int]
) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        begin = time.monotonic()
        result = await method(*args, **kwargs)
        log.info(MESSAGE, op=op, seconds=round(time.monotonic() - begin, 4), runs=runs(result))
        return result

    return wrapper


def register(registry: object) -> None:
    """Adds no step type; wraps the lease calls once per process."""
    if getattr(PostgresLeases.renew, "__wrapped__", None) is None:
        PostgresLeases.renew = _timed("renew", PostgresLeases.renew, int)  # type: ignore[method-assign]
        Engine._claim = _timed("claim", Engine._claim, int)  # type: ignore[method-assign]
