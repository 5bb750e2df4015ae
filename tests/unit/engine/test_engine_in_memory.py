"""The Engine on the in-memory store: whole runs (parallel steps, failures, retries, cancel,
pause and resume, gates) without gRPC or SQL, each in milliseconds. Every run's event log
must replay to what the store holds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest

from sluice.engine.errors import NotFound
from sluice.engine.handlers import HandlerRegistry
from sluice.engine.model import (
    Event,
    EventType,
    ExecutionOptions,
    GateAction,
    GateSpec,
    GateStatus,
    GateType,
    Operator,
    RetryPolicy,
    Run,
    RunStatus,
    StepSpec,
    StepStatus,
    Template,
)
from sluice.runtime.driver import Engine
from sluice.store.memory import MemoryStore
from tests.support.clock import ManualClock
from tests.support.handlers import Calls, register
from tests.support.replay import assert_log_matches_state

OWNER = "alice"
WAIT = 5.0  # seconds: only ever reached when the engine is broken


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def delays() -> list[float]:
    """The waits the engine asked for (a retry's backoff): time passes at once here."""
    return []


@pytest.fixture
async def engine(store: MemoryStore, calls: Calls, delays: list[float]) -> AsyncIterator[Engine]:
    clock = ManualClock()

    async def no_sleep(seconds: float) -> None:
        delays.append(seconds)
        clock.advance(timedelta(seconds=seconds))

    registry = HandlerRegistry()
    register(registry, calls)
    engine = Engine(store, registry, sleep=no_sleep, clock=clock)
    yield engine
    await engine.stop()


@pytest.fixture
def calls() -> Calls:
    return Calls()


def latch(step_id: str, *deps: str, output: dict[str, object] | None = None) -> StepSpec:
    config = {"latch": step_id, "output": output or {}}
    return StepSpec(step_id, "latch", config=config, dependencies=deps)


def sleep(step_id: str, *deps: str, output: dict[str, object] | None = None) -> StepSpec:
    return StepSpec(step_id, "sleep", config={"output": output or {}}, dependencies=deps)


async def started(calls: Calls, run: Run, step_id: str) -> None:
    await asyncio.wait_for(calls.started[f"{run.id}/{step_id}"].wait(), WAIT)


async def until(engine: Engine, run: Run, wanted: Callable[[Event], bool]) -> Event:
    """The first event of the run's log (stored, then live) that is `wanted`."""
    async with asyncio.timeout(WAIT):
        async for event in engine.watch(OWNER, run.id, follow=True):
            if wanted(event):
                return event
    raise AssertionError("the watch ended")


async def stored(store: MemoryStore, run: Run) -> Run:
    found = await store.get_run(OWNER, run.id)
    assert found is not None
    await assert_log_matches_state(store, OWNER, run.id)
    return found


async def test_parallel_steps_run_together_and_the_run_completes(
    engine: Engine, store: MemoryStore, calls: Calls
) -> None:
    template = Template("dag", steps=(latch("a"), latch("b"), sleep("c", "a", "b")))
    run = await engine.create_run(OWNER, template, {})
    await engine.execute(OWNER, run.id, ExecutionOptions())

    # Both first steps are running before either may finish: they run in parallel.
    await started(calls, run, "a")
    await started(calls, run, "b")
    assert calls.of(run.id, "c") == []
    calls.open("a")
    calls.open("b")
    done = await asyncio.wait_for(engine.wait_until_rest(OWNER, run.id), WAIT)

    assert done.status is RunStatus.COMPLETED
    assert {s.status for s in done.steps.values()} == {StepStatus.COMPLETED}
    [c] = calls.of(run.id, "c")
    assert c["start"] >= max(calls.of(run.id, s)[0]["end"] for s in ("a", "b"))
    assert (await stored(store, run)).status is RunStatus.COMPLETED
    assert await store.count_active_runs(OWNER) == 0


async def test_a_failing_required_step_fails_the_run(engine: Engine, store: MemoryStore) -> None:
    broken = StepSpec("a", "fail", config={"permanent": True})
    template = Template("t", steps=(broken, sleep("b", "a")))
    run = await engine.create_run(OWNER, template, {})
    done = await engine.execute(OWNER, run.id, ExecutionOptions(), wait=True)

    assert done.status is RunStatus.FAILED
    assert "permanently broken" in done.error
    assert (done.steps["a"].status, done.steps["b"].status) == (
        StepStatus.FAILED,
        StepStatus.SKIPPED,
    )
    assert (await stored(store, run)).status is RunStatus.FAILED


async def test_a_failing_optional_step_does_not(engine: Engine, store: MemoryStore) -> None:
    optional = StepSpec("a", "fail", config={"permanent": True}, optional=True)
    run = await engine.create_run(OWNER, Template("t", steps=(optional, sleep("b"))), {})
    done = await engine.execute(OWNER, run.id, ExecutionOptions(), wait=True)

    assert done.status is RunStatus.COMPLETED
    assert done.steps["a"].status is StepStatus.FAILED
    await stored(store, run)


async def test_a_flaky_step_is_retried_until_it_succeeds(
    engine: Engine, store: MemoryStore, calls: Calls, delays: list[float]
) -> None:
    retry = RetryPolicy(max_attempts=3, initial_backoff=timedelta(seconds=2), multiplier=3)
    flaky = StepSpec("a", "flaky", config={"failures": 2}, retry=retry)
    run = await engine.create_run(OWNER, Template("t", steps=(flaky,)), {})
    done = await engine.execute(OWNER, run.id, ExecutionOptions(), wait=True)

    assert done.status is RunStatus.COMPLETED
    assert (done.steps["a"].attempt, done.steps["a"].output) == (3, {"attempts": 3})
    assert [r["attempt"] for r in calls.of(run.id, "a")] == [1, 2, 3]
    assert delays == pytest.approx([2.0, 6.0], abs=0.05)
    events = await assert_log_matches_state(store, OWNER, run.id)
    assert [e.attempt for e in events if e.type is EventType.STEP_RETRYING] == [1, 2]


async def test_cancel_stops_the_running_step(
    engine: Engine, store: MemoryStore, calls: Calls
) -> None:
    run = await engine.create_run(OWNER, Template("t", steps=(latch("a"), sleep("b", "a"))), {})
    await engine.execute(OWNER, run.id, ExecutionOptions())
    await started(calls, run, "a")
    [handler] = [t for t in asyncio.all_tasks() if t.get_name() == f"{run.id}/a"]

    cancelled = await engine.cancel(OWNER, run.id, "no longer needed")

    assert cancelled.status is RunStatus.CANCELLED
    assert (cancelled.steps["a"].status, cancelled.steps["b"].status) == (
        StepStatus.CANCELLED,
        StepStatus.SKIPPED,
    )
    await asyncio.wait_for(asyncio.wait([handler]), WAIT)
    assert handler.cancelled()
    assert (await stored(store, run)).status is RunStatus.CANCELLED


async def test_pause_holds_the_next_step_until_resume(
    engine: Engine, store: MemoryStore, calls: Calls
) -> None:
    run = await engine.create_run(OWNER, Template("t", steps=(latch("a"), sleep("b", "a"))), {})
    await engine.execute(OWNER, run.id, ExecutionOptions())
    await started(calls, run, "a")

    paused = await engine.pause(OWNER, run.id, "lunch")
    assert (paused.status, paused.pause_reason) == (RunStatus.PAUSED, "lunch")
    calls.open("a")  # the running step finishes while paused; the next one must wait
    await until(engine, run, lambda e: e.type is EventType.STEP_COMPLETED)
    held = await stored(store, run)
    assert (held.status, held.steps["b"].status) == (RunStatus.PAUSED, StepStatus.PENDING)
    assert calls.of(run.id, "b") == []

    done = await engine.resume(OWNER, run.id, None, wait=True)
    assert done.status is RunStatus.COMPLETED
    assert (await stored(store, run)).steps["b"].status is StepStatus.COMPLETED


async def test_an_approval_gate_pauses_until_approved(engine: Engine, store: MemoryStore) -> None:
    gate = GateSpec("review", GateType.APPROVAL, "a", None)
    template = Template("t", steps=(sleep("a"), sleep("b", "a")), gates=(gate,))
    run = await engine.create_run(OWNER, template, {})

    waiting = await engine.execute(OWNER, run.id, ExecutionOptions(), wait=True)
    assert (waiting.status, waiting.paused_gate_id) == (RunStatus.PAUSED, "review")
    assert waiting.gates["review"].status is GateStatus.AWAITING_APPROVAL
    assert waiting.steps["b"].status is StepStatus.PENDING
    await stored(store, run)

    done = await engine.decide_gate(OWNER, run.id, "review", approve=True, wait=True)
    assert done.status is RunStatus.COMPLETED
    assert (await stored(store, run)).gates["review"].status is GateStatus.APPROVED


async def test_a_failed_abort_gate_fails_the_run(engine: Engine, store: MemoryStore) -> None:
    gate = GateSpec("quality", GateType.THRESHOLD, "a", GateAction.ABORT, metric="score",
                    operator=Operator.GTE, threshold=0.8)  # fmt: skip
    template = Template("t", steps=(sleep("a", output={"score": 0.5}), sleep("b", "a")),
                        gates=(gate,))  # fmt: skip
    run = await engine.create_run(OWNER, template, {})
    done = await engine.execute(OWNER, run.id, ExecutionOptions(), wait=True)

    assert done.status is RunStatus.FAILED
    assert "gate quality failed" in done.error
    assert (done.gates["quality"].status, done.gates["quality"].observed_value) == (
        GateStatus.FAILED,
        0.5,
    )
    assert done.steps["b"].status is StepStatus.SKIPPED
    await stored(store, run)


async def test_another_owner_sees_nothing(engine: Engine) -> None:
    run = await engine.create_run(OWNER, Template("t", steps=(sleep("a"),)), {})
    with pytest.raises(NotFound):
        await engine.get_run("mallory", run.id)
