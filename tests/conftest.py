"""Fixtures: a real Sluice server on a loopback port with a real SQLite file, and clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from sluice.client import WorkflowClient
from sluice.config import Settings
from sluice.server import SluiceServer
from sluice.steps import builtin_registry
from tests.support.handlers import Calls, register

ServerFactory = Callable[[], Awaitable[SluiceServer]]


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'sluice.db'}"


@pytest.fixture
async def start_server(database_url: str, calls: Calls) -> AsyncIterator[ServerFactory]:
    """Starts servers on the test's database; every one still running is stopped at the end."""
    running: list[SluiceServer] = []

    async def start() -> SluiceServer:
        registry = builtin_registry()
        register(registry, calls)
        server = SluiceServer(
            Settings(listen="127.0.0.1:0", database_url=database_url), registry=registry
        )
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
