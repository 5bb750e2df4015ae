"""Diamond-5 on DBOS Transact (SQLite system database, or the PostgreSQL one
`--database-url` names; default settings), run from bench/.peers-venv/: five no-op async steps
a -> (b, c with asyncio.gather) -> d -> e in one async workflow; every step's result is
checkpointed in the database as DBOS always does.

DBOS is a library: the workflows run in this process (there is no server to call), so the
figures include no RPC. Prints one JSON line: sequential and throughput, and the CPU this
process (and, with `--pg-pid`, PostgreSQL) spent per workflow in the throughput part.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from dbos import DBOS, DBOSConfig

from bench.common import tree_cpu_seconds


@DBOS.step()
async def noop(name: str) -> dict[str, str]:
    return {}


@DBOS.workflow()
async def diamond() -> None:
    await noop("a")
    await asyncio.gather(noop("b"), noop("c"))
    await noop("d")
    await noop("e")


async def run_one() -> None:
    handle = await DBOS.start_workflow_async(diamond)
    await handle.get_result()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def bench(sequential: int, throughput: int, in_flight: int, pg_pid: int) -> dict[str, float]:
    for _ in range(10):
        await run_one()
    took: list[float] = []
    for _ in range(sequential):
        begin = time.perf_counter()
        await run_one()
        took.append((time.perf_counter() - begin) * 1000)
    gate = asyncio.Semaphore(in_flight)

    async def one() -> None:
        async with gate:
            await run_one()

    cpu = own_cpu_seconds()
    pg_cpu = tree_cpu_seconds(pg_pid) if pg_pid else 0.0
    begin = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(throughput)))
    wall = time.perf_counter() - begin
    cpu = own_cpu_seconds() - cpu
    result = {
        "ms_median": percentile(took, 50),
        "ms_p99": percentile(took, 99),
        "workflows_per_s": throughput / wall,
        "steps_per_s": 5 * throughput / wall,
        "cpu_pct": 100 * cpu / wall,
        "cpu_ms_per_workflow": 1000 * cpu / throughput,
    }
    if pg_pid:
        pg_cpu = tree_cpu_seconds(pg_pid) - pg_cpu
        result["pg_cpu_pct"] = 100 * pg_cpu / wall
        result["pg_cpu_ms_per_workflow"] = 1000 * pg_cpu / throughput
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--scale", type=float, default=float(os.environ.get("SLUICE_BENCH_SCALE", 1)))
    p.add_argument("--in-flight", type=int, default=500)
    p.add_argument("--database-url", default="", help="PostgreSQL system database (default SQLite)")
    p.add_argument("--pg-pid", type=int, default=0, help="PostgreSQL's server process id")
    args = p.parse_args()
    sequential = max(20, round(200 * args.scale))
    throughput = max(100, round(2000 * args.scale))
    with tempfile.TemporaryDirectory(prefix="sluice-bench-dbos-") as tmp:
        config: DBOSConfig = {
            "name": "bench-diamond",
            "system_database_url": args.database_url or f"sqlite:///{Path(tmp) / 'dbos.sqlite'}",
            "log_level": "WARNING",
        }
        DBOS(config=config)
        DBOS.launch()
        try:
            result = asyncio.run(bench(sequential, throughput, args.in_flight, args.pg_pid))
        finally:
            DBOS.destroy()
    print(
        json.dumps(
            {
                "version": f"dbos {version('dbos')}",
                "workflows": sequential,
                "throughput_workflows": throughput,
                **result,
            }
        )
    )


if __name__ == "__main__":
    main()
