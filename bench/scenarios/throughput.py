"""Throughput: 2,000 diamond-5 workflows, up to 500 in flight; workflows/s and steps/s.

With several servers (`--address A,B,...`, replicas on one database) the workflows are dealt
round-robin: workflow i is created and executed on server i mod N, over one channel per
server. CPU is measured per process over the measured part: each server's (`--pid`, in the
same order), this client's, and with `--pg-pid` (PostgreSQL's server process) PostgreSQL's,
every process of the cluster included. With `--sql-counts` (each server's socket from the
`bench.sqlcount` plugin) the statements the servers sent over the same part.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench import common, sqlcount, workload
from bench.scenarios.sequential import run_one
from sluice.client import WorkflowClient


def _csv(text: str) -> list[str]:
    return [part for part in text.split(",") if part]


async def main() -> None:
    p = common.parser(__doc__ or "", address=False)
    p.add_argument("--address", required=True, help="host:port of each server, comma-separated")
    p.add_argument("--pid", default="", help="each server's process id, comma-separated")
    p.add_argument("--in-flight", type=int, default=500)
    p.add_argument("--pg-pid", type=int, default=0, help="PostgreSQL's server process id")
    p.add_argument("--pg-database", default="", help="the database (to see others' activity)")
    p.add_argument("--sql-counts", default="", help="each server's sqlcount socket")
    args = p.parse_args()
    addresses, pids = _csv(args.address), [int(pid) for pid in _csv(args.pid)]
    sockets = _csv(args.sql_counts)
    count = common.scaled(2000, args.scale, minimum=100)
    clients = [WorkflowClient(address) for address in addresses]
    try:
        template = await workload.register(clients[0], workload.diamond())
        # Warm-up: each server's template cache and connections.
        await asyncio.gather(*(run_one(clients[i % len(clients)], template) for i in range(10)))
        gate = asyncio.Semaphore(args.in_flight)
        latencies: list[float] = []

        async def one(client: WorkflowClient) -> None:
            async with gate:
                begin = time.perf_counter()
                await run_one(client, template)
                latencies.append(time.perf_counter() - begin)

        others = await _other_transactions(args.pg_database)
        sql_before = [sqlcount.read(path) for path in sockets]
        cpu = common.CpuMeter()
        server_cpu = [common.proc_cpu_seconds(pid) for pid in pids]
        pg_cpu = common.tree_cpu_seconds(args.pg_pid) if args.pg_pid else 0.0
        begin = time.perf_counter()
        await asyncio.gather(*(one(clients[i % len(clients)]) for i in range(count)))
        wall = time.perf_counter() - begin
        pg_cpu = common.tree_cpu_seconds(args.pg_pid) - pg_cpu if args.pg_pid else 0.0
        server_cpu = [
            common.proc_cpu_seconds(pid) - s for pid, s in zip(pids, server_cpu, strict=True)
        ]
        client_cpu = cpu.seconds()
        sql = [
            sqlcount.delta(sqlcount.read(path), b)
            for path, b in zip(sockets, sql_before, strict=True)
        ]
        others = await _other_transactions(args.pg_database) - others
    finally:
        for client in clients:
            await client.close()
    result: dict[str, Any] = {
        "workflows": count,
        "in_flight": args.in_flight,
        "servers": len(addresses),
        "seconds": wall,
        "workflows_per_s": count / wall,
        "steps_per_s": count * workload.STEPS_PER_DIAMOND / wall,
        "latency_ms_p50": 1000 * common.percentile(latencies, 50),
        "latency_ms_p99": 1000 * common.percentile(latencies, 99),
        "client_cpu_pct": 100 * client_cpu / wall,
        "server_cpu_pct": 100 * sum(server_cpu) / wall if pids else None,
        # CPU seconds per workflow, process by process: where the work goes.
        "cpu_ms_per_workflow": {
            "servers": [1000 * s / count for s in server_cpu],
            "client": 1000 * client_cpu / count,
            **({"postgres": 1000 * pg_cpu / count} if args.pg_pid else {}),
        },
    }
    if args.pg_pid:
        result["pg_cpu_pct"] = 100 * pg_cpu / wall
    if args.pg_database:
        # Transactions in the cluster's other databases meanwhile (counted as PostgreSQL
        # hands them in, within a second or so): others' load on the machine and in pg_cpu.
        result["pg_other_transactions"] = others
    if sql:
        keys = ("statements", "rows", "commits", "checkouts")
        verbs = sorted({v for s in sql for v in s["by_verb"]})
        result["sql_per_workflow"] = {
            **{key: sum(s[key] for s in sql) / count for key in keys},
            "by_verb": {v: sum(s["by_verb"].get(v, 0) for s in sql) / count for v in verbs},
        }
    common.emit(result)


async def _other_transactions(database: str) -> int:
    if not database:
        return 0
    from bench import pgstat  # only when measuring PostgreSQL

    # pgstat's calls run their own event loop: in a thread of their own.
    return await asyncio.to_thread(pgstat.other_transactions, database)


if __name__ == "__main__":
    asyncio.run(main())
