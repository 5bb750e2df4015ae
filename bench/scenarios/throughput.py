"""Throughput: 2,000 diamond-5 workflows, up to 500 in flight; workflows/s and steps/s.

With several servers (`--address A,B,...`, replicas on one database) the workflows are dealt
round-robin: workflow i is created and executed on server i mod N, over one channel per
server. CPU is measured per process over the measured part: each server's (`--pid`, in the
same order), this client's, and with `--pg-pid` (PostgreSQL's server process) PostgreSQL's,
every process of the cluster included, and with `--pg-database` as well that of the backends
serving this database alone (others' tests share the cluster), with the cluster's WAL
writes and syncs over the same part. With `--sql-counts` (each server's socket from the
`bench.sqlcount` plugin) the statements the servers sent over the same part.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench import common, pgstat, sqlcount, workload
from bench.notices import NoticeCounter
from bench.scenarios.sequential import run_one
from sluice.client import WorkflowClient

# A workflow that has not come to rest after this long will not: a no-op diamond takes
# seconds even at the back of 500 in flight on a busy machine.
STUCK_AFTER = 300.0


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

        stuck = 0

        async def one(client: WorkflowClient) -> None:
            nonlocal stuck
            async with gate:
                begin = time.perf_counter()
                try:
                    await asyncio.wait_for(run_one(client, template), STUCK_AFTER)
                except TimeoutError:
                    stuck += 1  # reported below, rather than a benchmark that never ends
                    return
                latencies.append(time.perf_counter() - begin)

        others = await _other_transactions(args.pg_database)
        wal = await _wal(args.pg_database)
        listener = await NoticeCounter.start(args.pg_database) if args.pg_database else None
        sql_before = [sqlcount.read(path) for path in sockets]
        own_db = (
            common.DatabaseCpu(args.pg_pid, args.pg_database)
            if args.pg_pid and args.pg_database
            else None
        )
        cpu = common.CpuMeter()
        server_cpu = [common.proc_cpu_seconds(pid) for pid in pids]
        pg_cpu = common.tree_cpu_seconds(args.pg_pid) if args.pg_pid else 0.0
        begin = time.perf_counter()
        await asyncio.gather(*(one(clients[i % len(clients)]) for i in range(count)))
        wall = time.perf_counter() - begin
        if stuck:
            common.fail(
                f"{stuck} of {count} workflows did not come to rest within {STUCK_AFTER:.0f} s "
                "(a run left RUNNING: see the servers' logs)"
            )
        pg_cpu = common.tree_cpu_seconds(args.pg_pid) - pg_cpu if args.pg_pid else 0.0
        server_cpu = [
            common.proc_cpu_seconds(pid) - s for pid, s in zip(pids, server_cpu, strict=True)
        ]
        db_cpu, backends = own_db.stop() if own_db else (0.0, 0)
        # The sampler thread's CPU is the benchmark's, not the client's.
        client_cpu = cpu.seconds() - (own_db.own_seconds if own_db else 0.0)
        sql = [
            sqlcount.delta(sqlcount.read(path), b)
            for path, b in zip(sockets, sql_before, strict=True)
        ]
        others = pgstat.others_since(others, await _other_transactions(args.pg_database))
        notices = await listener.stop() if listener else None
        wal_after = await _wal(args.pg_database)
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
    if own_db:
        # The backends serving this database alone, without the rest of the cluster.
        result["cpu_ms_per_workflow"]["postgres_database"] = 1000 * db_cpu / count
        result["pg_database_cpu_pct"] = 100 * db_cpu / wall
        result["pg_backends"] = backends
    if notices is not None:
        # The servers' NOTIFYs (each a transaction of its own in PostgreSQL, with an XID and
        # so a WAL flush at commit), and how many run ids each carried.
        result["notices_per_workflow"] = notices[0] / count
        result["run_ids_per_notice"] = notices[1] / notices[0] if notices[0] else 0.0
    if wal and wal_after:
        result["wal_per_workflow"] = {k: (wal_after[k] - wal[k]) / count for k in wal}
        result["wal_syncs_per_s"] = (wal_after["wal_sync"] - wal["wal_sync"]) / wall
    if args.pg_database:
        # Transactions in the cluster's other databases meanwhile (counted as PostgreSQL
        # hands them in, within a second or so): others' load on the machine and in pg_cpu.
        result["pg_other_transactions"] = others
    if sql:
        keys = ("statements", "rows", "commits", "checkouts", "connects")
        verbs = sorted({v for s in sql for v in s["by_verb"]})
        result["sql_per_workflow"] = {
            **{key: sum(s[key] for s in sql) / count for key in keys},
            "by_verb": {v: sum(s["by_verb"].get(v, 0) for s in sql) / count for v in verbs},
        }
    common.emit(result)


async def _wal(database: str) -> dict[str, int]:
    if not database:
        return {}
    return await asyncio.to_thread(pgstat.wal)


async def _other_transactions(database: str) -> dict[str, int]:
    if not database:
        return {}
    # pgstat's calls run their own event loop: in a thread of their own.
    return await asyncio.to_thread(pgstat.other_transactions, database)


if __name__ == "__main__":
    asyncio.run(main())
