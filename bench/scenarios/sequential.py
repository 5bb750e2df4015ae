"""Sequential: create + execute(wait) of one diamond-5 workflow at a time; ms per workflow."""

from __future__ import annotations

import asyncio
import time

from bench import common, workload
from sluice.client import WorkflowClient, WorkflowStatus

WARMUP = 10


async def main() -> None:
    args = common.parser(__doc__ or "").parse_args()
    count = common.scaled(200, args.scale, minimum=20)
    async with WorkflowClient(args.address) as client:
        template = await workload.register(client, workload.diamond())
        for _ in range(WARMUP):
            await run_one(client, template)
        cpu = common.CpuMeter()
        server_cpu = common.proc_cpu_seconds(args.pid) if args.pid else 0.0
        took: list[float] = []
        events = 0
        for _ in range(count):
            begin = time.perf_counter()
            events = await run_one(client, template)
            took.append((time.perf_counter() - begin) * 1000)
        wall = sum(took) / 1000
    common.emit(
        {
            "workflows": count,
            "ms_median": common.percentile(took, 50),
            "ms_p99": common.percentile(took, 99),
            "ms_mean": sum(took) / count,
            "events_per_workflow": events,
            "client_cpu_pct": cpu.percent(),
            "server_cpu_pct": (
                100 * (common.proc_cpu_seconds(args.pid) - server_cpu) / wall if args.pid else None
            ),
        }
    )


async def run_one(client: WorkflowClient, template: str) -> int:
    run = await client.create_workflow(template)
    done = await client.execute_workflow(run.id, wait=True)
    if done.status != WorkflowStatus.WORKFLOW_STATUS_COMPLETED:
        raise RuntimeError(f"run {run.id} ended {WorkflowStatus.Name(done.status)}: {done.error}")
    return int(done.last_sequence)


if __name__ == "__main__":
    asyncio.run(main())
