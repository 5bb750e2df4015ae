"""Driving `python -m sluice.cli` as a subprocess against the in-process test server."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import pytest

from sluice.server import SluiceServer


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.strip().splitlines()


Sluice = Callable[..., Awaitable[Result]]


async def run_cli(*args: str, address: str, env: Mapping[str, str] | None = None) -> Result:
    """`sluice ARGS` with SLUICE_ADDRESS=address and the SLUICE_* variables in `env`."""
    # The environment must not leak a developer's SLUICE_* settings into the test.
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    environment.update(env or {})
    environment["SLUICE_ADDRESS"] = address
    # A subprocess, not the app in-process: the exit codes and streams are what scripts see, and
    # asyncio's subprocess keeps the loop free to serve the calls it makes.
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sluice.cli", *args,
        env=environment, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    assert "Traceback" not in err.decode(), err.decode()
    return Result(process.returncode, out.decode(), err.decode())


@pytest.fixture
def sluice(server: SluiceServer) -> Sluice:
    """`await sluice("run", ...)`: the CLI pointed at the test server."""

    async def call(*args: str) -> Result:
        return await run_cli(*args, address=server.address)

    return call
