"""Watchers: 10,000 concurrent WatchWorkflow streams on one server, 10 on each of 1,000 runs.

Each run is a chain of steps of about 2 s (+/- 50 %), started spread over one step's time: the
runs emit about 1,000 events/s together, 10,000 deliveries/s over all streams. Every stream is
opened at once (a burst, as when a server restarts under its watchers or a dashboard opens)
and counts as opened when the stored WORKFLOW_CREATED arrives; a stream refused or broken is
counted by its status code. Once all are open the runs start. Reported: streams opened and how
long the burst took, events delivered against the runs' logs times their watchers, delivery
latency (receipt time against the event's `time`, stamped by the server just before the
transaction that stores it commits) and the server's CPU seconds while the runs ran.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import time

import grpc

from bench import common, workload
from sluice.client import EventType, SluiceError, WorkflowClient


async def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--per-run", type=int, default=10, help="watchers on each run")
    p.add_argument("--steps", type=int, default=8, help="steps in each run's chain")
    p.add_argument("--step-seconds", type=float, default=2.0, help="each step's mean duration")
    p.add_argument("--channels", type=int, default=8, help="client connections (own TCP each)")
    args = p.parse_args()
    runs = common.scaled(1000, args.scale, minimum=10)
    watchers = runs * args.per_run
    # The client is the instrument, not the subject: with Python's default collector settings
    # it collected 54 times while the runs ran (1.1 s in all, up to 0.3 s at once), walking the
    # 10,000 streams' objects each time. As the server does: a larger young generation and,
    # once the streams are open, their objects kept out of collections (1 collection, 0.26 s).
    gc.set_threshold(50_000, *gc.get_threshold()[1:])
    # Each its own connection: channels to one address share one by default (gRPC's global
    # subchannel pool), and watchers come from many clients, not one.
    clients = [
        WorkflowClient(
            channel=grpc.aio.insecure_channel(
                args.address, options=[("grpc.use_local_subchannel_pool", 1)]
            )
        )
        for _ in range(args.channels)
    ]
    try:
        template = await workload.register(
            clients[0], workload.chain(args.steps, args.step_seconds)
        )
        ids = await _create(clients, template, runs)
        opened = 0
        all_open = asyncio.Event()
        failed: collections.Counter[str] = collections.Counter()
        received = [0] * watchers
        never_opened = [0]
        latencies: list[float] = []
        arrivals: list[tuple[float, float]] = []  # (receipt time, latency): p99 over time

        async def watch(i: int) -> None:
            nonlocal opened
            try:
                async for event in clients[i % len(clients)].watch(ids[i % runs]):
                    now = time.time()
                    received[i] += 1
                    if event.type == EventType.EVENT_TYPE_WORKFLOW_CREATED:
                        opened += 1
                        if opened == watchers:
                            all_open.set()
                        continue
                    latency = now - (event.time.seconds + event.time.nanos / 1e9)
                    latencies.append(latency)
                    arrivals.append((now, latency))
            except SluiceError as error:
                failed[error.code.name] += 1
                if received[i] == 0:  # never opened: the burst is over for this one too
                    never_opened[0] += 1
                    if opened + never_opened[0] == watchers:
                        all_open.set()

        server_cpu = common.proc_cpu_seconds(args.pid) if args.pid else 0.0
        begin = time.perf_counter()
        tasks = [asyncio.create_task(watch(i)) for i in range(watchers)]
        await asyncio.wait_for(all_open.wait(), 300)
        open_seconds = time.perf_counter() - begin
        open_cpu = common.proc_cpu_seconds(args.pid) - server_cpu if args.pid else None
        gc.collect()
        gc.freeze()
        # While the runs run, no collection at all: even the two left above stalled every
        # stream's receipt for 140-180 ms each, which read as the server's latency. (The
        # measured part allocates little cyclic garbage; it is collected after.)
        gc.disable()

        cpu = common.CpuMeter()
        pauses = _GcPauses()  # the instrument's own stalls, told apart from the server's
        server_cpu = common.proc_cpu_seconds(args.pid) if args.pid else 0.0
        rss_open = common.rss_kb(args.pid) if args.pid else 0
        begin = time.perf_counter()

        async def start(i: int, run_id: str) -> None:
            await asyncio.sleep(i * args.step_seconds / runs)
            await clients[i % len(clients)].execute_workflow(run_id)

        await asyncio.gather(*(start(i, run_id) for i, run_id in enumerate(ids)))
        await asyncio.wait_for(asyncio.gather(*tasks), 600)
        wall = time.perf_counter() - begin
        pauses.stop()
        gc.enable()
        client_cpu = cpu.percent()
        run_cpu = common.proc_cpu_seconds(args.pid) - server_cpu if args.pid else None
        logs = {i: (await clients[0].get_workflow(i)).last_sequence for i in ids}
        expected = sum(logs[ids[i % runs]] for i in range(watchers))
    finally:
        for client in clients:
            await client.close()
    common.emit(
        {
            "runs": runs,
            "watchers": watchers,
            "opened": opened,
            "refused": dict(failed),
            "open_seconds": open_seconds,
            "open_server_cpu_s": open_cpu,
            "events_delivered": sum(received),
            "events_expected": expected,
            "complete_streams": sum(received[i] == logs[ids[i % runs]] for i in range(watchers)),
            "seconds": wall,
            "deliveries_per_s": len(latencies) / wall,
            "latency_ms_p50": 1000 * common.percentile(latencies, 50),
            "latency_ms_p99": 1000 * common.percentile(latencies, 99),
            "latency_ms_max": 1000 * max(latencies),
            "server_cpu_s": run_cpu,
            "server_cpu_pct": 100 * run_cpu / wall if run_cpu is not None else None,
            "client_cpu_pct": client_cpu,
            "server_rss_mb_open": rss_open / 1024,
            "latency_ms_p99_by_window": _by_window(arrivals, WINDOW_SECONDS),
            "client_gc_pauses": len(pauses.seconds),
            "client_gc_ms_max": 1000 * max(pauses.seconds, default=0.0),
            "client_gc_ms_total": 1000 * sum(pauses.seconds),
        }
    )


WINDOW_SECONDS = 4.0


class _GcPauses:
    """This process's garbage collections while the runs run, each one's duration: a long one
    stalls every stream's receipt, which reads as delivery latency."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._began = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.seconds.append(time.perf_counter() - self._began)

    def stop(self) -> None:
        gc.callbacks.remove(self._on_gc)


def _by_window(arrivals: list[tuple[float, float]], seconds: float) -> list[float]:
    """p99 latency (ms) in each `seconds`-long window from the first receipt: where in the run
    (the start burst, the steady middle, the tail) the slow deliveries fall."""
    if not arrivals:
        return []
    first = min(at for at, _ in arrivals)
    windows: dict[int, list[float]] = collections.defaultdict(list)
    for at, latency in arrivals:
        windows[int((at - first) // seconds)].append(latency)
    return [round(1000 * common.percentile(windows[k], 99), 1) for k in sorted(windows)]


async def _create(clients: list[WorkflowClient], template: str, runs: int) -> list[str]:
    """`runs` runs of `template`, created 50 at a time (setup, not measured)."""
    ids: list[str] = []
    for first in range(0, runs, 50):
        batch = range(first, min(runs, first + 50))
        created = await asyncio.gather(
            *(clients[i % len(clients)].create_workflow(template) for i in batch)
        )
        ids += [run.id for run in created]
    return ids


if __name__ == "__main__":
    asyncio.run(main())
