"""A Sluice server in its own process, for tests that kill it or read its log."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
_SERVING = re.compile(rb"serving on (127\.0\.0\.1:\d+)")
_METRICS = re.compile(rb"metrics on http://(127\.0\.0\.1:\d+)/metrics")


class ServerProcess:
    def __init__(
        self,
        database_url: str,
        ledger: Path,
        listen: str,
        *,
        cwd: Path = ROOT,
        **settings: str,
    ) -> None:
        """`database_url` "" leaves SLUICE_DATABASE_URL unset (the default database, relative
        to `cwd`)."""
        self.database_url = database_url
        self.listen = listen
        self.ledger = ledger
        self.cwd = cwd
        self.settings = settings
        self.address = ""
        self.metrics_address = ""  # with metrics_listen: where /metrics is served
        self.log = bytearray()
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> ServerProcess:
        env = {
            **_clean_environment(),
            "PYTHONPATH": str(ROOT),
            "SLUICE_LISTEN": self.listen,
            "SLUICE_PLUGINS": "tests.support.plugin:register",
            "SLUICE_TEST_LEDGER": str(self.ledger),
            # Several servers on PostgreSQL: short leases, so a test's takeover takes seconds.
            "SLUICE_LEASE_TTL_SECONDS": "2",
            "SLUICE_LEASE_RENEW_SECONDS": "0.5",
            **{f"SLUICE_{k.upper()}": v for k, v in self.settings.items()},
        }
        if self.database_url:
            env["SLUICE_DATABASE_URL"] = self.database_url
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sluice.server", env=env, cwd=self.cwd,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self._process.stderr is not None
        while not self.address:
            line = await asyncio.wait_for(self._process.stderr.readline(), 30)
            if not line:
                raise RuntimeError(f"server exited before serving:\n{self.log.decode()}")
            self.log += line
            if match := _METRICS.search(line):
                self.metrics_address = match.group(1).decode()  # logged before serving
            if match := _SERVING.search(line):
                self.address = match.group(1).decode()
        self._reader = asyncio.create_task(self._drain(self._process.stderr))
        return self

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():  # keep the pipe from filling up
            self.log += line

    def log_lines(self) -> list[dict[str, Any]]:
        """The log so far, one JSON object per line (the server logs JSON off a terminal)."""
        return [json.loads(line) for line in self.log.decode().splitlines() if line.strip()]

    async def logged(
        self, wanted: Callable[[dict[str, Any]], bool], timeout: float = 10
    ) -> dict[str, Any]:
        """The first log line `wanted` accepts, waiting for it to be written."""
        deadline = time.monotonic() + timeout
        while True:
            found = next((line for line in self.log_lines() if wanted(line)), None)
            if found is not None:
                return found
            assert time.monotonic() < deadline, f"no such log line in:\n{self.log.decode()}"
            await asyncio.sleep(0.02)

    async def kill(self) -> int:
        """SIGKILL: no cleanup of any kind, as in a crash."""
        return await self._signal(signal.SIGKILL)

    async def terminate(self) -> int:
        return await self._signal(signal.SIGTERM)

    def pause(self) -> None:
        """SIGSTOP: the process stops in its tracks, as in a long pause or a partition."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def unpause(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.send_signal(signal.SIGCONT)

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    async def _signal(self, sig: signal.Signals) -> int:
        assert self._process is not None
        if self._process.returncode is None:
            self._process.send_signal(sig)
        code = await asyncio.wait_for(self._process.wait(), 30)
        if self._reader is not None:
            await self._reader
        return code

    async def close(self) -> None:
        if self._process is not None and self._process.returncode is None:
            await self.kill()


@dataclass(frozen=True)
class Exited:
    """A process that ran to its end: exit code and standard error."""

    code: int
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stderr.splitlines()


async def run_until_exit(*args: str, **settings: str) -> Exited:
    """`python -m ARGS` (say "sluice.cli", "serve", ...) with SLUICE_* settings, expected to
    end by itself within 30 s (a server that starts serving instead fails the test)."""
    env = {
        **_clean_environment(),
        "PYTHONPATH": str(ROOT),
        **{f"SLUICE_{k.upper()}": v for k, v in settings.items()},
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", *args, env=env, cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        _, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return Exited(process.returncode, err.decode())


def _clean_environment() -> dict[str, str]:
    """This process's environment without a developer's SLUICE_* settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}


def free_port() -> int:
    """A port free right now, so a restarted server can come back at the same address."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def serving_address(stderr: asyncio.StreamReader, timeout: float = 30) -> str:
    """Read a starting server's log until it says where it serves."""
    while True:
        line = await asyncio.wait_for(stderr.readline(), timeout)
        if not line:
            raise RuntimeError("the server exited before serving")
        if match := _SERVING.search(line):
            return match.group(1).decode()
