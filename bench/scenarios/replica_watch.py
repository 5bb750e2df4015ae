"""Watch latency across servers: runs driven by one server, watched through every server.

The servers (`--address`, `--pid`) share one fresh PostgreSQL database. Every run is created
and executed on the first server (A), which then holds its lease and commits its events; each
run has `--watchers` WatchWorkflow streams on every server: on A they are fed from memory
after each commit, on the others after A's notice (PostgreSQL NOTIFY) from the events table.
The runs are chains of `--steps` `hold` steps of `--step-seconds` (+/- 50 %), started spread
over one step's duration: a steady load the servers keep up with. All streams are open (each
has received the stored WORKFLOW_CREATED) before the runs start.

Reported per server: latency from an event's `time` (A's clock just before the commit that
stores it) to its arrival at this client (same machine, same clock), p50 / p99 / max, and
events that took longer than a second (the watchers' re-check interval: a notice that was
lost or came late); events each stream missed (every stream must see every event); each
server's CPU over the run and, with `--sql-counts`, the statements and pool checkouts it sent
per event it delivered. With `--database-url`, the floor under the cross-server path at the
same moment: a NOTIFY from this client every 50 ms to a LISTEN of its own on the same
database, its round trip (send to receipt).
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from bench import common, sqlcount, workload
from sluice.client import EventType, WorkflowClient


def _csv(text: str) -> list[str]:
    return [part for part in text.split(",") if part]


async def main() -> None:
    p = common.parser(__doc__ or "", address=False)
    p.add_argument("--address", required=True, help="host:port of each server, comma-separated")
    p.add_argument("--pid", default="", help="each server's process id, comma-separated")
    p.add_argument("--runs", type=int, default=30, help="runs, all driven by the first server")
    p.add_argument("--steps", type=int, default=20, help="hold steps per run, in a chain")
    p.add_argument("--step-seconds", type=float, default=0.25, help="each step's mean duration")
    p.add_argument("--watchers", type=int, default=2, help="streams per run on each server")
    p.add_argument("--channels", type=int, default=2, help="gRPC channels per server")
    p.add_argument("--sql-counts", default="", help="each server's sqlcount socket")
    p.add_argument("--database-url", default="", help="the database, for the NOTIFY floor")
    args = p.parse_args()
    addresses, pids = _csv(args.address), [int(pid) for pid in _csv(args.pid)]
    runs = common.scaled(args.runs, args.scale, minimum=10)
    servers = len(addresses)
    clients = [[WorkflowClient(address) for _ in range(args.channels)] for address in addresses]
    driver = clients[0][0]
    streams = runs * args.watchers * servers
    latencies: list[list[float]] = [[] for _ in addresses]
    received: dict[tuple[int, int, str], int] = {}  # (server, stream, run) -> events
    try:
        template = await workload.register(driver, workload.chain(args.steps, args.step_seconds))
        ids = [(await driver.create_workflow(template, timeout=30)).id for _ in range(runs)]
        opened = 0
        all_open = asyncio.Event()

        async def watch(server: int, stream: int, run_id: str) -> None:
            nonlocal opened
            client = clients[server][stream % args.channels]
            count = 0
            async for event in client.watch(run_id):
                now = time.time()
                count += 1
                if event.type == EventType.EVENT_TYPE_WORKFLOW_CREATED:
                    opened += 1
                    if opened == streams:
                        all_open.set()
                    continue
                latencies[server].append(now - (event.time.seconds + event.time.nanos / 1e9))
            received[(server, stream, run_id)] = count

        tasks = [
            asyncio.create_task(watch(server, stream, run_id))
            for run_id in ids
            for server in range(servers)
            for stream in range(args.watchers)
        ]
        await asyncio.wait_for(all_open.wait(), 120)

        async def start(i: int, run_id: str) -> None:
            # Spread over one mean step duration: runs that did not all begin at one instant.
            await asyncio.sleep(i * args.step_seconds / runs)
            await driver.execute_workflow(run_id, timeout=30)

        sockets = _csv(args.sql_counts)
        sql_before = [sqlcount.read(path) for path in sockets]
        floor = NotifyFloor(args.database_url) if args.database_url else None
        if floor:
            await floor.start()
        cpu = common.CpuMeter()
        server_cpu = [common.proc_cpu_seconds(pid) for pid in pids]
        begin = time.perf_counter()
        await asyncio.gather(*(start(i, run_id) for i, run_id in enumerate(ids)))
        limit = args.steps * args.step_seconds * 3 + 120
        await asyncio.wait_for(asyncio.gather(*tasks), limit)
        wall = time.perf_counter() - begin
        server_cpu = [
            common.proc_cpu_seconds(pid) - s for pid, s in zip(pids, server_cpu, strict=True)
        ]
        client_cpu = cpu.percent()
        notify_ms = await floor.stop() if floor else []
        sql = [
            sqlcount.delta(sqlcount.read(path), b)
            for path, b in zip(sockets, sql_before, strict=True)
        ]
        # Every run's full log, once: what each stream should have received.
        expected = {run_id: len([e async for e in driver.watch(run_id)]) for run_id in ids}
    finally:
        for channels in clients:
            for client in channels:
                await client.close()
    missed = [
        sum(expected[run_id] - count for (s, _, run_id), count in received.items() if s == server)
        for server in range(servers)
    ]
    by_server: list[dict[str, Any]] = [
        {
            "address": addresses[server],
            "role": "driving" if server == 0 else "other",
            "events": len(values),
            "latency_ms_p50": 1000 * common.percentile(values, 50),
            "latency_ms_p99": 1000 * common.percentile(values, 99),
            "latency_ms_max": 1000 * max(values),
            "over_1s": sum(v > 1.0 for v in values),
            "missed": missed[server],
            "cpu_pct": 100 * server_cpu[server] / wall if pids else None,
            **(
                {
                    "statements_per_event": sql[server]["statements"] / max(1, len(values)),
                    "checkouts_per_event": sql[server]["checkouts"] / max(1, len(values)),
                    "commits_per_event": sql[server]["commits"] / max(1, len(values)),
                }
                if sql
                else {}
            ),
        }
        for server, values in enumerate(latencies)
    ]
    remote = [v for values in latencies[1:] for v in values]
    common.emit(
        {
            "servers": servers,
            "runs": runs,
            "steps": args.steps,
            "step_seconds": args.step_seconds,
            "watchers_per_run_per_server": args.watchers,
            "streams": streams,
            "seconds": wall,
            "events_per_s": sum(len(v) for v in latencies) / wall,
            "commits_per_s": runs * (args.steps + 1) / wall,
            "by_server": by_server,
            "remote_latency_ms_p50": 1000 * common.percentile(remote, 50),
            "remote_latency_ms_p99": 1000 * common.percentile(remote, 99),
            "local_latency_ms_p50": by_server[0]["latency_ms_p50"],
            "local_latency_ms_p99": by_server[0]["latency_ms_p99"],
            "target_ms": 100,
            "target_met": 1000 * common.percentile(remote, 99) <= 100,
            "client_cpu_pct": client_cpu,
            **(
                {
                    "notify_ms_p50": common.percentile(notify_ms, 50),
                    "notify_ms_p99": common.percentile(notify_ms, 99),
                    "notify_pings": len(notify_ms),
                }
                if notify_ms
                else {}
            ),
        }
    )


class NotifyFloor:
    """PostgreSQL's LISTEN/NOTIFY round trip on the same database while the scenario runs: one
    connection sends a NOTIFY every `every` seconds, another listens; ms from send to
    receipt. What the cross-server path cannot beat at that moment."""

    CHANNEL = "bench_notify_floor"

    def __init__(self, url: str, every: float = 0.05) -> None:
        self._dsn = re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)
        self._every = every
        self._sent: dict[str, float] = {}
        self._ms: list[float] = []
        self._task: asyncio.Task[None] | None = None
        self._conns: list[Any] = []

    async def start(self) -> None:
        sender, listener = [await asyncpg.connect(self._dsn) for _ in range(2)]
        self._conns = [sender, listener]
        await listener.add_listener(self.CHANNEL, self._received)
        self._task = asyncio.create_task(self._ping(sender))

    def _received(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        sent = self._sent.pop(payload, None)
        if sent is not None:
            self._ms.append(1000 * (time.perf_counter() - sent))

    async def _ping(self, sender: Any) -> None:
        k = 0
        while True:
            k += 1
            self._sent[str(k)] = time.perf_counter()
            await sender.execute(f"NOTIFY {self.CHANNEL}, '{k}'")
            await asyncio.sleep(self._every)

    async def stop(self) -> list[float]:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        for conn in self._conns:
            await conn.close()
        return self._ms


if __name__ == "__main__":
    asyncio.run(main())
