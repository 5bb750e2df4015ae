"""Memory: the server's RSS (VmRSS) as runs that stay in the server pile up.

--kind paused: 10,000 runs of a step followed by an approval gate, executed (each pauses).
--kind active: 1,000 runs whose first step sleeps (`hold`), executed and left running.
Run each kind against its own fresh server (the orchestrator does).

The batch is created twice. The first batch's growth also holds what a server allocates once,
whatever the number of runs (SQLite's page caches of up to 2 MB per connection, gRPC's buffers,
the allocator's arenas after the first burst of calls); the second batch's growth is what each
further run costs. Both are reported.
"""

from __future__ import annotations

import asyncio
import time

from bench import common, workload
from sluice.client import StepStatus, WorkflowClient, WorkflowStatus

CONCURRENCY = 100


async def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--kind", choices=("paused", "active"), required=True)
    args = p.parse_args()
    if not args.pid:
        common.fail("memory needs --pid of the server")
    paused = args.kind == "paused"
    count = common.scaled(10_000 if paused else 1_000, args.scale, minimum=100)
    async with WorkflowClient(args.address) as client:
        template = await workload.register(
            client, workload.gated() if paused else workload.holding(3600)
        )
        before = common.rss_kb(args.pid)
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one() -> None:
            async with gate:
                run = await client.create_workflow(template)
                done = await client.execute_workflow(run.id, wait=paused)
                if paused and done.status != WorkflowStatus.WORKFLOW_STATUS_PAUSED:
                    raise RuntimeError(f"run {run.id} is {WorkflowStatus.Name(done.status)}")

        async def batch(held: int) -> tuple[int, float]:
            """Create `count` more runs; RSS once they are all held, and the time it took."""
            begin = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(count)))
            if not paused:
                await wait_all_holding(client, held)
            took = time.perf_counter() - begin
            await asyncio.sleep(1)  # let the server settle (e.g. the last commits' buffers)
            return common.rss_kb(args.pid), took

        first, created_in = await batch(count)
        second, _ = await batch(2 * count)
    common.emit(
        {
            "kind": args.kind,
            "runs": count,
            "rss_before_mb": before / 1024,
            "rss_first_mb": first / 1024,
            "rss_after_mb": second / 1024,
            "kb_per_run_first": (first - before) / count,
            "kb_per_run": (second - first) / count,
            "setup_seconds": created_in,
        }
    )


async def wait_all_holding(client: WorkflowClient, count: int, timeout: float = 300) -> None:
    """Until `count` runs are RUNNING with their first step RUNNING."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        holding = 0
        async for run in client.iter_workflows(
            statuses=[WorkflowStatus.WORKFLOW_STATUS_RUNNING], page_size=1000
        ):
            holding += run.steps[0].status == StepStatus.STEP_STATUS_RUNNING
        if holding >= count:
            return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"not all {count} runs have a step in flight after {timeout}s")


if __name__ == "__main__":
    asyncio.run(main())
