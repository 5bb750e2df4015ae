"""One Store protocol, three stores: the in-memory one, a SQLite file and (with
SLUICE_TEST_DATABASE_URL) PostgreSQL answer every check here the same, so the memory store the
engine tests run on cannot drift from the databases the server runs on."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sluice.engine.analytics import PERCENTILE_ERROR, Analytics, AnalyticsQuery
from sluice.engine.errors import Conflict, StaleTaskResult
from sluice.engine.model import (
    Event,
    EventType,
    ExecutionOptions,
    GateAction,
    GateSpec,
    GateStatus,
    GateType,
    Operator,
    Publication,
    Run,
    RunStatus,
    StepSpec,
    StepStatus,
    Template,
)
from sluice.engine.ports import (
    RunFilter,
    RunKey,
    Store,
    TaskClaim,
    TaskKey,
    TaskRecord,
    TaskResult,
    TaskState,
    TaskWrites,
)
from sluice.engine.transitions import apply
from sluice.store.factory import open_store
from sluice.store.memory import MemoryStore

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
GATE = GateSpec("g", GateType.THRESHOLD, "a", GateAction.CONTINUE, metric="score",
                operator=Operator.GTE, threshold=0.5)  # fmt: skip
ONE = Template("one", steps=(StepSpec("a", "sleep"), StepSpec("b", "sleep", dependencies=("a",))),
               gates=(GATE,))  # fmt: skip
OTHER = Template("other", steps=ONE.steps, gates=ONE.gates)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: str
) -> AsyncIterator[Store]:
    if request.param == "memory":
        opened: Store = MemoryStore()
    elif request.param == "sqlite":
        opened = await open_store(f"sqlite:///{tmp_path / 'conformance.db'}")
    elif database_url.startswith("postgresql"):  # SLUICE_TEST_DATABASE_URL names a server
        opened = await open_store(database_url)
    else:
        pytest.skip("PostgreSQL: set SLUICE_TEST_DATABASE_URL (make test-postgres)")
    yield opened
    await opened.close()


def new_run(
    n: int, *, owner: str = "alice", template: Template = ONE, request_id: str = ""
) -> tuple[Run, list[Event]]:
    """Run number n, created n minutes after T0, with its first event applied."""
    run = Run.new(id=f"00000000-0000-4000-8000-{n:012d}", owner=owner, template=template,
                  params={"n": n, "nested": {"list": [1, None]}}, now=T0 + timedelta(minutes=n))  # fmt: skip
    run.request_id = request_id
    return run, [apply(run, Event(EventType.WORKFLOW_CREATED, run.created_at))]


async def created(store: Store, n: int, **kwargs: object) -> Run:
    run, events = new_run(n, **kwargs)  # type: ignore[arg-type]
    return await store.create_run(run, events)


async def advance(
    store: Store, run: Run, *events: Event, publications: Sequence[tuple[str, Publication]] = ()
) -> list[Event]:
    """Apply `events` to `run` and commit them as the engine does (version one up)."""
    applied = [apply(run, e) for e in events]
    run.version += 1
    await store.commit(run, applied, publications)
    return applied


def at(run: Run, seconds: float) -> datetime:
    return run.created_at + timedelta(seconds=seconds)


async def started(store: Store, run: Run) -> None:
    await advance(
        store, run,
        Event(EventType.WORKFLOW_STARTED, at(run, 1), details={"autoApprove": True}),
        Event(EventType.STEP_STARTED, at(run, 1), "a", attempt=1),
    )  # fmt: skip


async def completed(store: Store, run: Run) -> None:
    await started(store, run)
    output = {"score": 0.75, "text": "ünïcode"}
    await advance(
        store, run,
        Event(EventType.STEP_COMPLETED, at(run, 2), "a", attempt=1, details={"output": output}),
        Event(EventType.GATE_PASSED, at(run, 2), "a", "g", details={"observedValue": 0.75, "message": "ok"}),
        Event(EventType.STEP_STARTED, at(run, 2), "b", attempt=1),
    )  # fmt: skip
    await advance(
        store, run,
        Event(EventType.STEP_COMPLETED, at(run, 3), "b", attempt=1, details={"output": {}}),
        Event(EventType.WORKFLOW_COMPLETED, at(run, 3)),
    )  # fmt: skip


async def test_what_is_written_reads_back(store: Store) -> None:
    run = await created(store, 1)
    await completed(store, run)

    back = await store.get_run("alice", run.id)
    assert back is not None
    assert (back.id, back.owner, back.template.id, back.params) == (
        run.id, "alice", "one", {"n": 1, "nested": {"list": [1, None]}},
    )  # fmt: skip
    assert back.template.step("b").dependencies == ("a",)
    assert (back.status, back.version, back.last_sequence, back.options) == (
        RunStatus.COMPLETED, 3, run.last_sequence, ExecutionOptions(auto_approve=True),
    )  # fmt: skip
    assert (back.created_at, back.started_at, back.ended_at, back.updated_at) == (
        run.created_at, at(run, 1), at(run, 3), at(run, 3),
    )  # fmt: skip
    assert back.steps == run.steps
    assert back.steps["a"].output == {"score": 0.75, "text": "ünïcode"}
    assert back.gates == run.gates
    assert back.gates["g"].status is GateStatus.PASSED


async def test_events_come_back_in_order_from_any_point(store: Store) -> None:
    run = await created(store, 1)
    await completed(store, run)
    every = await store.list_events(run.id, 0, 100)
    assert [e.sequence for e in every] == list(range(1, run.last_sequence + 1))
    assert [e.type for e in every[:3]] == [
        EventType.WORKFLOW_CREATED, EventType.WORKFLOW_STARTED, EventType.STEP_STARTED,
    ]  # fmt: skip
    assert every[-1].run_status is RunStatus.COMPLETED
    assert every[3].details == {"output": {"score": 0.75, "text": "ünïcode"}}
    assert [e.sequence for e in await store.list_events(run.id, 2, 3)] == [3, 4, 5]
    assert await store.list_events(run.id, run.last_sequence, 10) == []
    assert await store.list_events("00000000-0000-4000-8000-999999999999", 0, 10) == []


async def test_events_filtered_by_type_and_step_come_back_in_order(store: Store) -> None:
    run = await created(store, 1)
    await completed(store, run)
    every = await store.list_events(run.id, 0, 100)
    kinds = (EventType.STEP_COMPLETED, EventType.WORKFLOW_COMPLETED)

    async def listed(after: int = 0, limit: int = 100, **where: object) -> list[Event]:
        return await store.list_events(run.id, after, limit, **where)  # type: ignore[arg-type]

    assert await listed(types=kinds) == [e for e in every if e.type in kinds]
    assert await listed(step_ids=["a"]) == [e for e in every if e.step_id == "a"]
    assert {e.gate_id for e in await listed(step_ids=["a"])} == {"", "g"}, "its gate's too"
    assert await listed(types=[EventType.STEP_STARTED], step_ids=["a", "b"]) == [
        e for e in every if e.type is EventType.STEP_STARTED
    ]
    # The limit counts matching events only, and the cursor is any sequence.
    started_b = [e for e in every if e.step_id == "b"]
    assert await listed(limit=1, step_ids=["b"]) == started_b[:1]
    assert await listed(started_b[0].sequence, 1, step_ids=["b"]) == started_b[1:2]
    assert await listed(types=[EventType.WORKFLOW_CANCELLED]) == []
    assert await listed(step_ids=["nope"]) == []


async def test_a_stale_or_skipping_version_conflicts_and_changes_nothing(store: Store) -> None:
    run = await created(store, 1)
    await started(store, run)  # version 1

    stale = run.copy()
    stale.version = 1  # what another writer would hold: the version already stored
    with pytest.raises(Conflict):
        await store.commit(stale, [apply(stale, Event(EventType.WORKFLOW_PAUSED, at(run, 5)))])
    ahead = run.copy()
    ahead.version = 3
    with pytest.raises(Conflict):
        await store.commit(ahead, [apply(ahead, Event(EventType.WORKFLOW_PAUSED, at(run, 5)))])
    # The right version, but an event number already stored: someone else's log.
    duplicate = run.copy()
    duplicate.version = 2
    event = apply(duplicate, Event(EventType.WORKFLOW_PAUSED, at(run, 5)))
    reused = Event(event.type, event.time, sequence=2, run_id=run.id, run_status=event.run_status)
    with pytest.raises(Conflict):
        await store.commit(duplicate, [reused])

    back = await store.get_run("alice", run.id)
    assert back is not None
    assert (back.status, back.version, back.last_sequence) == (RunStatus.RUNNING, 1, 3)
    assert len(await store.list_events(run.id, 0, 100)) == 3


async def test_a_commit_writes_only_what_its_events_name(store: Store) -> None:
    run = await created(store, 1)
    await started(store, run)
    run.steps["b"].error = "changed without an event"
    await advance(store, run, Event(EventType.WORKFLOW_PAUSED, at(run, 2)))
    back = await store.get_run("alice", run.id)
    assert back is not None
    assert (back.status, back.steps["b"].error) == (RunStatus.PAUSED, "")


async def test_a_request_id_gives_back_the_first_run(store: Store) -> None:
    first = await created(store, 1, request_id="req-1")
    again = await created(store, 2, request_id="req-1")
    assert again.id == first.id
    elsewhere = await created(store, 3, owner="bob", request_id="req-1")
    assert elsewhere.id != first.id
    assert [r.id for r in (await store.list_runs("alice", RunFilter(), limit=10, after=None)).runs] == [first.id]  # fmt: skip
    assert await store.get_run_by_request("alice", "req-1") is not None
    assert await store.get_run_by_request("alice", "req-2") is None


async def test_another_owner_sees_and_deletes_nothing(store: Store) -> None:
    run = await created(store, 1)
    await completed(store, run)
    assert await store.get_run("bob", run.id) is None
    assert (await store.list_runs("bob", RunFilter(), limit=10, after=None)).runs == []
    assert await store.delete_run("bob", run.id) is None
    assert await store.count_active_runs("bob") == 0
    assert await store.get_run("alice", run.id) is not None


async def test_pages_newest_first_with_cursors_and_filters(store: Store) -> None:
    runs = [await created(store, n, template=ONE if n % 2 else OTHER) for n in range(1, 8)]
    for run in runs[:3]:
        await started(store, run)  # 1-3 RUNNING, 4-7 PENDING
    await completed(store, runs[3])  # 4 COMPLETED

    def ids(page: list[Run]) -> list[int]:
        return [int(r.id[-12:]) for r in page]

    first = await store.list_runs("alice", RunFilter(), limit=3, after=None)
    assert ids(first.runs) == [7, 6, 5]
    assert first.next_cursor == (runs[4].created_at, runs[4].id)
    second = await store.list_runs("alice", RunFilter(), limit=3, after=first.next_cursor)
    assert ids(second.runs) == [4, 3, 2]
    last = await store.list_runs("alice", RunFilter(), limit=3, after=second.next_cursor)
    assert (ids(last.runs), last.next_cursor) == ([1], None)

    async def matching(where: RunFilter, limit: int = 10) -> list[int]:
        found, after = [], None
        while True:
            page = await store.list_runs("alice", where, limit=limit, after=after)
            found += ids(page.runs)
            if page.next_cursor is None:
                return found
            after = page.next_cursor

    statuses = (RunStatus.RUNNING, RunStatus.COMPLETED)
    assert await matching(RunFilter(statuses=statuses), limit=2) == [4, 3, 2, 1]
    assert await matching(RunFilter(statuses=(RunStatus.PENDING,))) == [7, 6, 5]
    assert await matching(RunFilter(template_id="other"), limit=1) == [6, 4, 2]
    assert await matching(RunFilter(template_id="one", statuses=(RunStatus.RUNNING,))) == [3, 1]
    window = RunFilter(created_from=runs[1].created_at, created_before=runs[5].created_at)
    assert await matching(window, limit=2) == [5, 4, 3, 2]

    bare = await store.list_runs("alice", RunFilter(), limit=10, after=None, outputs=False)
    [done] = [r for r in bare.runs if r.id == runs[3].id]
    assert (done.steps["a"].status, done.steps["a"].output) == (StepStatus.COMPLETED, None)


async def test_only_ended_runs_are_deleted_with_their_logs(store: Store) -> None:
    running, ended, pending = [await created(store, n) for n in (1, 2, 3)]
    await started(store, running)
    await completed(store, ended)

    assert await store.delete_run("alice", running.id) is RunStatus.RUNNING
    assert await store.get_run("alice", running.id) is not None
    assert await store.delete_run("alice", ended.id) is RunStatus.COMPLETED
    assert await store.get_run("alice", ended.id) is None
    assert await store.list_events(ended.id, 0, 10) == []
    assert await store.delete_run("alice", ended.id) is None
    assert await store.count_active_runs("alice") == 2
    assert [r.id for r in await store.unfinished_runs()] == [running.id]
    assert await store.pending_runs_created_before(T0 + timedelta(hours=1), 10) == [
        RunKey("alice", pending.id)
    ]
    assert await store.pending_runs_created_before(pending.created_at, 10) == []


async def test_retention_deletes_the_oldest_ended_runs_first(store: Store) -> None:
    runs = [await created(store, n) for n in (1, 2, 3)]
    for run in runs:
        await completed(store, run)
    later = await created(store, 4)
    await started(store, later)

    cutoff = T0 + timedelta(hours=1)
    assert await store.delete_runs_ended_before(cutoff, 2) == 2
    assert [await store.get_run("alice", r.id) is None for r in runs] == [True, True, False]
    assert await store.delete_runs_ended_before(cutoff, 10) == 1
    assert await store.get_run("alice", later.id) is not None


async def test_outbox_records_come_with_their_commit(store: Store) -> None:
    run = await created(store, 1)
    await started(store, run)
    await advance(
        store, run, Event(EventType.STEP_COMPLETED, at(run, 2), "a", attempt=1),
        publications=[("a", Publication("post", "blog", {"k": [1, 2]})),
                      ("a", Publication("notification", "ops", {}))],
    )  # fmt: skip
    records = await store.list_outbox(run.id)  # type: ignore[attr-defined]
    assert [(r["step_id"], r["kind"], r["channel"], r["payload"]) for r in records] == [
        ("a", "post", "blog", {"k": [1, 2]}),
        ("a", "notification", "ops", {}),
    ]
    assert records[0]["id"] < records[1]["id"]


async def test_template_versions_are_never_reused(store: Store) -> None:
    def mine(owner: str = "alice", id: str = "mine") -> Template:
        return Template(id, name="Mine", steps=(StepSpec("a", "sleep", config={"x": 1}),),
                        owner=owner, created_at=T0)  # fmt: skip

    assert [(await store.add_template(mine())).version for _ in range(2)] == [1, 2]
    assert (await store.add_template(mine(id="another"))).version == 1
    assert (await store.add_template(mine(owner="bob"))).version == 1
    assert await store.delete_template("alice", "mine", 2) == 1
    assert await store.delete_template("alice", "mine", 2) == 0
    assert await store.latest_template_version("alice", "mine") == 1
    assert (await store.add_template(mine())).version == 3

    got = await store.get_template("alice", "mine", 0)
    assert got is not None
    assert (got.version, got.name, got.owner, got.steps[0].config) == (3, "Mine", "alice", {"x": 1})
    assert await store.get_template("alice", "mine", 2) is None
    assert await store.get_template("bob", "another", 0) is None
    listed = await store.list_templates("alice")
    assert [(t.id, t.version) for t in listed] == [("another", 1), ("mine", 3)]

    assert await store.delete_template("alice", "mine", 0) == 2
    assert await store.latest_template_version("alice", "mine") is None
    assert await store.get_template("alice", "mine", 1) is None
    assert (await store.add_template(mine())).version == 4
    assert [(t.id, t.version) for t in await store.list_templates("bob")] == [("mine", 1)]


# --- tasks (WorkerService) --------------------------------------------------------------------


def queued_task(run: Run, step_id: str = "a", *, attempt: int = 1, minute: int = 0) -> TaskRecord:
    at = T0 + timedelta(minutes=minute)
    return TaskRecord(
        run_id=run.id, step_id=step_id, attempt=attempt, owner=run.owner, task_type="echo",
        state=TaskState.QUEUED, delivery=0, queued_at=at, start_by=at + timedelta(hours=1),
        run_timeout=timedelta(seconds=90), input={"config": {"x": [1, None]}},
    )  # fmt: skip


async def tasks_started(store: Store, run: Run, *tasks: TaskRecord) -> None:
    """Commit STEP_STARTED of each task's step, its task queued in the same commit (the run
    started first if it has not)."""
    events = []
    if run.status is RunStatus.PENDING:
        events.append(apply(run, Event(EventType.WORKFLOW_STARTED, T0, details={})))
    events += [
        apply(run, Event(EventType.STEP_STARTED, T0, t.step_id, attempt=t.attempt)) for t in tasks
    ]
    run.version += 1
    await store.commit(run, events, tasks=TaskWrites(queued=tasks))


async def test_tasks_are_taken_oldest_first_by_their_owner_only(store: Store) -> None:
    alices = [await created(store, n) for n in (1, 2)]
    bobs = await created(store, 3, owner="bob")
    await tasks_started(store, alices[1], queued_task(alices[1], minute=1))
    await tasks_started(store, alices[0], queued_task(alices[0], minute=2))
    await tasks_started(store, bobs, queued_task(bobs))

    assert await store.activate_tasks("carol", ["echo"], 10, "w", T0, timedelta(seconds=5)) == []
    assert await store.activate_tasks("alice", ["other"], 10, "w", T0, timedelta(seconds=5)) == []
    first = await store.activate_tasks("alice", ["echo"], 1, "w1", T0, timedelta(seconds=5))
    assert [(t.run_id, t.state, t.delivery, t.worker) for t in first] == [
        (alices[1].id, TaskState.ACTIVE, 1, "w1")
    ]
    assert first[0].expires_at == T0 + timedelta(seconds=5) and not first[0].acked
    assert first[0].input == {"config": {"x": [1, None]}}
    rest = await store.activate_tasks("alice", ["echo", "x"], 10, "w2", T0, timedelta(seconds=5))
    assert [t.run_id for t in rest] == [alices[0].id]
    stats = await store.queue_stats(None)
    assert [(s.task_type, s.queued, s.active) for s in stats] == [("echo", 1, 2)]
    assert stats[0].oldest_queued_at == T0
    assert [(s.queued, s.active) for s in await store.queue_stats("alice")] == [(0, 2)]


async def test_a_task_changes_only_for_the_delivery_that_holds_it(store: Store) -> None:
    run = await created(store, 1)
    await tasks_started(store, run, queued_task(run))
    (task,) = await store.activate_tasks("alice", ["echo"], 1, "w", T0, timedelta(seconds=5))

    stale = task.key._replace(delivery=0)
    assert await store.finish_task("alice", stale, TaskState.COMPLETED, {"output": {}}) == (
        False, task,
    )  # fmt: skip
    assert await store.finish_task("bob", task.key, TaskState.COMPLETED, {}) == (False, None)
    assert await store.acknowledge_task("bob", task.key) == (False, None)
    acknowledged, acked = await store.acknowledge_task("alice", task.key)
    assert acknowledged and acked is not None and acked.acked
    assert acked.expires_at == T0 + timedelta(seconds=90)  # activation + the step's timeout
    assert await store.acknowledge_task("alice", task.key) == (False, acked)

    done, finished = await store.finish_task(
        "alice", task.key, TaskState.COMPLETED, {"output": {"n": 1}}
    )
    assert done and finished is not None
    assert (finished.state, finished.result) == (TaskState.COMPLETED, {"output": {"n": 1}})
    assert (await store.finish_task("alice", task.key, TaskState.FAILED, {}))[0] is False
    assert await store.expire_task(task.key, TaskState.ACTIVE, True, "late") is False
    assert await store.tasks_of([run.id]) == [finished]


async def stored_state(store: Store, run: Run) -> tuple[int, StepStatus]:
    stored = await store.get_run(run.owner, run.id)
    assert stored is not None
    return stored.version, stored.steps["a"].status


async def test_a_result_commits_with_its_outcome_only_while_its_task_is_held(
    store: Store,
) -> None:
    run = await created(store, 1)
    await tasks_started(store, run, queued_task(run))
    (task,) = await store.activate_tasks("alice", ["echo"], 1, "w", T0, timedelta(seconds=5))
    before = run.copy()

    def completion(key: TaskKey, owner: str = "alice") -> TaskWrites:
        output = {"output": {"n": 1}}
        return TaskWrites(finished=[TaskResult(key, owner, TaskState.COMPLETED, output)])

    # Another delivery's token, or another owner's: nothing written, the run's version free.
    for stale in (completion(task.key._replace(delivery=2)), completion(task.key, "bob")):
        run = before.copy()
        done = [apply(run, Event(EventType.STEP_COMPLETED, at(run, 2), "a", attempt=1))]
        run.version += 1
        with pytest.raises(StaleTaskResult):
            await store.commit(run, done, tasks=stale)
        assert await stored_state(store, run) == (before.version, StepStatus.RUNNING)
        assert await store.tasks_of([run.id]) == [task]
        assert len(await store.list_events(run.id, 0, 100)) == before.last_sequence

    run = before.copy()
    done = [apply(run, Event(EventType.STEP_COMPLETED, at(run, 2), "a", attempt=1))]
    run.version += 1
    await store.commit(run, done, tasks=completion(task.key))
    assert await stored_state(store, run) == (run.version, StepStatus.COMPLETED)
    (finished,) = await store.tasks_of([run.id])
    assert (finished.state, finished.result) == (TaskState.COMPLETED, {"output": {"n": 1}})
    # Recorded once: the same result again is stale, as a unary report of it would be.
    assert await store.finish_task("alice", task.key, TaskState.COMPLETED, {"output": {"n": 1}}) == (
        False, finished,
    )  # fmt: skip


async def test_claims_take_the_oldest_queued_tasks_in_the_commit_and_nothing_if_it_fails(
    store: Store,
) -> None:
    first, second = await created(store, 1), await created(store, 2)
    bobs = await created(store, 3, owner="bob")
    await tasks_started(store, first, queued_task(first, minute=1))
    await tasks_started(store, bobs, queued_task(bobs))
    (held,) = await store.activate_tasks("alice", ["echo"], 1, "w0", T0, timedelta(seconds=5))
    assert held.run_id == first.id
    await tasks_started(store, first, queued_task(first, "b", minute=3))
    now = T0 + timedelta(minutes=5)
    claims = [
        TaskClaim("alice", ["echo"], 2, "w1", now, now + timedelta(seconds=30)),
        TaskClaim("bob", ["echo"], 5, "w2", now, now + timedelta(seconds=30)),
    ]
    before = second.copy()

    # A stale result in the commit: nothing is written, no task taken.
    stale = TaskResult(held.key._replace(delivery=7), "alice", TaskState.COMPLETED, {})
    events = [apply(second, Event(EventType.WORKFLOW_STARTED, T0, details={})),
              apply(second, Event(EventType.STEP_STARTED, T0, "a", attempt=1))]  # fmt: skip
    second.version += 1
    writes = TaskWrites(queued=[queued_task(second, minute=2)], claims=claims)
    with pytest.raises(StaleTaskResult):
        await store.commit(second, events, tasks=replace(writes, finished=[stale]))
    assert await store.tasks_of([second.id]) == []
    assert {t.state for t in await store.tasks_of([first.id, bobs.id]) if t.step_id == "b"} == {
        TaskState.QUEUED
    }

    # Oldest first, a task the commit itself queues among them; each owner's only.
    second = before.copy()
    events = [apply(second, Event(EventType.WORKFLOW_STARTED, T0, details={})),
              apply(second, Event(EventType.STEP_STARTED, T0, "a", attempt=1))]  # fmt: skip
    second.version += 1
    alices, bobs_taken = await store.commit(second, events, tasks=writes)
    assert [(t.run_id, t.step_id) for t in alices] == [(second.id, "a"), (first.id, "b")]
    assert [t.run_id for t in bobs_taken] == [bobs.id]
    for task, worker in [*((t, "w1") for t in alices), *((t, "w2") for t in bobs_taken)]:
        assert (task.state, task.delivery, task.worker) == (TaskState.ACTIVE, 1, worker)
        assert (task.activated_at, task.expires_at) == (now, now + timedelta(seconds=30))
        assert task.input == {"config": {"x": [1, None]}}
    stored = {
        (t.run_id, t.step_id): t for t in await store.tasks_of([first.id, second.id, bobs.id])
    }
    assert [stored[(t.run_id, t.step_id)] for t in (*alices, *bobs_taken)] == [*alices, *bobs_taken]
    assert stored[(first.id, "a")] == held  # held by w0: not taken again
    assert await store.activate_tasks("alice", ["echo"], 5, "w3", now, timedelta(seconds=5)) == []


async def test_tasks_handed_back_are_queued_again_until_their_last_delivery(store: Store) -> None:
    run = await created(store, 1)
    await tasks_started(store, run, queued_task(run))
    for delivery in (1, 2):
        (task,) = await store.activate_tasks("alice", ["echo"], 1, "w", T0, timedelta(seconds=5))
        assert task.delivery == delivery
        (back,) = await store.release_tasks([task.key], max_deliveries=2)
        if delivery == 1:
            assert (back.state, back.worker, back.expires_at) == (TaskState.QUEUED, None, None)
    assert back.state is TaskState.FAILED
    assert back.result == {
        "error": "the task was handed to 2 workers and none finished it", "retryable": True,
    }  # fmt: skip
    assert await store.release_tasks([task.key], max_deliveries=2) == []


async def test_a_new_attempt_replaces_the_task_and_a_stop_cancels_it(store: Store) -> None:
    run = await created(store, 1)
    await tasks_started(store, run, queued_task(run))
    assert await store.expire_task(
        queued_task(run).key, TaskState.QUEUED, False, "no worker"
    )  # fmt: skip
    (expired,) = await store.tasks_of([run.id])
    assert (expired.state, expired.result) == (
        TaskState.TIMED_OUT, {"error": "no worker", "retryable": True},
    )  # fmt: skip

    await tasks_started(store, run, queued_task(run, attempt=2))
    (second,) = await store.tasks_of([run.id])
    assert (second.attempt, second.state, second.result) == (2, TaskState.QUEUED, None)
    events = [apply(run, Event(EventType.STEP_CANCELLED, T0, "a", attempt=2))]
    run.version += 1
    await store.commit(run, events, tasks=TaskWrites(cancelled=["a"]))
    got = await store.get_task(run.id, "a")
    assert got is not None and got.state is TaskState.CANCELLED
    assert await store.get_task(run.id, "b") is None


async def test_a_rerun_keeps_its_origin_and_the_outputs_it_took_over(store: Store) -> None:
    original = await created(store, 1)
    await completed(store, original)
    done = await store.get_run("alice", original.id)
    assert done is not None
    rerun = Run.new(id="00000000-0000-4000-8000-000000000002", owner="alice", template=ONE,
                    params=done.params, now=at(done, 10))  # fmt: skip
    details = {"templateId": "one", "rerunOf": original.id, "fromStep": "b"}
    events = [
        apply(rerun, Event(EventType.WORKFLOW_CREATED, at(done, 10), details=details)),
        apply(rerun, Event(EventType.STEP_COMPLETED, at(done, 10), "a", details={
            "output": done.steps["a"].output, "reusedFrom": original.id})),
    ]  # fmt: skip
    await store.create_run(rerun, events)

    back = await store.get_run("alice", rerun.id)
    assert back is not None
    assert (back.rerun_of, back.rerun_from_step) == (original.id, "b")
    assert back.steps["a"].reused and back.steps["a"].output == done.steps["a"].output
    assert (back.steps["b"].status, back.gates["g"].status) == (
        StepStatus.PENDING, GateStatus.PENDING,
    )  # fmt: skip
    [listed] = [r for r in (await store.list_runs("alice", RunFilter(), limit=5, after=None,
                                                  outputs=False)).runs if r.id == rerun.id]  # fmt: skip
    assert listed.rerun_of == original.id
    assert (await store.get_run("alice", original.id)).rerun_of == ""  # type: ignore[union-attr]


async def test_a_runs_trace_context_is_kept_from_its_creation_on(store: Store) -> None:
    run, events = new_run(1)
    run.trace_context = {
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03",
        "link": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    }
    await store.create_run(run, events)
    untraced = await created(store, 2)
    await started(store, run)

    back = await store.get_run("alice", run.id)
    assert back is not None and back.trace_context == run.trace_context
    [resumed] = [r for r in await store.unfinished_runs() if r.id == run.id]
    assert resumed.trace_context == run.trace_context  # what a restarted server takes up
    assert (await store.get_run("alice", untraced.id)).trace_context == {}  # type: ignore[union-attr]


# --- analytics --------------------------------------------------------------------------------

DAY1 = datetime(2026, 3, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


async def ended(
    store: Store, n: int, end: datetime, outcome: EventType, *, seconds: float,
    owner: str = "alice", template: Template = ONE,
) -> Run:  # fmt: skip
    """Run n, started `seconds` before `end`, ended then with `outcome` (its step a completed
    in half the time and its gate passed when it completed; otherwise b and the gate skipped)."""
    run = await created(store, n, owner=owner, template=template)
    start = end - timedelta(seconds=seconds)
    events = [
        Event(EventType.WORKFLOW_STARTED, start),
        Event(EventType.STEP_STARTED, start, "a", attempt=1),
        Event(EventType.STEP_COMPLETED, end - timedelta(seconds=seconds / 2), "a", attempt=1),
    ]
    if outcome is EventType.WORKFLOW_COMPLETED:
        events += [
            Event(EventType.GATE_PASSED, end, "a", "g"),
            Event(EventType.STEP_STARTED, end, "b", attempt=1),
            Event(EventType.STEP_COMPLETED, end, "b", attempt=1),
        ]
    else:
        events.append(Event(EventType.STEP_SKIPPED, end, "b"))
    await advance(store, run, *events, Event(outcome, end))
    return run


async def test_analytics_count_each_ended_run_in_its_hour_whatever_the_window(
    store: Store,
) -> None:
    done, failed, cancelled = (
        EventType.WORKFLOW_COMPLETED, EventType.WORKFLOW_FAILED, EventType.WORKFLOW_CANCELLED,
    )  # fmt: skip
    at_13 = DAY1 + 13 * HOUR + timedelta(minutes=30)
    await ended(store, 1, at_13, done, seconds=10)
    await ended(store, 2, at_13, done, seconds=20)
    await ended(store, 3, at_13, failed, seconds=40)
    await ended(store, 4, at_13, cancelled, seconds=80)
    await ended(store, 5, DAY1 + 29 * HOUR, done, seconds=160)  # day 2, 05:00
    await ended(store, 6, DAY1 + 58 * HOUR, done, seconds=1, template=OTHER)  # day 3, 10:00
    await ended(store, 7, at_13, done, seconds=1, owner="bob")
    unfinished = await created(store, 8)
    await started(store, unfinished)

    folded = await store.fold_analytics()
    assert folded == (0 if isinstance(store, MemoryStore) else 7)
    assert await store.fold_analytics() == 0

    async def figures(
        start: datetime, end: datetime, owner: str = "alice", template_id: str = "",
        template_version: int = 0, step_type: str = "",
    ) -> Analytics:  # fmt: skip
        query = AnalyticsQuery(start, end, template_id, template_version, step_type)
        return await store.analytics(owner, query)

    def runs(found: Analytics) -> dict[str, int]:
        return {t.name: t.total for t in found.templates}

    hour = await figures(DAY1 + 13 * HOUR, DAY1 + 14 * HOUR)
    [one] = hour.templates
    assert (one.name, dict(one.outcomes)) == ("one", {"completed": 2, "failed": 1, "cancelled": 1})
    assert one.success_rate == 0.5
    # Nearest rank of 10, 20, 40, 80 s: the 2nd and the 4th, each within the bucket error.
    durations = one.durations
    assert durations.count == 4 and durations.mean == timedelta(seconds=37.5)
    assert durations.p50 is not None and durations.p99 is not None
    assert abs(durations.p50.total_seconds() / 20 - 1) <= PERCENTILE_ERROR
    assert abs(durations.p99.total_seconds() / 80 - 1) <= PERCENTILE_ERROR
    [step] = [s for s in hour.step_types if s.name == "sleep"]
    assert dict(step.outcomes) == {"completed": 6, "skipped": 2}
    assert step.attempts == 6 and step.durations.count == 6
    [gate] = hour.gate_types
    assert dict(gate.outcomes) == {"passed": 2, "skipped": 2}
    assert gate.gate_type is GateType.THRESHOLD and gate.pass_rate == 1.0

    # Days, 6 hours and hours together, in any combination: each run once, in its hour.
    assert runs(await figures(DAY1, DAY1 + 60 * HOUR)) == {"one": 5, "other": 1}
    assert runs(await figures(DAY1 + 5 * HOUR, DAY1 + 59 * HOUR)) == {"one": 5, "other": 1}
    assert runs(await figures(DAY1 + 14 * HOUR, DAY1 + 58 * HOUR)) == {"one": 1}
    assert runs(await figures(DAY1 + 12 * HOUR, DAY1 + 18 * HOUR)) == {"one": 4}
    assert runs(await figures(DAY1 + 13 * HOUR, DAY1 + 30 * HOUR)) == {"one": 5}
    assert runs(await figures(DAY1 + 30 * HOUR, DAY1 + 72 * HOUR)) == {"other": 1}
    assert runs(await figures(DAY1, DAY1 + 72 * HOUR, template_id="other")) == {"other": 1}
    assert runs(await figures(DAY1, DAY1 + 72 * HOUR, template_id="one", template_version=7)) == {}
    assert runs(await figures(DAY1, DAY1 + 72 * HOUR, owner="bob")) == {"one": 1}
    assert runs(await figures(DAY1, DAY1 + 72 * HOUR, owner="carol")) == {}
    wide = await figures(DAY1, DAY1 + 72 * HOUR, step_type="nothing-like-it")
    assert wide.step_types == [] and runs(wide) == {"one": 5, "other": 1}

    # Counted for good: deleting a run later does not take it out of the figures.
    assert await store.delete_run("alice", "00000000-0000-4000-8000-000000000001")
    assert runs(await figures(DAY1, DAY1 + 72 * HOUR)) == {"one": 5, "other": 1}
