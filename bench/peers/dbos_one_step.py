"""One-step workflows on DBOS Transact with its system database on PostgreSQL, for
bench/postgres_hotpath.py: run from bench/.peers-venv/ (`make bench-peers`).

The same shape as the Sluice side of that benchmark: a workflow of one no-op async step,
started and awaited (create + execute + wait); sequential (one at a time), then throughput
(`--clients` callers, each starting the next workflow as soon as its last one finished).
DBOS is a library: its workflows run in this process, so there is no RPC in its figures.

Transactions per workflow are PostgreSQL's own count (pg_stat_database.xact_commit of the
database) over each measured part, read after a pause long enough for the backends to hand in
their statistics (they do at most once a second). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from importlib.metadata import version

import psycopg
from dbos import DBOS, DBOSConfig

# A backend hands in its statistics at most once a second, and one that had to skip a hand-in
# because of that does it after 10 s idle (PGSTAT_IDLE_INTERVAL).
STATS_SETTLE_SECONDS = 11.0


@DBOS.step()
async def noop() -> dict[str, str]:
    return {}


@DBOS.workflow()
async def one_step() -> None:
    await noop()


async def run_one() -> None:
    handle = await DBOS.start_workflow_async(one_step)
    await handle.get_result()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def commits(admin_url: str, database: str) -> tuple[int, int]:
    """(xact_commit, xact_rollback) of `database`, once the backends' counts have come in."""
    await asyncio.sleep(STATS_SETTLE_SECONDS)
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = %s",
            (database,),
        )
        row = await cursor.fetchone()
        assert row is not None
        return int(row[0]), int(row[1])


async def mark(args: argparse.Namespace, name: str) -> None:
    """With --marks: a statement in the database's log that starts or ends a measured part
    (bench/postgres_hotpath.py counts the statements between)."""
    if args.marks:
        async with await psycopg.AsyncConnection.connect(
            args.database_url, autocommit=True
        ) as conn:
            await conn.execute(f"SELECT 'bench-mark:{name}'")


async def bench(args: argparse.Namespace) -> dict[str, float]:
    for _ in range(10):
        await run_one()
    before = await commits(args.admin_url, args.database)
    await mark(args, "seq-start")
    took: list[float] = []
    for _ in range(args.sequential):
        begin = time.perf_counter()
        await run_one()
        took.append((time.perf_counter() - begin) * 1000)
    await mark(args, "seq-end")
    after = await commits(args.admin_url, args.database)
    result = {
        "seq_ms_p50": percentile(took, 50),
        "seq_ms_p99": percentile(took, 99),
        "seq_ms_mean": sum(took) / len(took),
        "seq_commits_per_wf": (after[0] - before[0]) / args.sequential,
        "seq_rollbacks_per_wf": (after[1] - before[1]) / args.sequential,
    }

    left = args.throughput
    latencies: list[float] = []

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            begin = time.perf_counter()
            await run_one()
            latencies.append((time.perf_counter() - begin) * 1000)

    before = await commits(args.admin_url, args.database)
    await mark(args, "tput-start")
    begin = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(args.clients)))
    wall = time.perf_counter() - begin
    await mark(args, "tput-end")
    after = await commits(args.admin_url, args.database)
    result |= {
        "tput_wf_per_s": args.throughput / wall,
        "tput_ms_p50": percentile(latencies, 50),
        "tput_ms_p99": percentile(latencies, 99),
        "tput_commits_per_wf": (after[0] - before[0]) / args.throughput,
        "tput_rollbacks_per_wf": (after[1] - before[1]) / args.throughput,
    }
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--database-url", required=True, help="the (empty) system database")
    p.add_argument("--database", required=True, help="its name, for pg_stat_database")
    p.add_argument("--admin-url", required=True, help="a database to read statistics from")
    p.add_argument("--sequential", type=int, default=200)
    p.add_argument("--throughput", type=int, default=2000)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--marks", action="store_true", help="mark each part in the database's log")
    args = p.parse_args()
    config: DBOSConfig = {
        "name": "bench-one-step",
        "system_database_url": args.database_url,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()
    try:
        result = asyncio.run(bench(args))
    finally:
        DBOS.destroy()
    print(json.dumps({"version": f"dbos {version('dbos')}", **result}), flush=True)


if __name__ == "__main__":
    main()
