"""The floor of the watchers scenario: the same fan-out on a bare grpc.aio server.

A server process with no engine and no store holds 10,000 server-streaming calls, opened at
once (with the same backlog options as Sluice's server), and sends to them at the watchers
scenario's rate, 10,000 messages/s of 90 bytes (every 10 ms, 100 messages to the next streams
in turn), each stamped with its send time. The client measures the latency of every message
over 20 s and the server process's CPU: what gRPC and asyncio alone cost, so that the
watchers scenario's figures read against it.

`python -m bench.scenarios.fanout_floor` prints one JSON line; with `serve` it is the server.
"""

from __future__ import annotations

import asyncio
import gc
import struct
import subprocess
import sys
import time
from typing import Any

import grpc

from bench import common
from sluice.api.watch_limit import backlog_options

METHOD = "/bench.Fanout/Watch"
HELLO = b"hello"
PADDING = b"x" * 82  # with the 8-byte stamp, about a Sluice STEP_COMPLETED response's size
TICK = 0.01


def _identity(data: bytes) -> bytes:
    return data


async def serve(streams: int, per_tick: int) -> None:
    queues: list[asyncio.Queue[bytes]] = []

    async def watch(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> None:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        queues.append(queue)
        await context.write(HELLO)
        while True:
            await context.write(await queue.get())

    async def tick() -> None:
        turn = 0
        while True:
            await asyncio.sleep(TICK)
            if len(queues) < streams:
                continue
            for _ in range(per_tick):
                queues[turn % len(queues)].put_nowait(struct.pack("d", time.time()) + PADDING)
                turn += 1

    handler = grpc.method_handlers_generic_handler(
        "bench.Fanout",
        {
            "Watch": grpc.unary_stream_rpc_method_handler(
                watch, request_deserializer=_identity, response_serializer=_identity
            )
        },
    )
    server = grpc.aio.server(options=backlog_options(streams))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    gc.freeze()  # as Sluice's server does (SLUICE_GC_THRESHOLD)
    gc.set_threshold(50_000, *gc.get_threshold()[1:])
    ticker = asyncio.create_task(tick())
    print(f"serving on 127.0.0.1:{port}", flush=True)
    try:
        await server.wait_for_termination()
    finally:
        ticker.cancel()


async def measure(
    address: str, pid: int, streams: int, channels: int, seconds: float
) -> dict[str, Any]:
    gc.set_threshold(50_000, *gc.get_threshold()[1:])  # as the watchers scenario's client
    connections = [
        grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(channels)
    ]
    calls = [
        c.unary_stream(METHOD, request_serializer=_identity, response_deserializer=_identity)
        for c in connections
    ]
    opened = 0
    all_open = asyncio.Event()
    measuring = False
    latencies: list[float] = []

    async def watch(i: int) -> None:
        nonlocal opened
        async for message in calls[i % channels](b""):
            if message == HELLO:
                opened += 1
                if opened == streams:
                    all_open.set()
            elif measuring:
                latencies.append(time.time() - struct.unpack("d", message[:8])[0])

    begin = time.perf_counter()
    tasks = [asyncio.create_task(watch(i)) for i in range(streams)]
    try:
        await asyncio.wait_for(all_open.wait(), 300)
        open_seconds = time.perf_counter() - begin
        gc.collect()
        gc.freeze()
        await asyncio.sleep(2)  # the ticks begin once every stream is open
        server_cpu = common.proc_cpu_seconds(pid)
        measuring = True
        await asyncio.sleep(seconds)
        measuring = False
        server_cpu = common.proc_cpu_seconds(pid) - server_cpu
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for connection in connections:
            await connection.close()
    return {
        "streams": streams,
        "opened": opened,
        "open_seconds": open_seconds,
        "deliveries_per_s": len(latencies) / seconds,
        "latency_ms_p50": 1000 * common.percentile(latencies, 50),
        "latency_ms_p99": 1000 * common.percentile(latencies, 99),
        "latency_ms_max": 1000 * max(latencies),
        "server_cpu_s": server_cpu,
        "server_cpu_pct": 100 * server_cpu / seconds,
    }


def main() -> None:
    p = common.parser(__doc__ or "", address=False)
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--seconds", type=float, default=20.0)
    args = p.parse_args(sys.argv[2:] if sys.argv[1:2] == ["serve"] else None)
    streams = common.scaled(10_000, args.scale, minimum=1000)
    per_tick = round(streams * TICK)  # each stream one message a second on average
    if sys.argv[1:2] == ["serve"]:
        asyncio.run(serve(streams, per_tick))
        return
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.scenarios.fanout_floor", "serve", "--scale", str(args.scale)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        address = server.stdout.readline().split("serving on ", 1)[1].strip()
        result = asyncio.run(measure(address, server.pid, streams, args.channels, args.seconds))
    finally:
        server.kill()
        server.wait()
    common.emit(result)


if __name__ == "__main__":
    main()
