"""A worker process for the remote-steps benchmark: one StreamTasks stream holding `--in-flight`
credits, completing each task at once with an empty output (a no-op step), as a worker in any
language would with the raw API. It records, per task, the time from its queueing (the task's
`queue_time`, the server's clock: same machine) to its arrival here, and prints their
percentiles as one JSON line on SIGUSR1 (then starts counting afresh: one line per phase of the
benchmark) and on SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time

import grpc

from bench import common
from sluice.v1 import worker_service_pb2 as wpb
from sluice.v1 import worker_service_pb2_grpc as wgrpc


async def work(address: str, task_type: str, in_flight: int, unary: bool) -> None:
    channel = grpc.aio.insecure_channel(address)
    stub = wgrpc.WorkerServiceStub(channel)
    requests: asyncio.Queue[wpb.StreamTasksRequest | None] = asyncio.Queue()
    requests.put_nowait(
        wpb.StreamTasksRequest(task_types=[task_type], worker_id="bench", credits=in_flight)
    )

    async def outgoing():  # type: ignore[no-untyped-def]
        while (request := await requests.get()) is not None:
            yield request

    call = stub.StreamTasks(outgoing())
    latencies: list[float] = []
    running: set[asyncio.Task[None]] = set()
    cpu = common.CpuMeter()

    async def finish(task: wpb.Task) -> None:
        done = wpb.CompleteTaskRequest(task_token=task.task_token)
        if unary:
            await stub.CompleteTask(done)
            requests.put_nowait(wpb.StreamTasksRequest(credits=1))
        else:  # the result and the credit it frees in one message
            requests.put_nowait(wpb.StreamTasksRequest(credits=1, completed=[done]))

    async def receive() -> None:
        print("worker ready", flush=True)
        async for response in call:
            if not response.HasField("task"):
                continue  # answers to results: all OK here (the benchmark checks the runs)
            received = time.time()
            latencies.append((received - response.task.queue_time.ToNanoseconds() / 1e9) * 1000)
            job = asyncio.create_task(finish(response.task))
            running.add(job)
            job.add_done_callback(running.discard)

    def report() -> None:
        print(
            json.dumps(
                {
                    "tasks": len(latencies),
                    "dispatch_ms_p50": common.percentile(latencies, 50) if latencies else None,
                    "dispatch_ms_p99": common.percentile(latencies, 99) if latencies else None,
                    "worker_cpu_seconds": cpu.seconds(),
                }
            ),
            flush=True,
        )
        latencies.clear()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, report)
    receiving = asyncio.create_task(receive())
    await stop.wait()
    requests.put_nowait(None)
    receiving.cancel()
    await asyncio.gather(receiving, *running, return_exceptions=True)
    await channel.close()
    report()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--address", required=True)
    p.add_argument("--task-type", default="bench.noop")
    p.add_argument("--in-flight", type=int, default=8)
    p.add_argument(
        "--unary", action="store_true", help="report results with CompleteTask, not on the stream"
    )
    args = p.parse_args()
    asyncio.run(work(args.address, args.task_type, args.in_flight, args.unary))


if __name__ == "__main__":
    main()
