"""Step types for tests that run the server as a separate process (`--plugin
tests.support.plugin:register`). Every handler call is appended to the ledger file named by
SLUICE_TEST_LEDGER, one JSON line per start and per finish, so a test can count invocations
across crashes."""

from __future__ import annotations

import asyncio
import json
import os

from sluice.engine.handlers import HandlerRegistry, StepContext, StepResult


def _append(entry: dict[str, object]) -> None:
    path = os.environ["SLUICE_TEST_LEDGER"]
    # One small O_APPEND write per line: lines from concurrent handlers never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(entry) + "\n").encode())
    finally:
        os.close(fd)


class Work:
    """Sleeps config.seconds, recording its start and finish in the ledger."""

    async def run(self, ctx: StepContext) -> StepResult:
        entry: dict[str, object] = {
            "run": ctx.run_id, "step": ctx.step_id, "attempt": ctx.attempt,
            "key": ctx.idempotency_key, "pid": os.getpid(),
        }  # fmt: skip
        _append({**entry, "phase": "start"})
        await asyncio.sleep(float(ctx.config.get("seconds", 0)))
        _append({**entry, "phase": "finish"})
        return StepResult({"step": ctx.step_id, "attempt": ctx.attempt})


class Flaky:
    """Fails its first config.failures attempts with a transient error, then succeeds."""

    async def run(self, ctx: StepContext) -> StepResult:
        if ctx.attempt <= int(ctx.config.get("failures", 0)):
            raise ConnectionError(f"transient failure on attempt {ctx.attempt}")
        return StepResult({"attempts": ctx.attempt})


def register(registry: HandlerRegistry) -> None:
    registry.register("work", Work())
    registry.register("flaky", Flaky())


def read_ledger(path: str) -> list[dict[str, object]]:
    with open(path, encoding="utf-8") as ledger:
        return [json.loads(line) for line in ledger if line.strip()]
