"""Fixtures: a real Sluice server on a loopback port with a real SQLite file, and clients."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import shutil
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from sluice.client import WorkflowClient
from sluice.config import Settings
from sluice.engine.ports import Clock
from sluice.server import SluiceServer
from sluice.store.factory import open_store
from tests.support.handlers import Calls, register

if TYPE_CHECKING:
    from sluice.observability.tracing import Tracing


class ServerFactory(Protocol):
    def __call__(
        self, *, clock: Clock | None = None, tracing: Tracing | None = None, **settings: Any
    ) -> Awaitable[SluiceServer]: ...


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture(scope="session")
def sqlite_schema(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file the store migrated to the head revision, once per test process: each
    test's database starts as a copy of it (creating the schema takes 0.15-0.2 s, a copy a
    millisecond; most tests start a server on a database of their own)."""
    path = tmp_path_factory.mktemp("schema") / "sluice.db"

    async def create() -> None:
        await (await open_store(f"sqlite+aiosqlite:///{path}")).close()

    # On a thread of its own: a session fixture may be set up inside a test's running loop.
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, create()).result()
    with contextlib.closing(sqlite3.connect(path)) as conn:  # all of it in the file itself
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture
async def database_url(
    tmp_path: Path, request: pytest.FixtureRequest, sqlite_schema: Path
) -> AsyncIterator[str]:
    """A fresh database per test, with the schema and nothing else: a SQLite file by default
    (a copy of `sqlite_schema`; empty with `@pytest.mark.empty_database`); with
    SLUICE_TEST_DATABASE_URL=postgresql+asyncpg://..., a new database on that server."""
    base = os.environ.get("SLUICE_TEST_DATABASE_URL", "")
    if not base.startswith("postgresql"):
        path = tmp_path / "sluice.db"
        if request.node.get_closest_marker("empty_database") is None:
            shutil.copyfile(sqlite_schema, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    name = f"sluice_test_{uuid.uuid4().hex[:12]}"
    # A connection per use: a test may restart PostgreSQL between the create and the drop.
    admin = create_async_engine(base, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


@pytest.fixture
async def start_server(database_url: str, calls: Calls) -> AsyncIterator[ServerFactory]:
    """Starts servers on the test's database; every one still running is stopped at the end."""
    running: list[SluiceServer] = []

    async def start(
        *, clock: Clock | None = None, tracing: Tracing | None = None, **settings: Any
    ) -> SluiceServer:
        defaults: dict[str, Any] = {
            "listen": "127.0.0.1:0",
            "database_url": database_url,
            # Short, so a test that stops a server with a step still blocked stays fast.
            "shutdown_grace": timedelta(seconds=0.5),
        }
        # The server's own registry, so settings such as webhook_allow reach its steps.
        server = SluiceServer(Settings(**{**defaults, **settings}), clock=clock, tracing=tracing)
        register(server.registry, calls)
        await server.start()
        running.append(server)
        return server

    yield start
    for server in running:
        await server.stop()


@pytest.fixture
async def server(start_server: ServerFactory) -> SluiceServer:
    return await start_server()


@pytest.fixture
async def client(server: SluiceServer) -> AsyncIterator[WorkflowClient]:
    async with WorkflowClient(server.address) as client:
        yield client
