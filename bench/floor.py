"""The floor: what the transport and the store cost with no workflow engine on top.

- gRPC: a grpc.aio unary echo (bytes in, same bytes out, through a generic handler: no protos)
  served by a separate process on loopback; calls/s with 1 and with 64 calls in flight.
- SQLite: one transaction of one UPDATE + one INSERT, committed; commits/s with the stdlib
  sqlite3 (WAL, synchronous=FULL and NORMAL) and with SQLAlchemy async + aiosqlite (WAL,
  synchronous=FULL: what Sluice's store uses).

`python -m bench.floor` prints one JSON line; `python -m bench.floor serve-echo` is the echo
server it starts.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from bench import common

METHOD = "/bench.Echo/Echo"
PAYLOAD = b"x" * 64


def _identity(data: bytes) -> bytes:
    return data


async def serve_echo() -> None:
    async def echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo",
        {
            "Echo": grpc.unary_unary_rpc_method_handler(
                echo, request_deserializer=_identity, response_serializer=_identity
            )
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"serving on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


async def echo_rate(address: str, calls: int, in_flight: int) -> float:
    async with grpc.aio.insecure_channel(address) as channel:
        echo = channel.unary_unary(
            METHOD, request_serializer=_identity, response_deserializer=_identity
        )
        for _ in range(100):  # warm-up
            await echo(PAYLOAD)
        per_worker = calls // in_flight

        async def worker() -> None:
            for _ in range(per_worker):
                await echo(PAYLOAD)

        begin = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return per_worker * in_flight / (time.perf_counter() - begin)


def grpc_floor(scale: float) -> dict[str, float]:
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.floor", "serve-echo"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        address = server.stdout.readline().split()[-1]
        return {
            "echo_1_per_s": asyncio.run(echo_rate(address, common.scaled(5000, scale, 500), 1)),
            "echo_64_per_s": asyncio.run(echo_rate(address, common.scaled(30000, scale, 3200), 64)),
        }
    finally:
        server.terminate()
        server.wait()


SCHEMA = (
    "CREATE TABLE runs (id INTEGER PRIMARY KEY, version INTEGER NOT NULL, status TEXT NOT NULL)",
    "CREATE TABLE events (run_id INTEGER NOT NULL, sequence INTEGER NOT NULL, type TEXT NOT NULL,"
    " details TEXT NOT NULL, PRIMARY KEY (run_id, sequence))",
)
UPDATE = "UPDATE runs SET version = version + 1, status = 'RUNNING' WHERE id = 1"
INSERT = "INSERT INTO events VALUES (1, ?, 'STEP_COMPLETED', '{\"output\": {}}')"


def sqlite_rate(path: Path, synchronous: str, commits: int) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    for statement in SCHEMA:
        db.execute(statement)
    db.execute("INSERT INTO runs VALUES (1, 0, 'PENDING')")
    begin = time.perf_counter()
    for sequence in range(commits):
        db.execute("BEGIN IMMEDIATE")
        db.execute(UPDATE)
        db.execute(INSERT, (sequence,))
        db.execute("COMMIT")
    rate = commits / (time.perf_counter() - begin)
    db.close()
    return rate


async def sqlalchemy_rate(path: Path, commits: int) -> float:
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")

    @sa.event.listens_for(engine.sync_engine, "connect")
    def _pragmas(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    async with engine.begin() as conn:
        for statement in SCHEMA:
            await conn.execute(sa.text(statement))
        await conn.execute(sa.text("INSERT INTO runs VALUES (1, 0, 'PENDING')"))
    update, insert = sa.text(UPDATE), sa.text(INSERT.replace("?", ":seq"))
    begin = time.perf_counter()
    for sequence in range(commits):
        async with engine.begin() as conn:
            await conn.execute(update)
            await conn.execute(insert, {"seq": sequence})
    rate = commits / (time.perf_counter() - begin)
    await engine.dispose()
    return rate


def sqlite_floor(scale: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="sluice-bench-floor-") as tmp:
        d = Path(tmp)
        return {
            "sqlite_full_per_s": sqlite_rate(d / "full.db", "FULL", common.scaled(5000, scale, 500)),
            "sqlite_normal_per_s": sqlite_rate(d / "normal.db", "NORMAL", common.scaled(20000, scale, 2000)),
            "sqlalchemy_full_per_s": asyncio.run(sqlalchemy_rate(d / "sa.db", common.scaled(3000, scale, 300))),
        }  # fmt: skip


def main() -> None:
    if sys.argv[1:2] == ["serve-echo"]:
        asyncio.run(serve_echo())
        return
    args = common.parser(__doc__ or "", address=False).parse_args()
    common.emit({**grpc_floor(args.scale), **sqlite_floor(args.scale)})


if __name__ == "__main__":
    main()
