"""Step types for tests, registered beside the built-in ones. They record what happened to
them so a test can assert on it, and block on latches the test opens."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sluice.engine.handlers import (
    HandlerRegistry,
    PermanentStepError,
    StepContext,
    StepError,
    StepResult,
)


@dataclass
class Calls:
    """Every handler call: (step type, run id, step id, attempt, start, end) in monotonic time."""

    records: list[dict[str, Any]] = field(default_factory=list)
    latches: dict[str, asyncio.Event] = field(default_factory=lambda: defaultdict(asyncio.Event))
    started: dict[str, asyncio.Event] = field(default_factory=lambda: defaultdict(asyncio.Event))

    def of(self, run_id: str, step_id: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["run"] == run_id and r["step"] == step_id]

    def open(self, name: str) -> None:
        self.latches[name].set()


class _Recording:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    async def run(self, ctx: StepContext) -> StepResult:
        record = {
            "type": ctx.step_type,
            "run": ctx.run_id,
            "step": ctx.step_id,
            "attempt": ctx.attempt,
            "key": ctx.idempotency_key,
            "start": time.monotonic(),
            "end": None,
        }
        self.calls.records.append(record)
        self.calls.started[f"{ctx.run_id}/{ctx.step_id}"].set()
        try:
            result = await self.work(ctx)
        finally:
            record["end"] = time.monotonic()
        return result

    async def work(self, ctx: StepContext) -> StepResult:
        raise NotImplementedError


class Sleep(_Recording):
    """Sleeps config.seconds, then outputs config.output (default {})."""

    async def work(self, ctx: StepContext) -> StepResult:
        await asyncio.sleep(float(ctx.config.get("seconds", 0)))
        return StepResult(dict(ctx.config.get("output", {})))


class Flaky(_Recording):
    """Fails the first config.failures attempts (transient), then succeeds."""

    async def work(self, ctx: StepContext) -> StepResult:
        if ctx.attempt <= int(ctx.config.get("failures", 0)):
            raise ConnectionError(f"transient failure on attempt {ctx.attempt}")
        return StepResult({"attempts": ctx.attempt})


class Fail(_Recording):
    """Always fails; permanently when config.permanent; as config.errorType when given."""

    async def work(self, ctx: StepContext) -> StepResult:
        if ctx.config.get("permanent"):
            raise PermanentStepError("permanently broken")
        if ctx.config.get("errorType"):
            raise StepError("fails with a type", error_type=str(ctx.config["errorType"]))
        raise RuntimeError("always fails")


class Latch(_Recording):
    """Waits until the test opens the latch named config.latch, then outputs config.output."""

    async def work(self, ctx: StepContext) -> StepResult:
        await self.calls.latches[str(ctx.config["latch"])].wait()
        return StepResult(dict(ctx.config.get("output", {})))


def register(registry: HandlerRegistry, calls: Calls) -> None:
    for name, cls in (("sleep", Sleep), ("flaky", Flaky), ("fail", Fail), ("latch", Latch)):
        registry.register(name, cls(calls))
