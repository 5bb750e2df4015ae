"""Dispatch: runs a committed STEP_STARTED attempt and hands its outcome back.

The driver gives the dispatcher one channel (`Deliver`, a plain callback) when it makes it;
the dispatcher never calls into the driver otherwise. An attempt's outcome is a value
(`Outcome`): what the step returned, or why it failed and whether another attempt may help.
Deciding what follows (a retry at a time, or failing the step) is the pure engine's job.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from sluice.engine import substitution
from sluice.engine.handlers import (
    HandlerRegistry,
    PermanentStepError,
    StepContext,
    StepError,
    StepResult,
)
from sluice.engine.model import JsonObject, Run, StepSpec
from sluice.engine.ports import Clock, TaskResult
from sluice.runtime.probes import NO_PROBES, Probes


@dataclass(frozen=True, slots=True)
class Report:
    """A worker's result that brought an outcome, to record in the commit that records the
    outcome; `recorded` is told whether it was (False: its caller records it itself)."""

    result: TaskResult
    recorded: asyncio.Future[bool]

    def answer(self, recorded: bool) -> None:
        if not self.recorded.done():  # (its caller may have gone)
            self.recorded.set_result(recorded)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt of a step ended."""

    run_id: str
    step_id: str
    attempt: int
    result: StepResult | None  # None: failed with `error`
    error: str = ""
    retryable: bool = True
    # A worker's own wait before the next attempt, instead of the retry policy's backoff.
    retry_after: timedelta | None = None
    # The kind of failure, as the handler or worker named it: the retry policy may refuse it.
    error_type: str = ""
    # The worker's result that brought it, when recorded with it (`Engine.record_result`).
    report: Report | None = None


Deliver = Callable[[Outcome], None]


class Tracing(Protocol):
    """What the driver and the dispatchers ask of a traced server's tracing
    (`sluice.observability.tracing.Tracing`; None when the server does not trace, and then
    they do nothing more than they did without it)."""

    def new_run(self, run: Run) -> dict[str, str]:
        """The trace context to store with a new run (`Run.trace_context`)."""
        ...

    def attempt(self, run: Run, step_id: str, attempt: int) -> AbstractContextManager[None]:
        """Held while a local handler runs the attempt: its span is the current one."""
        ...

    def carrier(self, run: Run, step_id: str, attempt: int) -> dict[str, str]:
        """The attempt's span context as W3C Trace Context fields, for a worker's task."""
        ...


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    max_concurrent_steps: int = 256
    default_step_timeout: timedelta = timedelta(minutes=5)
    # A step's output (as JSON) larger than this fails the step: it is stored and streamed.
    max_output_bytes: int = 1024 * 1024


