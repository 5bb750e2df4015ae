"""Garbage collection while the server is idle, so that bursts do not pay for it.

Runs, their drivers and their timers live long in memory. Objects that survive a young
collection wait in the middle generation until that generation is collected, which walks all
of them at once: after 10,000 runs were created, the first such collection took 0.4-1.2 s,
and it tended to fall in the next burst of work (10,000 wait steps waking together), which it
delayed by as much. Collecting the middle generation (and, now and then, the old one) when the
event loop has been idle for a moment moves that walk out of the bursts. The total work is the
same; only its timing changes. Python still collects on its own schedule under load.
"""

from __future__ import annotations

import asyncio
import gc

import structlog

log = structlog.get_logger(__name__)

# The loop is idle when a short sleep comes back on time, twice running.
TICK = 0.25
IDLE_LAG = 0.002
# Full collections at idle once this many middle-generation collections happened since the
# last one (Python's own threshold is 10, with more conditions).
FULL_AFTER = 5


async def collect_when_idle(tick: float = TICK) -> None:
    loop = asyncio.get_running_loop()
    quiet = 0
    while True:
        began = loop.time()
        await asyncio.sleep(tick)
        quiet = quiet + 1 if loop.time() - began - tick < IDLE_LAG else 0
        if quiet < 2:
            continue
        # Young collections since the last middle one, middle ones since the last full one:
        # zero when nothing was allocated since, so an idle server does no work here.
        _, middle, old = gc.get_count()
        if old >= FULL_AFTER:
            gc.collect(2)
        elif middle > 0:
            gc.collect(1)
