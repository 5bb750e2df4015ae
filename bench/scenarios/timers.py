"""Timers: many runs asleep in wait steps, held by one server, all waking in the same second.

Two batches of runs (5,000 each at full scale) whose one step waits until the same time `at`,
far enough ahead for both batches to be created and asleep before it. Reported:
- server RSS per sleeping run, from the second batch (the first also pays the server's one-off
  allocations, as in the memory scenario: both are given);
- wake-up lateness when they all wake together: per run, the wait step's `wokeAt` (the time the
  engine completed it) minus `wakeAt`, and the run's end (its completion committed) minus
  `at`; p50, p99 and the worst.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from google.protobuf import json_format

from bench import common, workload
from sluice.client import StepStatus, WorkflowClient, WorkflowStatus, WorkflowView

CONCURRENCY = 100
# Runs created per second, at least, on this kind of machine (the memory scenario's batches run
# at about 600/s): `at` leaves room for twice as slow.
CREATION_RATE = 300.0


async def main() -> None:
    p = common.parser(__doc__ or "")
    args = p.parse_args()
    if not args.pid:
        common.fail("timers needs --pid of the server")
    half = common.scaled(5_000, args.scale, minimum=100)
    async with WorkflowClient(args.address) as client:
        template = await workload.register(client, workload.waiting())
        at = datetime.now(UTC) + timedelta(seconds=max(20.0, 2 * half / CREATION_RATE + 10))
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one() -> None:
            async with gate:
                run = await client.create_workflow(template, {"at": at.isoformat()})
                await client.execute_workflow(run.id)

        async def batch(asleep: int) -> int:
            await asyncio.gather(*(one() for _ in range(half)))
            await wait_all_asleep(client, asyncio.get_running_loop().time() + 120, asleep)
            await asyncio.sleep(1)  # let the server settle
            return common.rss_kb(args.pid)

        before = common.rss_kb(args.pid)
        first = await batch(half)
        second = await batch(2 * half)
        if datetime.now(UTC) >= at:
            common.fail("the runs were not all asleep before they were due: raise the margin")
        await asyncio.sleep((at - datetime.now(UTC)).total_seconds())
        woke, ended = await lateness(client, 2 * half)
    common.emit(
        {
            "runs": 2 * half,
            "rss_before_mb": before / 1024,
            "rss_first_mb": first / 1024,
            "rss_after_mb": second / 1024,
            "kb_per_run_first": (first - before) / half,
            "kb_per_run": (second - first) / half,
            "woke_late_ms_p50": common.percentile(woke, 50) * 1000,
            "woke_late_ms_p99": common.percentile(woke, 99) * 1000,
            "woke_late_ms_max": max(woke) * 1000,
            "ended_late_ms_p50": common.percentile(ended, 50) * 1000,
            "ended_late_ms_p99": common.percentile(ended, 99) * 1000,
            "ended_late_ms_max": max(ended) * 1000,
        }
    )


async def wait_all_asleep(client: WorkflowClient, deadline: float, count: int) -> None:
    """Until `count` runs are RUNNING with their wait step waiting."""
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        asleep = 0
        async for run in client.iter_workflows(
            statuses=[WorkflowStatus.WORKFLOW_STATUS_RUNNING], page_size=1000
        ):
            asleep += run.steps[0].status == StepStatus.STEP_STATUS_RUNNING
        if asleep >= count:
            return
        await asyncio.sleep(0.5)
    common.fail(f"fewer than {count} runs asleep after 120 s")


async def lateness(client: WorkflowClient, count: int) -> tuple[list[float], list[float]]:
    """Once all `count` runs completed: each run's wake lateness and end lateness, seconds."""
    begin = time.monotonic()
    while True:
        done = [
            run
            async for run in client.iter_workflows(
                statuses=[WorkflowStatus.WORKFLOW_STATUS_COMPLETED],
                page_size=1000,
                view=WorkflowView.WORKFLOW_VIEW_FULL,
            )
        ]
        if len(done) >= count:
            break
        if time.monotonic() - begin > 300:
            common.fail(f"{len(done)} of {count} runs completed 300 s after they were due")
        await asyncio.sleep(0.5)
    woke, ended = [], []
    for run in done:
        output = json_format.MessageToDict(run.steps[0].output)
        wake_at = datetime.fromisoformat(output["wakeAt"])
        woke.append((datetime.fromisoformat(output["wokeAt"]) - wake_at).total_seconds())
        ended.append((run.end_time.ToDatetime(UTC) - wake_at).total_seconds())
    return woke, ended


if __name__ == "__main__":
    asyncio.run(main())
