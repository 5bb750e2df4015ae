"""Failover: what the client's channel settings cost and save when it is given several servers.

1. First calls: milliseconds from making a client to its first answer, and how many of 40
   calls each server answered, for the addresses [live], [refused, live], [silent, live]
   (a socket that accepts connections and never speaks, as a hung host would) and
   [live A, live B]: gRPC's default channel (pick_first) against the client's (round_robin).
2. Watch failover: a watch, on server A, of a run with a step in flight; the client has the
   addresses [A, B] and B is not started. A lives --up seconds, is SIGKILLed, and B starts on
   the same database at B's address. Measured: seconds from B serving to the watch's next
   event (the step's recovered start), with gRPC's default reconnect backoff (1 s growing
   1.6x to 120 s) and with the client's.

    .venv/bin/python -m bench.failover [--rounds 3] [--up 2,20]

Prints a Markdown table; not part of bench.run. Variants alternate within each round, since
this machine's speed drifts.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from bench import workload
from bench.server import Server, free_port
from sluice.client import EventType, NotFoundError, WorkflowClient
from sluice.client._targets import Target, parse

ONLY_ON_A = "bench-only-on-a"
CALLS = 40

Channel = Callable[[Target], grpc.aio.Channel]


def grpc_default(target: Target) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(target.uri)


def ours(target: Target) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(target.uri, options=target.channel_options(None))


def round_robin_default_backoff(target: Target) -> grpc.aio.Channel:
    options = [o for o in target.channel_options(None) if "reconnect_backoff" not in o[0]]
    return grpc.aio.insecure_channel(target.uri, options=options)


async def first_calls(addresses: list[str], make: Channel) -> tuple[float, int]:
    """Milliseconds to the first answer, and how many of CALLS server A answered."""
    begin = time.perf_counter()
    async with WorkflowClient(channel=make(parse(addresses))) as client:
        await client.list_templates(timeout=30)
        first = (time.perf_counter() - begin) * 1000
        on_a = 0
        for _ in range(CALLS):
            try:
                await client.get_template(ONLY_ON_A, timeout=30)
                on_a += 1
            except NotFoundError:
                pass
    return first, on_a


async def watch_failover(workdir: Path, up: float, make: Channel) -> float:
    """Seconds from B serving to the watch's first event from B."""
    b_port = free_port()
    (workdir / "a").mkdir()
    (workdir / "b").mkdir()
    a = Server(workdir / "a").start()
    b = Server(workdir / "b", listen=f"127.0.0.1:{b_port}")
    b.database = a.database  # one database, as replicas share one
    addresses = [a.address, f"127.0.0.1:{b_port}"]
    try:
        async with WorkflowClient(channel=make(parse(addresses))) as client:
            template = await workload.register(client, workload.holding(up + 120))
            run = await client.create_workflow(template)
            await client.execute_workflow(run.id)
            holding = asyncio.Event()
            from_b: asyncio.Future[float] = asyncio.get_running_loop().create_future()

            async def watch() -> None:
                async for event in client.watch(run.id, reconnect=True, give_up_after=None):
                    if event.type == EventType.EVENT_TYPE_STEP_STARTED:
                        if holding.is_set():
                            from_b.set_result(time.perf_counter())
                            return
                        holding.set()

            watcher = asyncio.create_task(watch())
            await asyncio.wait_for(holding.wait(), 30)
            await asyncio.sleep(up)  # the time the client has known B as down
            a.kill()
            b.start()
            serving = time.perf_counter()
            resumed = await asyncio.wait_for(from_b, 300)
            await watcher
            await client.cancel_workflow(run.id)
        return resumed - serving
    finally:
        a.kill()
        b.kill()


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--up", default="2,20", help="seconds A lives before it is killed")
    args = p.parse_args()
    ups = [float(u) for u in args.up.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="sluice-bench-failover-"))

    (workdir / "a").mkdir()
    (workdir / "b").mkdir()
    a = Server(workdir / "a").start()
    b = Server(workdir / "b").start()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    refused = f"127.0.0.1:{free_port()}"
    lists = {
        "[A]": [a.address],
        "[refused, A]": [refused, a.address],
        "[silent, A]": [f"127.0.0.1:{silent.getsockname()[1]}", a.address],
        "[A, B]": [a.address, b.address],
    }
    channels: dict[str, Channel] = {"pick_first (gRPC default)": grpc_default, "client": ours}
    firsts: dict[tuple[str, str], list[tuple[float, int]]] = {}
    try:
        async with WorkflowClient(a.address) as client:
            await client.create_template({"id": ONLY_ON_A, "name": "A", "steps": [
                {"id": "a", "type": "noop"}]})  # fmt: skip
        for _ in range(args.rounds):
            for name, addresses in lists.items():
                for channel, make in channels.items():
                    found = await first_calls(addresses, make)
                    firsts.setdefault((name, channel), []).append(found)
    finally:
        a.kill()
        b.kill()
        silent.close()

    print("| addresses | channel | first call, ms (median) | calls answered by A |")
    print("|---|---|---|---|")
    for (name, channel), found in firsts.items():
        ms = statistics.median(f for f, _ in found)
        share = "/".join(str(n) for _, n in found)
        print(f"| {name} | {channel} | {ms:.1f} | {share} of {CALLS} |")

    variants: dict[str, Channel] = {
        "round_robin, gRPC's reconnect backoff": round_robin_default_backoff,
        "client (round_robin, its backoff)": ours,
    }
    lags: dict[tuple[float, str], list[float]] = {}
    for round_ in range(args.rounds):
        for up in ups:
            for name, make in variants.items():
                where = Path(tempfile.mkdtemp(prefix=f"watch-{round_}-{up:g}-", dir=workdir))
                lags.setdefault((up, name), []).append(await watch_failover(where, up, make))
    print()
    print("| A up before the kill, s | channel | B serving -> watch resumes, s (each round) |")
    print("|---|---|---|")
    for (up, name), found in lags.items():
        print(f"| {up:g} | {name} | {', '.join(f'{s:.2f}' for s in found)} |")


if __name__ == "__main__":
    asyncio.run(main())
