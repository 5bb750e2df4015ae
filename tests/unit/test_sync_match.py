"""Tasks handed to streams in commits. Sync match: a task queued while one of this server's
streams has a credit free is handed to that stream in the commit that queues it (written
ACTIVE), with no activation and no wait for the stream to look. Claims: the credits a stream's
results free take the oldest queued tasks in the commit that records those results. Never more
than its credits, and nothing lost when the commit fails or the stream goes away meanwhile."""

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


def _queue(*, claims: bool = False) -> tuple[TaskQueue, _Tasks]:
    """`claims`: results are recorded in commits (as on SQLite), which take tasks with them."""
    store = _Tasks()
    record = _never_recorded if claims else None
    return TaskQueue(store, _Clock(), lambda _: None, record=record), store  # type: ignore[arg-type]


def _never_recorded(result: Any) -> None:
    return None  # as for a run driven elsewhere


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


def _taken(claimed: Any, *steps: str) -> list[TaskRecord]:
    """What a commit's activation of `claimed` gives back: these steps' tasks, ACTIVE for it."""
    claim = claimed.claim
    return [
        replace(_queued(s), state=TaskState.ACTIVE, delivery=1, worker=claim.worker,
                activated_at=claim.now, expires_at=claim.expires_at)
        for s in steps
    ]  # fmt: skip


async def test_credits_that_come_with_results_wait_for_the_commit_recording_them() -> None:
    queue, store = _queue(claims=True)
    session = queue.session("alice", ["echo"], "w1")  # pending: tasks may wait for it
    session.grant(2, with_results=True)
    assert session.credits == 0 and session.held_back == 2
    looking = asyncio.create_task(session.next())
    await asyncio.sleep(0.01)
    assert store.activations == 0  # no look of its own with them

    (claimed,) = queue.claim()
    assert (claimed.claim.owner, list(claimed.claim.task_types)) == ("alice", ["echo"])
    assert (claimed.claim.limit, claimed.claim.worker) == (2, "w1")
    assert claimed.claim.expires_at == NOW + timedelta(seconds=30)
    assert session.held_back == 0 and queue.claim() == []  # reserved: one claim has them
    queue.claimed([claimed], [_taken(claimed, "a", "b")])

    sent = await asyncio.wait_for(looking, 1)
    assert [t.step_id for t in sent] == ["a", "b"]
    assert session.held == {t.key for t in sent}
    assert session.pending  # it took all it asked for: more may wait
    assert store.activations == 0


async def test_a_claim_that_found_too_few_tasks_gives_the_rest_of_its_credits_back() -> None:
    queue, _ = _queue(claims=True)
    session = queue.session("alice", ["echo"], "w1")
    session.grant(3, with_results=True)
    (claimed,) = queue.claim()
    queue.claimed([claimed], [_taken(claimed, "a")])
    assert session.credits == 2 and [t.step_id for t in session.ready] == ["a"]
    assert not session.pending  # nothing else waits for it: new tasks may be matched to it

    session.grant(1, with_results=True)
    session.pending = True
    (again,) = queue.claim()
    queue.wake(["echo"])  # a task queued while that commit was under way...
    queue.claimed([again], [[]])
    assert session.pending  # ...which the claim may not have seen: the stream looks


async def test_a_failed_commit_gives_a_claims_credits_back_for_the_stream_to_look_with() -> None:
    queue, store = _queue(claims=True)
    session = queue.session("alice", ["echo"], "w1")
    session.grant(1, with_results=True)
    claims = queue.claim()
    queue.unclaimed(claims)
    assert session.credits == 1 and session.pending and not session.ready
    store.found = [replace(_queued("a"), state=TaskState.ACTIVE, delivery=1)]
    sent = await asyncio.wait_for(session.next(), 1)
    assert [t.step_id for t in sent] == ["a"] and store.activations == 1


async def test_credits_no_commit_took_are_the_streams_own_once_its_results_are_recorded() -> None:
    queue, store = _queue(claims=True)
    session = queue.session("alice", ["echo"], "w1")
    session.grant(1, with_results=True)  # say the run is driven elsewhere: no commit here
    looking = asyncio.create_task(session.next())
    store.found = [replace(_queued("a"), state=TaskState.ACTIVE, delivery=1)]
    session.recorded()
    sent = await asyncio.wait_for(looking, 1)
    assert [t.step_id for t in sent] == ["a"] and store.activations == 1
    assert session.credits == 0 and session.held_back == 0


async def test_tasks_claimed_for_a_stream_that_closed_meanwhile_go_back_to_the_queue() -> None:
    queue, store = _queue(claims=True)
    session = queue.session("alice", ["echo"], "w1")
    session.grant(1, with_results=True)
    (claimed,) = queue.claim()
    session.close()
    taken = _taken(claimed, "a")
    queue.claimed([claimed], [taken])
    await asyncio.sleep(0)  # the hand-back runs beside the commit's caller
    assert store.released == [taken[0].key]
    assert not session.held and not session.ready


async def test_without_claims_in_commits_credits_that_come_with_results_are_free_at_once() -> None:
    queue, _ = _queue()  # PostgreSQL: results are recorded before their commits
    session = queue.session("alice", ["echo"], "w1")
    session.grant(1, with_results=True)
    assert session.credits == 1 and session.held_back == 0
    assert queue.claim() == []  # its store is sent no claims: the stream looks itself
