"""Throughput: 2,000 diamond-5 workflows, up to 500 in flight; workflows/s and steps/s."""

from __future__ import annotations

import asyncio
import time

from bench import common, workload
from bench.scenarios.sequential import run_one
from sluice.client import WorkflowClient


async def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--in-flight", type=int, default=500)
    args = p.parse_args()
    count = common.scaled(2000, args.scale, minimum=100)
    async with WorkflowClient(args.address) as client:
        template = await workload.register(client, workload.diamond())
        await asyncio.gather(*(run_one(client, template) for _ in range(10)))  # warm-up
        gate = asyncio.Semaphore(args.in_flight)
        latencies: list[float] = []

        async def one() -> None:
            async with gate:
                begin = time.perf_counter()
                await run_one(client, template)
                latencies.append(time.perf_counter() - begin)

        cpu = common.CpuMeter()
        server_cpu = common.proc_cpu_seconds(args.pid) if args.pid else 0.0
        begin = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(count)))
        wall = time.perf_counter() - begin
    common.emit(
        {
            "workflows": count,
            "in_flight": args.in_flight,
            "seconds": wall,
            "workflows_per_s": count / wall,
            "steps_per_s": count * workload.STEPS_PER_DIAMOND / wall,
            "latency_ms_p50": 1000 * common.percentile(latencies, 50),
            "latency_ms_p99": 1000 * common.percentile(latencies, 99),
            "client_cpu_pct": cpu.percent(),
            "server_cpu_pct": (
                100 * (common.proc_cpu_seconds(args.pid) - server_cpu) / wall if args.pid else None
            ),
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
