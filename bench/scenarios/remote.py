"""Remote steps: diamond-5 with every step a task served by one worker process (8 tasks in
flight, bench/task_worker.py), beside diamond-5 of built-in no-op steps on the same server, the
two interleaved; and the dispatch latency of a task (queued -> received by the worker).

Throughput: 1,000 workflows each, up to 200 in flight; sequential: 100 each, one at a time.
CPU per workflow: the server's, and the worker's for remote steps; at each kind's own
throughput, and at one rate for both (`paced`: half the remote throughput, open loop). The
server's CPU per workflow falls as its load rises (group commits, more work per turn of the
loop), and built-in steps run at about three times the rate here: the same rate compares what
a step costs, the own-throughput figures what a server can do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import time
from typing import Any

from bench import common, workload
from bench.scenarios.sequential import run_one
from sluice.client import WorkflowClient

TASK_TYPE = "bench.noop"
IN_FLIGHT_TASKS = 8


def remote_diamond() -> dict[str, Any]:
    template = workload.diamond()
    template["id"] = "bench-diamond-5-remote"
    for step in template["steps"]:
        step["type"] = "task"
        step["taskType"] = TASK_TYPE
    return template


async def throughput(
    client: WorkflowClient, template: str, count: int, in_flight: int, pid: int
) -> dict[str, float]:
    gate = asyncio.Semaphore(in_flight)

    async def one() -> None:
        async with gate:
            await run_one(client, template)

    server_cpu = common.proc_cpu_seconds(pid) if pid else 0.0
    begin = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    wall = time.perf_counter() - begin
    return {
        "workflows_per_s": count / wall,
        "server_cpu_ms_per_workflow": (
            1000 * (common.proc_cpu_seconds(pid) - server_cpu) / count if pid else 0.0
        ),
    }


async def paced(
    client: WorkflowClient, template: str, count: int, rate: float, pid: int
) -> dict[str, float]:
    """`count` workflows started `rate` a second, open loop (a start never waits for an
    earlier workflow to end), as a steady stream of requests would come."""
    loop = asyncio.get_running_loop()
    server_cpu = common.proc_cpu_seconds(pid) if pid else 0.0
    begin = loop.time()
    running = []
    for i in range(count):
        await asyncio.sleep(max(0.0, begin + i / rate - loop.time()))
        running.append(asyncio.create_task(run_one(client, template)))
    await asyncio.gather(*running)
    return {
        "workflows_per_s": count / (loop.time() - begin),
        "server_cpu_ms_per_workflow": (
            1000 * (common.proc_cpu_seconds(pid) - server_cpu) / count if pid else 0.0
        ),
    }


async def sequential(client: WorkflowClient, template: str, count: int) -> list[float]:
    took = []
    for _ in range(count):
        begin = time.perf_counter()
        await run_one(client, template)
        took.append((time.perf_counter() - begin) * 1000)
    return took


async def measure(args: argparse.Namespace, worker: subprocess.Popen[str]) -> dict[str, Any]:
    count = common.scaled(1000, args.scale, minimum=100)
    seq_count = common.scaled(100, args.scale, minimum=20)
    async with WorkflowClient(args.address) as client:
        builtin = await workload.register(client, workload.diamond())
        remote = await workload.register(client, remote_diamond())
        for _ in range(10):
            await run_one(client, builtin)
            await run_one(client, remote)
        kinds = {"builtin": builtin, "remote": remote}
        rounds: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
        latency: dict[str, list[float]] = {}
        worker_cpu_remote = 0.0
        for i in range(args.rounds):
            for kind in list(kinds) if i % 2 == 0 else list(reversed(kinds)):
                before = common.proc_cpu_seconds(worker.pid)
                rounds[kind].append(
                    await throughput(client, kinds[kind], count, args.in_flight, args.pid)
                )
                if kind == "remote":
                    worker_cpu_remote += common.proc_cpu_seconds(worker.pid) - before
        worker.send_signal(signal.SIGUSR1)  # the worker's dispatch figures so far: under load
        # Both kinds at one rate, well under what either can do: half the remote throughput.
        rate = max(1, round(min(r["workflows_per_s"] for r in rounds["remote"]) / 2))
        same_rate: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
        for i in range(args.rounds):
            for kind in list(kinds) if i % 2 == 0 else list(reversed(kinds)):
                same_rate[kind].append(await paced(client, kinds[kind], count, rate, args.pid))
        worker.send_signal(signal.SIGUSR1)  # (the paced runs' dispatch figures: not reported)
        for kind in kinds:
            latency[kind] = await sequential(client, kinds[kind], seq_count)

    def median(kind: str, key: str, of: dict[str, list[dict[str, float]]] = rounds) -> float:
        values = sorted(r[key] for r in of[kind])
        return values[len(values) // 2]

    return {
        "workflows": count,
        "rounds": args.rounds,
        "builtin_workflows_per_s": median("builtin", "workflows_per_s"),
        "remote_workflows_per_s": median("remote", "workflows_per_s"),
        "builtin_rounds": [r["workflows_per_s"] for r in rounds["builtin"]],
        "remote_rounds": [r["workflows_per_s"] for r in rounds["remote"]],
        "builtin_server_cpu_ms": median("builtin", "server_cpu_ms_per_workflow"),
        "remote_server_cpu_ms": median("remote", "server_cpu_ms_per_workflow"),
        "remote_worker_cpu_ms": 1000 * worker_cpu_remote / (count * args.rounds),
        "same_rate_per_s": rate,
        "builtin_same_rate_cpu_ms": median("builtin", "server_cpu_ms_per_workflow", same_rate),
        "remote_same_rate_cpu_ms": median("remote", "server_cpu_ms_per_workflow", same_rate),
        "same_rate_ratios": [
            r["server_cpu_ms_per_workflow"] / b["server_cpu_ms_per_workflow"]
            for r, b in zip(same_rate["remote"], same_rate["builtin"], strict=True)
        ],
        "builtin_sequential_ms_median": common.percentile(latency["builtin"], 50),
        "remote_sequential_ms_median": common.percentile(latency["remote"], 50),
        "builtin_sequential_ms_p99": common.percentile(latency["builtin"], 99),
        "remote_sequential_ms_p99": common.percentile(latency["remote"], 99),
        "remote_tasks_per_s": 5 * median("remote", "workflows_per_s"),
    }


def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--in-flight", type=int, default=200)
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds of each kind")
    args = p.parse_args()
    worker = subprocess.Popen(
        [sys.executable, "-m", "bench.task_worker", "--address", args.address,
         "--task-type", TASK_TYPE, "--in-flight", str(IN_FLIGHT_TASKS)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert worker.stdout is not None
        if worker.stdout.readline().strip() != "worker ready":
            raise RuntimeError("the bench worker did not start")
        result = asyncio.run(measure(args, worker))
    finally:
        worker.terminate()
        out, _ = worker.communicate(timeout=60)
    loaded, _, idle = (json.loads(line) for line in out.strip().splitlines()[-3:])
    common.emit(
        result
        | {
            "dispatch_ms_p50": idle["dispatch_ms_p50"],
            "dispatch_ms_p99": idle["dispatch_ms_p99"],
            "loaded_dispatch_ms_p50": loaded["dispatch_ms_p50"],
            "loaded_dispatch_ms_p99": loaded["dispatch_ms_p99"],
            "tasks_dispatched": loaded["tasks"] + idle["tasks"],
        }
    )


if __name__ == "__main__":
    main()