class LocalDispatcher:
    """Runs attempts with the handlers registered in this process, each in its own task."""

    def __init__(
        self,
        handlers: HandlerRegistry,
        deliver: Deliver,
        clock: Clock,
        settings: DispatchSettings = DispatchSettings(),
        probes: Probes = NO_PROBES,
        tracing: Tracing | None = None,
    ) -> None:
        self.handlers = handlers
        self._deliver = deliver
        self._clock = clock
        self._settings = settings
        self._probes = probes
        self._tracing = tracing
        self._slots = asyncio.Semaphore(settings.max_concurrent_steps)
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}

    def start(self, run: Run, step_id: str, attempt: int) -> None:
        """Run attempt `attempt` of the step (committed as started) on `run` as it is now."""
        key = (run.id, step_id)
        self.cancel(run.id, step_id)  # a new attempt replaces an older one still running
        task = asyncio.create_task(self._attempt(run, step_id, attempt), name=f"{run.id}/{step_id}")
        self._tasks[key] = task
        task.add_done_callback(lambda done: self._forget(key, done))

    def running(self, run_id: str, step_id: str) -> bool:
        return (run_id, step_id) in self._tasks

    def cancel(self, run_id: str, step_id: str) -> None:
        """Stop the step's attempt, if one runs: its outcome is never delivered."""
        task = self._tasks.pop((run_id, step_id), None)
        if task is not None:
            task.cancel()

    def tasks(self) -> list[asyncio.Task[None]]:
        return list(self._tasks.values())

    async def stop(self) -> None:
        """Stop every attempt at once; none is delivered (a later owner runs them again)."""
        tasks = self.tasks()
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _forget(self, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]

    async def _attempt(self, run: Run, step_id: str, attempt: int) -> None:
        spec = run.template.step(step_id)
        try:
            result = await self._call(run, spec, attempt)
            error = _unstorable(result, self._settings.max_output_bytes)
            outcome = (
                Outcome(run.id, step_id, attempt, None, error, retryable=False)
                if error
                else Outcome(run.id, step_id, attempt, result)
            )
        except asyncio.CancelledError:
            raise  # cancelled by the run (already recorded) or by a stop (run again later)
        except Exception as exc:
            retryable = not isinstance(exc, PermanentStepError)
            error_type = exc.error_type if isinstance(exc, StepError) else ""
            outcome = Outcome(
                run.id, step_id, attempt, None, describe(exc), retryable, error_type=error_type
            )
        task = asyncio.current_task()
        # Delivered only while still the step's current attempt: a cancelled one says nothing.
        if self._tasks.get((run.id, step_id)) is task:
            del self._tasks[(run.id, step_id)]
            self._deliver(outcome)

    async def _call(self, run: Run, spec: StepSpec, attempt: int) -> StepResult:
        ctx = self._context(run, spec, attempt)  # built apart: this frame lives as long as the step
        timeout = (spec.timeout or self._settings.default_step_timeout).total_seconds()
        handler = self.handlers.get(spec.type)
        async with self._slots:
            began = run.steps[spec.id].started_at
            if began is not None:
                self._probes.step_began(spec.type, began)
            try:
                async with asyncio.timeout(timeout):
                    if self._tracing is None:
                        return await handler.run(ctx)
                    with self._tracing.attempt(run, spec.id, attempt):
                        return await handler.run(ctx)
            except TimeoutError:
                raise TimeoutError(f"attempt timed out after {timeout:g}s") from None

    def _context(self, run: Run, spec: StepSpec, attempt: int) -> StepContext:
        resolved = resolve(run, spec, self.handlers)
        return StepContext(
            run_id=run.id,
            step_id=spec.id,
            step_type=spec.type,
            attempt=attempt,
            idempotency_key=f"{run.id}/{spec.id}",
            config=resolved.config,
            params=run.params,
            inputs=resolved.inputs,
            upstream=resolved.upstream,
            owner=run.owner,
            now=self._clock.now(),
        )


@dataclass(frozen=True, slots=True)
class Resolved:
    """What an attempt of a step works on, as the run stands when it starts."""

    config: dict[str, Any]
    # Outputs of the step's direct dependencies, and of every completed step upstream.
    inputs: dict[str, JsonObject]
    upstream: dict[str, JsonObject]


def resolve(run: Run, spec: StepSpec, handlers: HandlerRegistry) -> Resolved:
    """The step's config with its substitutions resolved and checked, and its upstream
    outputs; PermanentStepError when the config cannot be resolved or does not fit."""
    upstream = run.upstream_outputs(spec.id)
    try:
        config = substitution.resolve(dict(spec.config), run.params, upstream)
    except substitution.SubstitutionError as exc:
        raise PermanentStepError(str(exc)) from None
    # Validation could not judge substituted values: the resolved config is checked here.
    handlers.check_resolved(spec.type, config)
    inputs = {d: upstream[d] for d in spec.dependencies if d in upstream}
    return Resolved(config, inputs, upstream)


def _unstorable(result: StepResult, limit: int) -> str:
    """Why a handler's result cannot be stored and streamed, or "" when it can."""
    try:
        size = len(json.dumps([result.output, result.notifications], allow_nan=False))
    except (TypeError, ValueError) as exc:
        return f"the step's output is not JSON data: {exc}"
    if size > limit:
        return f"the step's output is {size} bytes as JSON; the limit is {limit}"
    return ""


def describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
