"""Watch fan-out: 1,000 concurrent WatchWorkflow streams over 100 running workflows.

Each run is a chain of 20 steps (so it keeps emitting events for a while); every run has the
same number of watchers. The steps are no-ops by default: the runs then produce events faster
than the server can send them to ten watchers each, and latency measures the backlog. With
`--step-seconds S` each step takes S seconds on average (+/- 50 %) and the runs start spread
over S seconds: a steady load below the server's capacity, where latency measures delivery
itself. All streams are open (each has received the stored
WORKFLOW_CREATED) before the runs start. Reported: events delivered per second over all
streams, and latency from an event's time (stamped by the server just before the transaction
that stores it commits) to its arrival at the client.
"""

from __future__ import annotations

import asyncio
import time

from bench import common, workload
from sluice.client import EventType, WorkflowClient

CHAIN = 20


async def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--channels", type=int, default=4, help="gRPC channels to spread streams on")
    p.add_argument(
        "--step-seconds", type=float, default=0.0, help="each step's duration (0: no-op)"
    )
    args = p.parse_args()
    runs = common.scaled(100, args.scale, minimum=10)
    watchers = common.scaled(1000, args.scale, minimum=100)
    clients = [WorkflowClient(args.address) for _ in range(args.channels)]
    try:
        template = await workload.register(clients[0], workload.chain(CHAIN, args.step_seconds))
        ids = [(await clients[0].create_workflow(template)).id for _ in range(runs)]
        opened = 0
        all_open = asyncio.Event()
        latencies: list[float] = []
        last_arrival = 0.0

        async def watch(client: WorkflowClient, run_id: str) -> None:
            nonlocal opened, last_arrival
            async for event in client.watch(run_id):
                now = time.time()
                if event.type == EventType.EVENT_TYPE_WORKFLOW_CREATED:
                    opened += 1
                    if opened == watchers:
                        all_open.set()
                    continue
                latencies.append(now - (event.time.seconds + event.time.nanos / 1e9))
                last_arrival = time.perf_counter()

        async def start(i: int, run_id: str) -> None:
            # Steady load: the starts spread over one mean step duration, as runs that did not
            # all begin at the same instant (no-op steps: all at once, the harshest burst).
            await asyncio.sleep(i * args.step_seconds / runs)
            await clients[0].execute_workflow(run_id)

        tasks = [
            asyncio.create_task(watch(clients[i % len(clients)], ids[i % runs]))
            for i in range(watchers)
        ]
        await asyncio.wait_for(all_open.wait(), 120)
        cpu = common.CpuMeter()
        server_cpu = common.proc_cpu_seconds(args.pid) if args.pid else 0.0
        begin = time.perf_counter()
        await asyncio.gather(*(start(i, run_id) for i, run_id in enumerate(ids)))
        await asyncio.wait_for(asyncio.gather(*tasks), 600)
        wall = last_arrival - begin
        client_cpu = cpu.percent()
    finally:
        for client in clients:
            await client.close()
    common.emit(
        {
            "runs": runs,
            "watchers": watchers,
            "events_delivered": len(latencies),
            "seconds": wall,
            "events_per_s": len(latencies) / wall,
            "latency_ms_p50": 1000 * common.percentile(latencies, 50),
            "latency_ms_p99": 1000 * common.percentile(latencies, 99),
            "client_cpu_pct": client_cpu,
            "server_cpu_pct": (
                100 * (common.proc_cpu_seconds(args.pid) - server_cpu) / wall if args.pid else None
            ),
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
