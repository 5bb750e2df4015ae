"""A worker's result for a run this server drives is recorded in the commit of the outcome it
brings: when the worker is answered, its task and its step are both finished in the store, by
one transaction. A result whose task moved on meanwhile (released, taken by another worker)
writes nothing and is refused, as a result reported to any other server would be."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from sluice.engine.errors import FailedPrecondition
from sluice.engine.handlers import HandlerRegistry
from sluice.engine.model import (
    TASK_STEP_TYPE,
    ExecutionOptions,
    RunStatus,
    StepSpec,
    StepStatus,
    Template,
)
from sluice.engine.ports import TaskKey, TaskRecord, TaskState
from sluice.runtime.driver import Engine
from sluice.store.memory import MemoryStore
from tests.support.clock import ManualClock
from tests.support.handlers import Calls, register

OWNER = "alice"
WAIT = 5.0  # seconds: only ever reached when the engine is broken


class _CountingStore(MemoryStore):
    """The memory store, counting results recorded on their own (not with their outcome)."""

    def __init__(self) -> None:
        super().__init__()
        self.finished_alone = 0

    async def finish_task(
        self, owner: str, key: TaskKey, state: TaskState, result: Mapping[str, Any]
    ) -> tuple[bool, TaskRecord | None]:
        self.finished_alone += 1
        return await super().finish_task(owner, key, state, result)


@pytest.fixture
def store() -> _CountingStore:
    return _CountingStore()


@pytest.fixture
async def engine(store: _CountingStore) -> AsyncIterator[Engine]:
    registry = HandlerRegistry()
    register(registry, Calls())
    engine = Engine(store, registry, clock=ManualClock())
    yield engine
    await engine.stop()


def task(step_id: str, *deps: str) -> StepSpec:
    return StepSpec(step_id, TASK_STEP_TYPE, task_type="echo", dependencies=deps)


async def take(engine: Engine, count: int, worker: str = "w1") -> list[TaskRecord]:
    return await engine.task_queue.poll(OWNER, ["echo"], count, worker, WAIT)


async def test_the_answer_comes_once_task_and_step_are_committed_together(
    engine: Engine, store: _CountingStore
) -> None:
    template = Template("t", steps=(task("a"), StepSpec("b", "sleep", dependencies=("a",))))
    run = await engine.create_run(OWNER, template, {})
    await engine.execute(OWNER, run.id, ExecutionOptions())
    (taken,) = await take(engine, 1)

    await engine.task_queue.complete(OWNER, taken.key, {"n": 1})

    # Both finished in the store by the time the worker hears OK: no second write, and no
    # moment where the task is done and its step still running.
    stored_task = await store.get_task(run.id, "a")
    assert stored_task is not None
    assert (stored_task.state, stored_task.result) == (TaskState.COMPLETED, {"output": {"n": 1}})
    stored_run = await store.get_run(OWNER, run.id)
    assert stored_run is not None
    assert stored_run.steps["a"].status is StepStatus.COMPLETED
    assert stored_run.steps["a"].output == {"n": 1}
    assert store.finished_alone == 0
    done = await asyncio.wait_for(engine.wait_until_rest(OWNER, run.id), WAIT)
    assert done.status is RunStatus.COMPLETED

    # The same result again: already recorded, OK (looked up in the store, changes nothing).
    await engine.task_queue.complete(OWNER, taken.key, {"n": 1})
    with pytest.raises(FailedPrecondition, match="another result"):
        await engine.task_queue.complete(OWNER, taken.key, {"n": 2})


async def test_a_result_whose_task_moved_on_writes_nothing_and_is_refused(
    engine: Engine, store: _CountingStore
) -> None:
    template = Template("t", steps=(task("a"), task("c")))
    run = await engine.create_run(OWNER, template, {})
    await engine.execute(OWNER, run.id, ExecutionOptions())
    first = {t.step_id: t for t in await take(engine, 2)}
    await engine.task_queue.release([first["a"].key])  # the worker's stream broke
    (again,) = await take(engine, 1, worker="w2")
    assert again.key == first["a"].key._replace(delivery=2)

    # The first worker's late result for "a" and its result for "c" land in one flush: the
    # commit refuses the stale one and writes nothing; each is then recorded (or refused) in
    # the store on its own, and "c" completes all the same.
    stale, fine = await asyncio.gather(
        engine.task_queue.complete(OWNER, first["a"].key, {"late": True}),
        engine.task_queue.complete(OWNER, first["c"].key, {"n": 3}),
        return_exceptions=True,
    )

    assert isinstance(stale, FailedPrecondition), stale
    assert "handed to another worker" in str(stale)
    assert fine is None
    assert store.finished_alone == 2
    held = await store.get_task(run.id, "a")
    assert held is not None and (held.state, held.delivery) == (TaskState.ACTIVE, 2)
    recorded = await store.get_task(run.id, "c")
    assert recorded is not None and recorded.state is TaskState.COMPLETED

    await engine.task_queue.complete(OWNER, again.key, {"n": 1})
    done = await asyncio.wait_for(engine.wait_until_rest(OWNER, run.id), WAIT)
    assert done.status is RunStatus.COMPLETED
    assert (done.steps["a"].output, done.steps["c"].output) == ({"n": 1}, {"n": 3})
