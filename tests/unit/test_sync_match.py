"""Sync match: a task queued while one of this server's streams has a credit free is handed to
that stream in the commit that queues it (written ACTIVE), with no activation and no wait for
the stream to look; never more than its credits, and nothing lost when the commit fails or the
stream goes away meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sluice.engine.ports import TaskKey, TaskRecord, TaskState
from sluice.runtime.task_queue import TaskQueue, WorkerSession

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


class _Clock:
    def now(self) -> datetime:
        return NOW


class _Tasks:
    """The part of the task store a matched task can touch: handing it back, and a stream's
    own look at the queue (which a matched task must not need; `hold` keeps a look waiting,
    `found` is what it then takes)."""

    def __init__(self) -> None:
        self.released: list[TaskKey] = []
        self.activations = 0
        self.hold: asyncio.Event | None = None
        self.looking = asyncio.Event()
        self.found: list[TaskRecord] = []

    async def release_tasks(self, keys: Sequence[TaskKey], max_deliveries: int) -> list[Any]:
        self.released += keys
        return []

    async def activate_tasks(self, *args: Any) -> list[TaskRecord]:
        self.activations += 1
        self.looking.set()
        if self.hold is not None:
            await self.hold.wait()
        found, self.found = self.found, []
        return found


def _queued(step: str, owner: str = "alice", task_type: str = "echo") -> TaskRecord:
    return TaskRecord(
        run_id="run-1", step_id=step, attempt=1, owner=owner, task_type=task_type,
        state=TaskState.QUEUED, delivery=0, queued_at=NOW - timedelta(milliseconds=3),
        start_by=NOW + timedelta(hours=1), run_timeout=timedelta(minutes=5), input={},
    )  # fmt: skip


def _queue() -> tuple[TaskQueue, _Tasks]:
    store = _Tasks()
    return TaskQueue(store, _Clock(), lambda _: None), store  # type: ignore[arg-type]


def _idle(queue: TaskQueue, credits: int) -> WorkerSession:
    """A stream that has looked at the queue and found nothing waiting."""
    session = queue.session("alice", ["echo"], "w1")
    session.grant(credits)
    session.pending = False
    return session


async def test_a_stream_with_credits_gets_the_tasks_as_they_are_queued_and_no_more() -> None:
    queue, store = _queue()
    session = _idle(queue, 2)
    tasks = [_queued("a"), _queued("b"), _queued("c"), _queued("d", owner="bob")]

    matched = queue.match(tasks)

    assert [m.task.step_id for m in matched] == ["a", "b"]  # 2 credits; bob's is not alice's
    for m in matched:
        assert m.session is session
        assert (m.task.state, m.task.delivery, m.task.worker) == (TaskState.ACTIVE, 1, "w1")
        assert m.task.activated_at == NOW and m.task.expires_at == NOW + timedelta(seconds=30)
    assert session.credits == 0
    queue.matched(matched)
    sent = await asyncio.wait_for(session.next(), 1)
    assert [t.step_id for t in sent] == ["a", "b"]
    assert store.activations == 0  # nothing read back from the store
    assert session.held == {m.task.key for m in matched}
    assert queue.match([_queued("e")]) == []  # no credit left


async def test_a_failed_commit_gives_the_credits_back() -> None:
    queue, _ = _queue()
    session = _idle(queue, 1)
    matched = queue.match([_queued("a")])
    assert session.credits == 0
    queue.unmatched(matched)
    assert session.credits == 1 and not session.held and not session.ready


async def test_a_task_matched_to_a_stream_that_closed_meanwhile_goes_back_to_the_queue() -> None:
    queue, store = _queue()
    session = _idle(queue, 1)
    matched = queue.match([_queued("a")])
    session.close()  # the worker half-closed before the commit was stored
    queue.matched(matched)
    await asyncio.sleep(0)  # the hand-back runs beside the commit's caller
    assert store.released == [matched[0].task.key]
    assert not session.held


async def test_a_task_matched_but_not_yet_sent_when_its_stream_closes_goes_back() -> None:
    queue, store = _queue()
    session = _idle(queue, 1)
    matched = queue.match([_queued("a")])
    queue.matched(matched)
    session.close()
    assert await asyncio.wait_for(session.next(), 1) == []
    assert store.released == [matched[0].task.key]
    assert not session.held and not session.ready


async def test_no_match_while_the_server_stops() -> None:
    queue, _ = _queue()
    _idle(queue, 5)
    queue.close_sessions()
    assert queue.match([_queued("a")]) == []


async def test_a_new_task_never_overtakes_older_ones_waiting_for_the_stream() -> None:
    queue, _ = _queue()
    session = _idle(queue, 1)
    queue.wake(["echo"])  # a task was queued while the stream had no credit: it waits
    assert session.pending
    assert queue.match([_queued("a")]) == []  # the stream looks at the queue first
    assert session.credits == 1


async def test_no_match_takes_a_credit_a_look_at_the_queue_is_using() -> None:
    queue, store = _queue()
    session = queue.session("alice", ["echo"], "w1")
    session.grant(1)  # pending: its first look at the queue
    store.hold = asyncio.Event()
    store.found = [replace(_queued("old"), state=TaskState.ACTIVE, delivery=1)]
    looking = asyncio.create_task(session.next())
    await asyncio.wait_for(store.looking.wait(), 1)
    session.pending = False  # as if nothing else were waiting: only the credit is in the way
    assert queue.match([_queued("new")]) == []  # its one credit is the look's
    session.grant(1)  # a credit granted meanwhile is free
    (late,) = queue.match([_queued("new")])
    store.hold.set()
    assert [t.step_id for t in await asyncio.wait_for(looking, 1)] == ["old"]
    assert session.credits == 0 and late.session is session  # 2 granted, 2 held
