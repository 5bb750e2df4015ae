"""Browser tests of the web view: Debian's chromium (headless) driven by Playwright, against
a real server in this process serving the built app and its gRPC-Web API on a loopback port,
with a real SQLite file.

One browser per test session (launching chromium costs about a second); a fresh context (no
shared storage) and server per test. The tests' event loop is the session's, which the
browser belongs to: async fixtures here say so (`loop_scope="session"`).

Skipped, saying why, only where chromium or the built app is missing and the variable CI is
unset; under CI (.ci/run sets it) they fail instead: `make test` installs chromium and builds
the app first.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect

from sluice.client import WorkflowClient
from sluice.config import Settings
from sluice.server import SluiceServer
from sluice.web import assets
from tests.support.handlers import Calls, register

ROOT = Path(__file__).resolve().parents[2]
# How long expect() waits for a DOM condition: generous for a loaded 2-core machine (a
# condition met returns at once; none of these tests sleeps).
expect.set_options(timeout=15_000)
# Where the browser tests save screenshots: tests/output/<test name>/ (gitignored), kept after
# the run so a person can look at what the test saw.
OUTPUT = ROOT / "tests" / "output"


def _chromium() -> str | None:
    return shutil.which("chromium") or next(
        (p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).exists()), None
    )


def _missing() -> str | None:
    if _chromium() is None:
        return "chromium is not installed (`make chromium` installs Debian's)"
    if not assets.built():
        return "the web view is not built (`make web`)"
    return None


@pytest.fixture(scope="session")
def chromium_path() -> str:
    missing = _missing()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests cannot run under CI: {missing}")
        pytest.skip(missing)
    path = _chromium()
    assert path is not None
    return path


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium_path, headless=True)
        yield launched
        await launched.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(15_000)
    opened = await context.new_page()
    yield opened
    await context.close()


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest_asyncio.fixture(loop_scope="session")
async def web_server(tmp_path: Path, calls: Calls) -> AsyncIterator[SluiceServer]:
    server = await start_web_server(tmp_path, calls)
    yield server
    await server.stop()


async def start_web_server(tmp_path: Path, calls: Calls, **settings: Any) -> SluiceServer:
    server = SluiceServer(
        Settings(
            listen="127.0.0.1:0",
            http_listen="127.0.0.1:0",
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'sluice.db'}",
            shutdown_grace=timedelta(seconds=0.5),
            **settings,
        )
    )
    register(server.registry, calls)
    await server.start()
    return server


@pytest_asyncio.fixture(loop_scope="session")
async def client(web_server: SluiceServer) -> AsyncIterator[WorkflowClient]:
    async with WorkflowClient(web_server.address) as connected:
        yield connected


def base_url(server: SluiceServer) -> str:
    return f"http://{server.http_address}"


def output_dir(request: pytest.FixtureRequest) -> Path:
    """tests/output/<test name>/, made empty."""
    name = re.sub(r"[^\w.-]+", "_", request.node.name)
    folder = OUTPUT / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder
