"""Diamond-5 as a Temporal workflow: five no-op activities a -> (b, c in parallel) -> d -> e.
Kept free of other imports: Temporal's sandbox re-imports this module for every run."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from temporalio import activity, workflow

TASK_QUEUE = "bench-diamond"
TIMEOUT = timedelta(seconds=60)

# Per activity: milliseconds from its scheduling (the server's time) to its start here.
DISPATCH_MS: list[float] = []


@activity.defn
async def noop(name: str) -> dict[str, str]:
    scheduled = activity.info().current_attempt_scheduled_time
    DISPATCH_MS.append((datetime.now(UTC) - scheduled).total_seconds() * 1000)
    return {}


@workflow.defn
class Diamond:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(noop, "a", start_to_close_timeout=TIMEOUT)
        await asyncio.gather(
            workflow.execute_activity(noop, "b", start_to_close_timeout=TIMEOUT),
            workflow.execute_activity(noop, "c", start_to_close_timeout=TIMEOUT),
        )
        await workflow.execute_activity(noop, "d", start_to_close_timeout=TIMEOUT)
        await workflow.execute_activity(noop, "e", start_to_close_timeout=TIMEOUT)
