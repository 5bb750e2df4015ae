"""A Sluice server in its own process, for tests that kill it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_SERVING = re.compile(rb"serving on (127\.0\.0\.1:\d+)")


class ServerProcess:
    def __init__(self, database_url: str, ledger: Path, listen: str, **settings: str) -> None:
        self.database_url = database_url
        self.listen = listen
        self.ledger = ledger
        self.settings = settings
        self.address = ""
        self.log = bytearray()
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> ServerProcess:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "SLUICE_LISTEN": self.listen,
            "SLUICE_DATABASE_URL": self.database_url,
            "SLUICE_PLUGINS": "tests.support.plugin:register",
            "SLUICE_TEST_LEDGER": str(self.ledger),
            **{f"SLUICE_{k.upper()}": v for k, v in self.settings.items()},
        }
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sluice.server", env=env, cwd=ROOT,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self._process.stderr is not None
        while not self.address:
            line = await asyncio.wait_for(self._process.stderr.readline(), 30)
            if not line:
                raise RuntimeError(f"server exited before serving:\n{self.log.decode()}")
            self.log += line
            if match := _SERVING.search(line):
                self.address = match.group(1).decode()
        self._reader = asyncio.create_task(self._drain(self._process.stderr))
        return self

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():  # keep the pipe from filling up
            self.log += line

    async def kill(self) -> int:
        """SIGKILL: no cleanup of any kind, as in a crash."""
        return await self._signal(signal.SIGKILL)

    async def terminate(self) -> int:
        return await self._signal(signal.SIGTERM)

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
