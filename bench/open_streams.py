"""How many of N WatchWorkflow streams opened at once get their first event.

The driver behind the watchers scenario's finding (bench/README.md): it starts a Sluice server
(or uses `--address`), creates N / 10 runs that hold a step for an hour, opens N follow
streams on them with plain grpc.aio stubs spread over `--channels` connections of their own,
and counts, until every stream has its first event or has failed (or `--wait` passes), those
that opened and those that failed by status code and message. `--batch B` opens them B at a
time instead, each batch once the previous one has its first events.

    .venv/bin/python -m bench.open_streams -n 10000
    .venv/bin/python -m bench.open_streams -n 10000 --batch 500
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from bench.server import Server
from sluice.client import WorkflowClient
from sluice.v1 import workflow_service_pb2 as pb
from sluice.v1 import workflow_service_pb2_grpc as pb_grpc

HOLD = {
    "id": "bench-open-streams",
    "name": "one step held for an hour",
    "steps": [{"id": "h", "type": "hold", "config": {"seconds": 3600}}],
}


async def open_streams(
    address: str, n: int, channels: int, batch: int, wait: float
) -> dict[str, Any]:
    async with WorkflowClient(address) as client:
        template = (await client.create_template(HOLD)).id
        runs = [(await client.create_workflow(template)).id for _ in range(max(1, n // 10))]
        for run_id in runs:
            await client.execute_workflow(run_id)
    connections = [
        grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(channels)
    ]
    stubs = [pb_grpc.WorkflowServiceStub(c) for c in connections]
    outcomes: collections.Counter[str] = collections.Counter()
    target = 0  # streams started so far: every one has opened or failed when this many did
    settled = asyncio.Event()

    async def watch(i: int) -> None:
        request = pb.WatchWorkflowRequest(workflow_id=runs[i % len(runs)], follow=True)
        call = stubs[i % channels].WatchWorkflow(request)
        try:
            first = await call.read()
            outcomes["opened" if first is not grpc.aio.EOF else "ended without an event"] += 1
        except grpc.RpcError as error:
            outcomes[f"{error.code().name}: {error.details()}"] += 1
        if sum(outcomes.values()) >= target:
            settled.set()
        try:
            await asyncio.Event().wait()  # the stream stays open until the end
        finally:
            call.cancel()

    begin = time.perf_counter()
    tasks: list[asyncio.Task[None]] = []
    try:
        size = batch or n
        for first in range(0, n, size):
            settled.clear()
            target = min(n, first + size)
            tasks += [asyncio.create_task(watch(i)) for i in range(first, target)]
            left = wait - (time.perf_counter() - begin)
            await asyncio.wait_for(settled.wait(), max(0.0, left))
    except TimeoutError:
        pass
    seconds = time.perf_counter() - begin
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for connection in connections:
        await connection.close()
    waiting = n - sum(outcomes.values())
    return {
        "streams": n,
        "channels": channels,
        "batch": batch,
        "opened": outcomes.pop("opened", 0),
        "failed": dict(outcomes),
        "still_waiting": waiting,
        "seconds": round(seconds, 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("-n", type=int, required=True, help="streams")
    p.add_argument("--address", default="", help="a running server (default: start one)")
    p.add_argument("--channels", type=int, default=8, help="connections, each its own")
    p.add_argument("--batch", type=int, default=0, help="open this many at a time (0: all)")
    p.add_argument("--wait", type=float, default=120.0, help="seconds to wait for them")
    args = p.parse_args()
    server = None
    with tempfile.TemporaryDirectory(prefix="sluice-open-streams-") as tmp:
        try:
            address = args.address
            if not address:
                server = Server(Path(tmp), max_active_runs_per_user="100000").start()
                address = server.address
            result = asyncio.run(
                open_streams(address, args.n, args.channels, args.batch, args.wait)
            )
        finally:
            if server is not None:
                server.kill()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
