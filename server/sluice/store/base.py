"""The Store on SQLAlchemy 2 Core: the SQL both databases share.

Each operation is a plain function of a synchronous `Connection`, run by the subclass's
executor (see `executors`). A transition is a compare-and-set UPDATE of the run, executemany
UPDATEs of the steps and gates it touched and multi-row INSERTs of its events and outbox
records (`transition` builds its rows). How those batched writes reach the database is what a
subclass decides: SQLite (`sqlite.py`) runs them on its own cursor (`_execute`); PostgreSQL
(`postgres.py`) writes a run's creation and its transitions with its own group commit
(`_commit`, `create_run`) and the rest through SQLAlchemy. `factory.open_store` picks the
subclass by URL.
"""

from __future__ import annotations

import asyncio
import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, ClassVar, cast

import sqlalchemy as sa
import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from sluice.engine import analytics as counting
from sluice.engine.analytics import Analytics, AnalyticsQuery, Count, Sums, Tally
from sluice.engine.errors import Conflict, LeaseLost, StaleTaskResult
from sluice.engine.model import (
    Event,
    EventType,
    GateResult,
    Publication,
    Run,
    RunStatus,
    StepRun,
    Template,
)
from sluice.engine.ports import (
    Fence,
    QueueStats,
    RunFilter,
    RunKey,
    RunPage,
    TaskClaim,
    TaskKey,
    TaskRecord,
    TaskResult,
    TaskState,
    TaskWrites,
    Timer,
)
from sluice.store import codec, rows
from sluice.store.executors import Executor
from sluice.store.schema import (
    analytics_queue,
    analytics_sums,
    events,
    gate_results,
    outbox,
    run_commands,
    runs,
    step_runs,
    tasks,
    template_snapshots,
    templates,
    timers,
)

_TERMINAL_EVENTS = frozenset(
    {EventType.WORKFLOW_COMPLETED, EventType.WORKFLOW_FAILED, EventType.WORKFLOW_CANCELLED}
)
_ACTIVE = [RunStatus.PENDING.value, RunStatus.RUNNING.value, RunStatus.PAUSED.value]

log = structlog.get_logger(__name__)

# A batch of writes: each statement with the rows it runs for (executemany; none: skipped).
Writes = Sequence[tuple[sa.Insert | sa.Update | sa.Delete, list[dict[str, Any]]]]


class SqlStore(ABC):
    # INSERT INTO template_snapshots ... ON CONFLICT DO NOTHING, in the database's dialect.
    INSERT_SNAPSHOT: ClassVar[sa.Insert]
    # INSERT INTO analytics_sums ... ON CONFLICT (its key) DO UPDATE adding the values.
    ADD_SUMS: ClassVar[sa.Insert]
    # INSERT INTO tasks ... ON CONFLICT (run_id, step_id) DO UPDATE: a new attempt's task
    # replaces the step's last one.
    UPSERT_TASKS: ClassVar[sa.Insert]
    # Workers' results ride in the commits of the outcomes they bring (TaskStore).
    results_in_commits = True

    def __init__(self, executor: Executor) -> None:
        self._db = executor
        self._snapshots = _SnapshotCache()
        # One fold at a time here (the background one, a GetAnalytics call's); folds on other
        # servers are told apart by the queue rows each deletes.
        self._folding = asyncio.Lock()

    @classmethod
    async def open(cls, url: str, *, migrate: bool = False) -> SqlStore:
        """`factory.open_store`, under the name the store had when it was one class."""
        from sluice.store.factory import open_store  # the factory imports the subclasses

        return await open_store(url, migrate=migrate)

    @abstractmethod
    def _execute(self, conn: sa.Connection, writes: Writes) -> int:
        """Run each statement for its rows, in `conn`'s transaction; the number of rows the
        first statement changed. Integrity errors come out as SQLAlchemy's IntegrityError."""

    def _returning(
        self, conn: sa.Connection, statement: sa.Update, values: dict[str, Any]
    ) -> list[Mapping[str, Any]]:
        """Run an UPDATE ... RETURNING for one set of values; the rows it returned, as
        SQLAlchemy reads them (SQLite overrides it with its own cursor)."""
        return [dict(row) for row in conn.execute(statement, values).mappings()]

    @abstractmethod
    def probe_commits(self, probe: Callable[[int, float], None]) -> None:
        """Tell `probe` the size of each batch of writes committed together and how long its
        transaction took, in seconds (the server's metrics). Each database's store says
        where its batches are made."""

    @property
    def executor(self) -> Executor:
        return self._db

    async def close(self) -> None:
        await self._db.close()

    # --- runs ---------------------------------------------------------------------------------

    async def create_run(self, run: Run, new_events: Sequence[Event]) -> Run:
        def insert(conn: sa.Connection) -> Run:
            if run.request_id:
                existing = _run_id_for_request(conn, run.owner, run.request_id)
                if existing is not None:
                    found = self._load_runs(
                        conn, sa.select(*RUN_COLUMNS).where(runs.c.id == existing)
                    )
                    return found[0]
            self._execute(
                conn,
                [
                    # The run's template: stored once for all the runs with that body.
                    (self.INSERT_SNAPSHOT, [rows.snapshot(run.template).row()]),
                    *creation_writes(run, new_events),
                ],
            )
            return run

        try:
            return await self._db.write(insert)
        except IntegrityError:
            # Two calls with one request_id raced past the check (PostgreSQL): the winner's run.
            if not run.request_id:
                raise
            found = await self.get_run_by_request(run.owner, run.request_id)
            if found is None:
                raise
            return found

    async def get_run_by_request(self, owner: str, request_id: str) -> Run | None:
        def load(conn: sa.Connection) -> Run | None:
            existing = _run_id_for_request(conn, owner, request_id)
            if existing is None:
                return None
            return self._load_runs(conn, sa.select(*RUN_COLUMNS).where(runs.c.id == existing))[0]

        return await self._db.read(load)

    async def commit(
        self,
        run: Run,
        new_events: Sequence[Event],
        publications: Sequence[tuple[str, Publication]] = (),
        *,
        timers: Mapping[str, datetime | None] | None = None,
        fence: Fence | None = None,
        command: tuple[int, Mapping[str, Any]] | None = None,
        tasks: TaskWrites | None = None,
    ) -> list[list[TaskRecord]]:
        t = transition(run, new_events, publications, timers, fence, command, tasks)
        try:
            return await self._commit(t)
        except IntegrityError as exc:  # a duplicate event sequence: someone else won the race
            raise Conflict(f"workflow {run.id} was changed by another writer") from exc

    async def _commit(self, t: Transition) -> list[list[TaskRecord]]:
        """Write `t` in one transaction: LeaseLost or Conflict (and nothing written) when the
        run's compare-and-set UPDATE matches no row. Returns what each of its claims took."""

        def write(conn: sa.Connection) -> list[list[TaskRecord]]:
            if t.timers:
                self._execute(conn, _timer_work(t.run_id, t.timers))
            if t.command is not None:
                conn.execute(_FINISH_COMMAND, t.command)
            if t.fence is None:
                changed = self._execute(conn, [(UPDATE_RUN, [t.run])])
            else:  # fenced by the run's lease (several servers: PostgreSQL)
                changed = conn.execute(_UPDATE_FENCED_RUN, t.run).rowcount
            if changed != 1:
                _raise_lost_write(conn, t.run_id, t.fence)
            self._execute(
                conn,
                [
                    (UPDATE_STEP, t.steps),
                    (UPDATE_GATE, t.gates),
                    (INSERT_EVENTS, t.events),
                    (INSERT_OUTBOX, t.outbox),
                    (INSERT_QUEUED, t.ended),
                ],
            )
            for result in t.finished_tasks:  # a stale one undoes the whole transaction
                if self._execute(conn, [(FINISH_HELD_TASK, [result])]) != 1:
                    raise StaleTaskResult(
                        f"the task of step {result['k_step_id']!r} of workflow {t.run_id} is no "
                        "longer held under the token reported"
                    )
            if t.tasks or t.cancelled_tasks:  # a new attempt's task replaces the step's last
                self._execute(
                    conn,
                    [
                        (self.UPSERT_TASKS, t.tasks),
                        (
                            CANCEL_TASKS,
                            [rows.keyed(r, "run_id", "step_id") for r in t.cancelled_tasks],
                        ),
                    ],
                )
            return [self._activate(conn, claim) for claim in t.claims]

        return await self._db.write(write)

    # --- tasks (WorkerService) ----------------------------------------------------------------

    async def tasks_of(self, run_ids: Iterable[str]) -> list[TaskRecord]:
        query = sa.select(tasks).where(tasks.c.run_id.in_(list(run_ids)))
        return await self._db.read(
            lambda conn: [rows.task_from_row(r) for r in conn.execute(query).mappings()]
        )

    async def get_task(self, run_id: str, step_id: str) -> TaskRecord | None:
        return await self._db.read(lambda conn: _task_now(conn, run_id, step_id))

    async def activate_tasks(
        self,
        owner: str,
        task_types: Sequence[str],
        limit: int,
        worker: str,
        now: datetime,
        ack_window: timedelta,
    ) -> list[TaskRecord]:
        claim = TaskClaim(owner, task_types, limit, worker, now, now + ack_window)
        return await self._db.write(lambda conn: self._activate(conn, claim))

    def _activate(self, conn: sa.Connection, claim: TaskClaim) -> list[TaskRecord]:
        values = {
            "k_owner": claim.owner, "k_limit": claim.limit, "worker": claim.worker,
            "activated_at": claim.now, "expires_at": claim.expires_at,
        }  # fmt: skip
        values.update({f"k_type{i}": task_type for i, task_type in enumerate(claim.task_types)})
        found = self._returning(conn, activate_tasks(len(claim.task_types)), values)
        return sorted((rows.task_from_row(r) for r in found), key=lambda t: t.queued_at)

    async def acknowledge_task(self, owner: str, key: TaskKey) -> tuple[bool, TaskRecord | None]:
        def acknowledge(conn: sa.Connection) -> tuple[bool, TaskRecord | None]:
            task = _task_now(conn, key.run_id, key.step_id)
            if task is None or task.owner != owner:
                return False, None
            if task.key != key or task.state is not TaskState.ACTIVE or task.acked:
                return False, task
            assert task.activated_at is not None
            expires_at = task.activated_at + task.run_timeout
            if not conn.execute(_ACK_TASK, {**_task_key(key), "expires_at": expires_at}).rowcount:
                return False, _task_now(conn, key.run_id, key.step_id)  # changed since read
            return True, replace(task, acked=True, expires_at=expires_at)

        return await self._db.write(acknowledge)

    async def finish_task(
        self, owner: str, key: TaskKey, state: TaskState, result: Mapping[str, Any]
    ) -> tuple[bool, TaskRecord | None]:
        values = {**_task_key(key), "k_owner": owner, "state": state.value, "result": result}

        def finish(conn: sa.Connection) -> tuple[bool, TaskRecord | None]:
            finished = self._returning(conn, FINISH_TASK, values)
            if finished:
                return True, rows.task_from_row(finished[0])
            task = _task_now(conn, key.run_id, key.step_id)  # why not: the caller says
            if task is None or task.owner != owner:
                return False, None
            return False, task

        return await self._db.write(finish)

    async def release_tasks(self, keys: Sequence[TaskKey], max_deliveries: int) -> list[TaskRecord]:
        failed = {
            "error": f"the task was handed to {max_deliveries} workers and none finished it",
            "retryable": True,
        }

        def release(conn: sa.Connection) -> list[TaskRecord]:
            changed: list[TaskRecord] = []
            for key in keys:
                values = {**_task_key(key), "k_max": max_deliveries, "result": failed}
                requeued = conn.execute(_REQUEUE_TASK, values).rowcount
                if not requeued and not conn.execute(_GIVE_UP_TASK, values).rowcount:
                    continue  # finished or taken meanwhile
                task = _task_now(conn, key.run_id, key.step_id)
                if task is not None:
                    changed.append(task)
            return changed

        return await self._db.write(release)

    async def expire_task(self, key: TaskKey, state: TaskState, acked: bool, reason: str) -> bool:
        values = {
            **_task_key(key), "k_state": state.value, "k_acked": acked,
            "result": {"error": reason, "retryable": True},
        }  # fmt: skip
        return bool(await self._db.write(lambda conn: conn.execute(_EXPIRE_TASK, values).rowcount))

    async def queue_stats(self, owner: str | None) -> list[QueueStats]:
        queued, active = queue_stats_queries(owner)

        def load(conn: sa.Connection) -> list[QueueStats]:
            waiting = {t: (int(n), _time(oldest)) for t, n, oldest in conn.execute(queued)}
            held = {t: int(n) for t, n in conn.execute(active)}
            stats = []
            for task_type in sorted(waiting.keys() | held.keys()):
                count, oldest = waiting.get(task_type, (0, None))
                stats.append(QueueStats(task_type, count, held.get(task_type, 0), oldest))
            return stats

        return await self._db.read(load)

    async def timers_of(self, run_ids: Iterable[str]) -> list[Timer]:
        query = sa.select(timers.c.run_id, timers.c.key, timers.c.fire_at).where(
            timers.c.run_id.in_(list(run_ids))
        )
        return await self._db.read(
            lambda conn: [Timer(r, k, codec.utc(at) or at) for r, k, at in conn.execute(query)]
        )

    async def get_run_any(self, run_id: str) -> Run | None:
        query = sa.select(*RUN_COLUMNS).where(runs.c.id == run_id)

        def load(conn: sa.Connection) -> Run | None:
            found = self._load_runs(conn, query)
            return found[0] if found else None

        return await self._db.read(load)

    async def get_run(self, owner: str, run_id: str) -> Run | None:
        query = sa.select(*RUN_COLUMNS).where(runs.c.id == run_id, runs.c.owner == owner)

        def load(conn: sa.Connection) -> Run | None:
            found = self._load_runs(conn, query)
            return found[0] if found else None

        return await self._db.read(load)

    async def list_runs(
        self,
        owner: str,
        where: RunFilter,
        *,
        limit: int,
        after: tuple[datetime, str] | None,
        outputs: bool = True,
    ) -> RunPage:
        # One query per status (or one without): each is a range of an index that ends in
        # (created_at, id), read newest first and cut at the page, so a page costs its own
        # rows whatever the table holds. `status IN (...)` instead makes the database either
        # sort every matching run or walk the owner's runs past every non-matching one.
        queries = [page_query(owner, where, status, after, limit + 1) for status in
                   (where.statuses or (None,))]  # fmt: skip

        def load(conn: sa.Connection) -> list[Run]:
            found = [row for query in queries for row in conn.execute(query).mappings()]
            if len(queries) > 1:
                found.sort(key=lambda r: (r["created_at"], r["id"]), reverse=True)
            return self._assemble_runs(conn, found[: limit + 1], outputs=outputs)

        found = await self._db.read(load)
        more = len(found) > limit
        found = found[:limit]
        cursor = (found[-1].created_at, found[-1].id) if more and found else None
        return RunPage(found, cursor)

    async def delete_run(self, owner: str, run_id: str) -> RunStatus | None:
        def delete(conn: sa.Connection) -> RunStatus | None:
            found = conn.execute(
                sa.select(runs.c.status).where(runs.c.id == run_id, runs.c.owner == owner)
            ).scalar_one_or_none()
            if found is None:
                return None
            status = RunStatus(found)
            if status.terminal:
                # Steps, gates, events and outbox records go with it (ON DELETE CASCADE).
                conn.execute(runs.delete().where(runs.c.id == run_id))
            return status

        return await self._db.write(delete)

    async def pending_runs_created_before(self, cutoff: datetime, limit: int) -> list[RunKey]:
        query = (
            sa.select(runs.c.owner, runs.c.id)
            .where(runs.c.status == RunStatus.PENDING.value, runs.c.created_at < cutoff)
            .order_by(runs.c.created_at)
            .limit(limit)
        )
        return await self._db.read(
            lambda conn: [RunKey(owner, run_id) for owner, run_id in conn.execute(query)]
        )

    async def delete_runs_ended_before(self, cutoff: datetime, limit: int) -> int:
        oldest = (
            sa.select(runs.c.id)
            .where(runs.c.ended_at < cutoff)
            .order_by(runs.c.ended_at)
            .limit(limit)
            .scalar_subquery()
        )
        statement = runs.delete().where(runs.c.id.in_(oldest))
        return await self._db.write(lambda conn: int(conn.execute(statement).rowcount))

    async def count_active_runs(self, owner: str) -> int:
        params = {"owner": owner}
        return await self._db.read(
            lambda conn: int(conn.execute(_COUNT_ACTIVE, params).scalar_one())
        )

    # --- analytics ----------------------------------------------------------------------------

    async def fold_analytics(self, limit: int = 1000) -> int:
        folded = 0
        async with self._folding:
            while True:
                # Read and added up on a reader (off the event loop's thread on SQLite); then
                # one short write: the queue rows this fold deletes are the runs it adds. A
                # row another server's fold deleted first is not added here.
                found, sums = await self._db.read(lambda conn: self._queued(conn, limit))
                if not found:
                    return folded
                folded += await self._db.write(
                    functools.partial(self._add_sums, found=found, sums=sums)
                )
                if len(found) < limit:
                    return folded

    def _queued(
        self, conn: sa.Connection, limit: int
    ) -> tuple[list[_Queued], dict[tuple[Any, ...], Tally]]:
        """The oldest `limit` queue rows, each with what its run adds (as its terminal commit
        wrote it, or for a run queued by migration 0011 counted from the run's stored rows),
        and their sums: added up here, off the loop's thread on SQLite; the write uses them
        when its delete took every row (always, but with several servers folding at once)."""
        queued = conn.execute(_QUEUED, {"limit": limit}).all()
        unread = [r.run_id for r in queued if r.counts is None]
        from_rows = self._counts_from_rows(conn, unread) if unread else {}
        found = []
        for r in queued:
            counts: Sequence[Count] = ()
            try:
                if r.counts is None:
                    counts = from_rows.get(r.run_id, ())  # none: deleted before it was read
                else:
                    counts = counting.decode(r.counts)
            except (TypeError, ValueError) as exc:  # a row this code cannot read: not counted,
                # rather than left at the queue's head, stopping every fold after it
                log.warning("analytics: run not counted", run_id=r.run_id, error=repr(exc))
                counts = ()
            ended = codec.utc(r.ended_at) or r.ended_at
            found.append(_Queued(r.id, r.owner, r.template_id, r.template_version, ended, counts))
        return found, _sum_up(found)

    def _counts_from_rows(self, conn: sa.Connection, run_ids: list[str]) -> dict[str, list[Count]]:
        """What each of these ended runs adds, from its stored rows (durations computed by the
        database: no time is parsed here, a run is about seven rows)."""
        found = conn.execute(_RUNS_TO_COUNT, {"ids": run_ids}).all()
        steps: dict[str, list[counting.StepEnd]] = {r.id: [] for r in found}
        gates: dict[str, list[tuple[str, str]]] = {r.id: [] for r in found}
        for run_id, step_id, status, attempt, seconds in conn.execute(
            _STEPS_TO_COUNT, {"ids": run_ids}
        ):
            steps[run_id].append((step_id, status, attempt, seconds))
        for run_id, gate_id, status in conn.execute(_GATES_TO_COUNT, {"ids": run_ids}):
            gates[run_id].append((gate_id, status))
        templates = self._snapshots.resolve(conn, {r.template_key for r in found})
        counted = {}
        for r in found:
            try:
                counted[r.id] = counting.decode(
                    counting.flat_counts(
                        templates[r.template_key], r.status, r.seconds, steps[r.id], gates[r.id]
                    )
                )
            except (KeyError, ValueError) as exc:  # not counted, rather than stopping every fold
                log.warning("analytics: run not counted", run_id=r.id, error=repr(exc))
        return counted

    def _add_sums(
        self, conn: sa.Connection, *, found: Sequence[_Queued], sums: dict[tuple[Any, ...], Tally]
    ) -> int:
        deleted = set(
            conn.execute(
                analytics_queue.delete()
                .where(analytics_queue.c.id.in_([q.id for q in found]))
                .returning(analytics_queue.c.id)
            ).scalars()
        )
        if len(deleted) < len(found):  # another server's fold took some: only ours count
            sums = _sum_up([q for q in found if q.id in deleted])
        if sums:
            # In key order: two servers folding at once lock the rows they share in one order.
            conn.execute(
                self.ADD_SUMS,
                [dict(zip(_SUM_COLUMNS, (*k, *t.values()), strict=True))
                 for k, t in sorted(sums.items(), key=lambda item: item[0])],
            )  # fmt: skip
        return len(deleted)

    async def analytics(self, owner: str, query: AnalyticsQuery) -> Analytics:
        statements = [
            sums_query(owner, span, query) for span in counting.spans(query.start, query.end)
        ]

        def load(conn: sa.Connection) -> list[Sums]:
            return [
                Sums(row[0], row[1], row[2], Tally.of(row[3:]))
                for statement in statements
                for row in conn.execute(statement)
            ]

        return counting.summarize(query, await self._db.read(load))

    async def unfinished_runs(self) -> list[Run]:
        query = (
            sa.select(*RUN_COLUMNS)
            .where(runs.c.status.in_([RunStatus.RUNNING.value, RunStatus.PAUSED.value]))
            .order_by(runs.c.created_at)
        )
        return await self._db.read(lambda conn: self._load_runs(conn, query))

    async def list_events(
        self,
        run_id: str,
        after_sequence: int,
        limit: int,
        *,
        types: Sequence[EventType] = (),
        step_ids: Sequence[str] = (),
    ) -> list[Event]:
        query = event_page_query(run_id, after_sequence, limit, types, step_ids)
        return await self._db.read(
            lambda conn: [rows.event_from_row(r) for r in conn.execute(query).mappings()]
        )

    async def list_outbox(self, run_id: str) -> list[dict[str, Any]]:
        query = sa.select(outbox).where(outbox.c.run_id == run_id).order_by(outbox.c.id)
        return await self._db.read(lambda conn: [dict(r) for r in conn.execute(query).mappings()])

    # --- templates ----------------------------------------------------------------------------

    async def add_template(self, template: Template) -> Template:
        def insert(conn: sa.Connection) -> Template:
            latest = conn.execute(
                sa.select(sa.func.max(templates.c.version)).where(
                    templates.c.owner == template.owner, templates.c.id == template.id
                )
            ).scalar_one_or_none()
            stored = replace(template, version=(latest or 0) + 1)
            conn.execute(
                templates.insert().values(
                    owner=stored.owner,
                    id=stored.id,
                    version=stored.version,
                    body=codec.template_to_json(stored),
                    created_at=stored.created_at,
                )
            )
            return stored

        return await self._db.write(insert)

    async def delete_template(self, owner: str, template_id: str, version: int) -> int:
        # Marked, not removed: add_template numbers after the highest version ever registered,
        # so a version number never names two different templates.
        statement = (
            templates.update()
            .where(
                templates.c.owner == owner,
                templates.c.id == template_id,
                templates.c.deleted_at.is_(None),
            )
            .values(deleted_at=sa.func.now())
        )
        if version:
            statement = statement.where(templates.c.version == version)
        return await self._db.write(lambda conn: int(conn.execute(statement).rowcount))

    async def latest_template_version(self, owner: str, template_id: str) -> int | None:
        params = {"owner": owner, "id": template_id}
        return await self._db.read(
            lambda conn: conn.execute(_LATEST_VERSION, params).scalar_one_or_none()
        )

    async def get_template(self, owner: str, template_id: str, version: int) -> Template | None:
        query = sa.select(templates.c.body).where(
            templates.c.owner == owner,
            templates.c.id == template_id,
            templates.c.deleted_at.is_(None),
        )
        if version:
            query = query.where(templates.c.version == version)
        query = query.order_by(templates.c.version.desc()).limit(1)
        body = await self._db.read(lambda conn: conn.execute(query).scalar_one_or_none())
        return codec.template_from_json(body) if body is not None else None

    async def list_templates(self, owner: str) -> list[Template]:
        latest = (
            sa.select(templates.c.id, sa.func.max(templates.c.version).label("version"))
            .where(templates.c.owner == owner, templates.c.deleted_at.is_(None))
            .group_by(templates.c.id)
            .subquery()
        )
        query = (
            sa.select(templates.c.body)
            .join(
                latest,
                sa.and_(templates.c.id == latest.c.id, templates.c.version == latest.c.version),
            )
            .where(templates.c.owner == owner)
            .order_by(templates.c.id)
        )
        bodies = await self._db.read(lambda conn: list(conn.execute(query).scalars()))
        return [codec.template_from_json(b) for b in bodies]

    def _load_runs(self, conn: sa.Connection, query: sa.Select[Any]) -> list[Run]:
        return self._assemble_runs(conn, conn.execute(query).mappings().all())

    def _assemble_runs(
        self, conn: sa.Connection, found: Sequence[sa.RowMapping], *, outputs: bool = True
    ) -> list[Run]:
        """Runs from their rows, with their templates, steps (and outputs, unless left out)
        and gates."""
        if not found:
            return []
        ids = [r["id"] for r in found]
        templates_by_key = self._snapshots.resolve(conn, {r["template_key"] for r in found})
        step_columns = list(step_runs.c) if outputs else _STEP_COLUMNS_WITHOUT_OUTPUT
        step_rows = conn.execute(
            sa.select(*step_columns)
            .where(step_runs.c.run_id.in_(ids))
            .order_by(step_runs.c.position)
        ).mappings()
        gate_rows = conn.execute(
            sa.select(gate_results)
            .where(gate_results.c.run_id.in_(ids))
            .order_by(gate_results.c.position)
        ).mappings()
        steps_by_run: dict[str, dict[str, StepRun]] = {i: {} for i in ids}
        for s in step_rows:
            steps_by_run[s["run_id"]][s["step_id"]] = rows.step_from_row(s, output=outputs)
        gates_by_run: dict[str, dict[str, GateResult]] = {i: {} for i in ids}
        for g in gate_rows:
            gates_by_run[g["run_id"]][g["gate_id"]] = rows.gate_from_row(g)
        return [
            rows.run_from_row(
                r, templates_by_key[r["template_key"]], steps_by_run[r["id"]], gates_by_run[r["id"]]
            )
            for r in found
        ]


@dataclass(frozen=True, slots=True)
class Transition:
    """The rows one commit writes, whatever the database: the run's compare-and-set UPDATE
    (`run`: its new columns, the keys bound as k_id, k_version and, when fenced, k_lease_owner
    and k_lease_epoch), the steps and gates it changed, its events and outbox records, its
    timers (set or, with None, cleared) and the outcome of the stored command it carried out
    (`command`: k_id, outcome, done_at)."""

    run_id: str
    run: dict[str, Any]
    steps: list[dict[str, Any]]
    gates: list[dict[str, Any]]
    events: list[dict[str, Any]]
    outbox: list[dict[str, Any]]
    timers: Mapping[str, datetime | None]
    command: dict[str, Any] | None
    fence: Fence | None
    tasks: list[dict[str, Any]] = field(default_factory=list)  # tasks queued (whole rows)
    cancelled_tasks: list[dict[str, Any]] = field(default_factory=list)  # run_id, step_id
    # Workers' results recorded with this commit: FINISH_HELD_TASK's keys and values.
    finished_tasks: list[dict[str, Any]] = field(default_factory=list)
    # Queued tasks workers' streams take in this commit, after its other writes.
    claims: Sequence[TaskClaim] = ()
    # The run's analytics_queue row when this commit ends it (`queued_row`).
    ended: list[dict[str, Any]] = field(default_factory=list)


def transition(
    run: Run,
    new_events: Sequence[Event],
    publications: Sequence[tuple[str, Publication]] = (),
    timers: Mapping[str, datetime | None] | None = None,
    fence: Fence | None = None,
    command: tuple[int, Mapping[str, Any]] | None = None,
    task_writes: TaskWrites | None = None,
) -> Transition:
    """What `SqlStore.commit` writes for `run` (its state after `new_events`)."""
    step_ids = sorted({e.step_id for e in new_events if e.step_id})
    ends = any(e.type in _TERMINAL_EVENTS for e in new_events)
    gate_ids = sorted(set(run.gates) if ends else {e.gate_id for e in new_events if e.gate_id})
    run_row = {**rows.run_row(run), "k_id": run.id, "k_version": run.version - 1}
    if fence is not None:
        run_row |= {"k_lease_owner": fence.owner, "k_lease_epoch": fence.epoch}
    return Transition(
        run_id=run.id,
        run=run_row,
        steps=[rows.keyed(rows.step_row(run, run.steps[s]), "run_id", "step_id")
               for s in step_ids],
        gates=[rows.keyed(rows.gate_row(run, run.gates[g]), "run_id", "gate_id")
               for g in gate_ids],
        events=[rows.event_row(e) for e in new_events],
        outbox=[
            {"run_id": run.id, "step_id": step_id, "kind": p.kind, "channel": p.channel,
             "payload": dict(p.payload), "created_at": run.updated_at}
            for step_id, p in publications
        ],
        timers=timers or {},
        command=(
            {"k_id": command[0], "outcome": dict(command[1]), "done_at": run.updated_at}
            if command is not None
            else None
        ),
        fence=fence,
        tasks=[rows.task_row(t) for t in task_writes.queued] if task_writes else [],
        cancelled_tasks=(
            [{"run_id": run.id, "step_id": s} for s in task_writes.cancelled] if task_writes else []
        ),
        finished_tasks=[_finished_row(r) for r in task_writes.finished] if task_writes else [],
        claims=task_writes.claims if task_writes else (),
        ended=[queued_row(run)] if ends else [],
    )  # fmt: skip


def creation_writes(run: Run, new_events: Sequence[Event]) -> Writes:
    """The rows a new run is stored with: the run, its steps and gates, its first events."""
    return [
        (INSERT_RUN, [{**rows.run_row(run), **rows.run_identity(run)}]),
        (INSERT_STEPS, [rows.step_row(run, s) | {"position": i}
                        for i, s in enumerate(run.steps.values())]),
        (INSERT_GATES, [rows.gate_row(run, g) | {"position": i}
                        for i, g in enumerate(run.gates.values())]),
        (INSERT_EVENTS, [rows.event_row(e) for e in new_events]),
    ]  # fmt: skip


def _run_id_for_request(conn: sa.Connection, owner: str, request_id: str) -> str | None:
    query = sa.select(runs.c.id).where(runs.c.owner == owner, runs.c.request_id == request_id)
    return conn.execute(query).scalar_one_or_none()


def page_query(
    owner: str,
    where: RunFilter,
    status: RunStatus | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> sa.Select[Any]:
    """What list_runs asks for one status (or none): newest first, after the cursor. (Public so
    a test can check every combination of filters is served by an index.)"""
    query = sa.select(*RUN_COLUMNS).where(runs.c.owner == owner)
    if status is not None:
        query = query.where(runs.c.status == status.value)
    if where.template_id:
        query = query.where(runs.c.template_id == where.template_id)
    if where.created_from is not None:
        query = query.where(runs.c.created_at >= where.created_from)
    if where.created_before is not None and after is None:
        # Past the first page the cursor is the upper bound (it came from a page of this very
        # filter, so it lies below created_before): two upper bounds would make the database
        # seek to one and filter by the other, reading every row between them.
        query = query.where(runs.c.created_at < where.created_before)
    if after is not None:
        # A row value, which both databases turn into one index seek; the equivalent
        # `a < x OR (a = x AND b < y)` is not always recognised as a range.
        created, last_id = after
        query = query.where(
            sa.tuple_(runs.c.created_at, runs.c.id)
            < sa.tuple_(
                sa.bindparam(None, created, type_=runs.c.created_at.type),
                sa.bindparam(None, last_id, type_=runs.c.id.type),
            )
        )
    return query.order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit)


# The largest sequence the events table holds (a 32-bit INTEGER column).
MAX_SEQUENCE = 2**31 - 1


def event_page_query(
    run_id: str,
    after_sequence: int,
    limit: int,
    types: Sequence[EventType] = (),
    step_ids: Sequence[str] = (),
) -> sa.Select[Any]:
    """What list_events asks for: a run's events after a sequence, in order. The primary key
    (run_id, sequence) bounds the read to the run's events past the cursor; the type and step
    filters are checked on those rows rather than served by an index of their own, which
    every event written would pay for while a run holds hundreds of events, not millions.
    (Public so a test can check the plan.)"""
    # A cursor past the column's range (the API takes int64) matches nothing, as it should,
    # rather than failing to bind on PostgreSQL.
    after = min(after_sequence, MAX_SEQUENCE)
    query = sa.select(events).where(events.c.run_id == run_id, events.c.sequence > after)
    if types:
        query = query.where(events.c.type.in_([t.value for t in types]))
    if step_ids:
        query = query.where(events.c.step_id.in_(list(step_ids)))
    return query.order_by(events.c.sequence).limit(limit)


RUN_COLUMNS = list(runs.c)
_STEP_COLUMNS_WITHOUT_OUTPUT = [c for c in step_runs.c if c.name != "output"]


class _SnapshotCache:
    """Templates by snapshot key, each decoded once: a key names one body for good, and the
    runs of one template (a list page is often all of one) share one Template object, whose
    derived lookups and serialized forms are then built once. Bounded: cleared when full."""

    LIMIT = 1024

    def __init__(self) -> None:
        self._templates: dict[str, Template] = {}

    def resolve(self, conn: sa.Connection, keys: set[str]) -> dict[str, Template]:
        found = {k: t for k in keys if (t := self._templates.get(k)) is not None}
        missing = keys - found.keys()
        if missing:
            query = sa.select(template_snapshots.c.key, template_snapshots.c.body).where(
                template_snapshots.c.key.in_(sorted(missing))
            )
            if len(self._templates) + len(missing) > self.LIMIT:
                self._templates.clear()
            for key, body in conn.execute(query):
                found[key] = self._templates[key] = codec.template_from_json(body)
        return found


# --- statements -------------------------------------------------------------------------------


def _keyed_update(table: sa.Table, keys: tuple[str, ...], fields: tuple[str, ...]) -> sa.Update:
    """UPDATE table SET fields WHERE keys, all as bind parameters (keys bound as "k_<name>").

    Built once at import: a constant statement keeps its SQLAlchemy cache key memoized, so the
    hot path neither rebuilds nor re-keys it.
    """
    return (
        table.update()
        .where(*(table.c[k] == sa.bindparam(f"k_{k}") for k in keys))
        .values({f: sa.bindparam(f) for f in fields})
    )


_STEP_FIELDS = ("status", "attempt", "started_at", "ended_at", "output", "error", "wake_at")
_GATE_FIELDS = ("status", "observed_value", "message", "decided_at", "deadline")
_RUN_FIELDS = (
    "status", "options", "error", "pause_reason", "paused_gate_id", "started_at", "ended_at",
    "updated_at", "last_sequence", "version", "start_request_id", "start_request_hash",
)  # fmt: skip

# The batched writes of create_run and commit: the statements a subclass's _execute receives.
INSERT_RUN = runs.insert()
INSERT_STEPS = step_runs.insert()
INSERT_GATES = gate_results.insert()
INSERT_EVENTS = events.insert()
INSERT_OUTBOX = outbox.insert()
INSERT_QUEUED = analytics_queue.insert()
UPDATE_RUN = _keyed_update(runs, ("id", "version"), _RUN_FIELDS)
UPDATE_STEP = _keyed_update(step_runs, ("run_id", "step_id"), _STEP_FIELDS)
UPDATE_GATE = _keyed_update(gate_results, ("run_id", "gate_id"), _GATE_FIELDS)
# Outside the hot path (run with SQLAlchemy on every database): the lease-fenced update of a
# run, a command's outcome.
_UPDATE_FENCED_RUN = _keyed_update(
    runs, ("id", "version", "lease_owner", "lease_epoch"), _RUN_FIELDS
)
_FINISH_COMMAND = _keyed_update(run_commands, ("id",), ("outcome", "done_at"))
# A run's timers, set (replaced: deleted, then inserted) and cleared, key by key: on the path
# of every wait's start and end (10,000 waits ending together are 10,000 of these).
DELETE_TIMERS = timers.delete().where(
    timers.c.run_id == sa.bindparam("k_run_id"), timers.c.key == sa.bindparam("k_key")
)
INSERT_TIMERS = timers.insert()


def upsert_tasks(insert: Callable[[sa.Table], Any]) -> sa.Insert:
    """A task row written whole, replacing the step's last one (given the dialect's insert,
    which has ON CONFLICT)."""
    statement = insert(tasks)
    keys = (tasks.c.run_id, tasks.c.step_id)
    fields = {c.name: statement.excluded[c.name] for c in tasks.c if c not in keys}
    return cast(sa.Insert, statement.on_conflict_do_update(index_elements=keys, set_=fields))


def _state_is(*states: TaskState) -> sa.ColumnElement[bool]:
    """The task's state is one of these, as SQL literals: the statements that use it bind
    only column values (which `sqlite_raw` compiles them for). One state is `state = '...'`,
    never `IN ('...')`: SQLite uses the partial index `ix_tasks_queued` (`WHERE state =
    'queued'`) only for a condition that matches its own, and scanned every task row for
    each activation without it."""
    literals: list[sa.ColumnElement[str]] = [
        sa.literal_column(f"'{state.value}'") for state in states
    ]
    return tasks.c.state == literals[0] if len(literals) == 1 else tasks.c.state.in_(literals)


CANCEL_TASKS = (
    tasks.update()
    .where(
        tasks.c.run_id == sa.bindparam("k_run_id"),
        tasks.c.step_id == sa.bindparam("k_step_id"),
        _state_is(TaskState.QUEUED, TaskState.ACTIVE),
    )
    .values(state=sa.literal_column(f"'{TaskState.CANCELLED.value}'"))
)
# The workers' side of tasks, each a compare-and-set on a task's state and delivery (built
# once: a statement built per call cost more than running it).
_GET_TASK = sa.select(tasks).where(
    tasks.c.run_id == sa.bindparam("k_run_id"), tasks.c.step_id == sa.bindparam("k_step_id")
)
_HELD = (
    tasks.c.run_id == sa.bindparam("k_run_id"),
    tasks.c.step_id == sa.bindparam("k_step_id"),
    tasks.c.attempt == sa.bindparam("k_attempt"),
    tasks.c.delivery == sa.bindparam("k_delivery"),
)
_ACTIVE_HELD = (*_HELD, _state_is(TaskState.ACTIVE))


def queue_stats_queries(owner: str | None) -> tuple[sa.Select[Any], sa.Select[Any]]:
    """The queued tasks (count, oldest) and the active ones (count) by task type, of one owner
    or all: two reads, each through its partial index (ix_tasks_queued, ix_tasks_active), as
    the table keeps every finished task until its run is deleted and a scrape must not read
    them all."""
    queued = sa.select(tasks.c.task_type, sa.func.count(), sa.func.min(tasks.c.queued_at))
    active = sa.select(tasks.c.task_type, sa.func.count())
    queued = queued.where(_state_is(TaskState.QUEUED))
    active = active.where(_state_is(TaskState.ACTIVE))
    if owner is not None:
        queued = queued.where(tasks.c.owner == owner)
        active = active.where(tasks.c.owner == owner)
    return queued.group_by(tasks.c.task_type), active.group_by(tasks.c.task_type)


@functools.cache
def activate_tasks(types: int) -> sa.Update:
    """Activate an owner's oldest queued tasks of `types` task types (bound as k_type0...):
    one statement per number of types, built once, so SQLite's raw cursor can run it.
    SKIP LOCKED on PostgreSQL: pollers on several servers take different tasks rather than
    queue behind each other (SQLite has one writer and renders no FOR UPDATE)."""
    oldest_queued = (
        sa.select(tasks.c.run_id, tasks.c.step_id)
        .where(
            _state_is(TaskState.QUEUED),
            tasks.c.owner == sa.bindparam("k_owner"),
            tasks.c.task_type.in_([sa.bindparam(f"k_type{i}") for i in range(types)]),
        )
        .order_by(tasks.c.queued_at)
        .limit(sa.bindparam("k_limit", type_=sa.Integer))
        .with_for_update(skip_locked=True)
    )
    return (
        tasks.update()
        .where(sa.tuple_(tasks.c.run_id, tasks.c.step_id).in_(oldest_queued))
        .values(
            state=sa.literal_column(f"'{TaskState.ACTIVE.value}'"),
            delivery=tasks.c.delivery + sa.literal_column("1"),
            worker=sa.bindparam("worker"),
            activated_at=sa.bindparam("activated_at"),
            expires_at=sa.bindparam("expires_at"),
            acked=sa.false(),
        )
        .returning(*tasks.c)
    )


_ACK_TASK = (
    tasks.update()
    .where(*_ACTIVE_HELD, tasks.c.acked.is_(False))
    .values(acked=True, expires_at=sa.bindparam("expires_at"))
)
FINISH_HELD_TASK = (
    tasks.update()
    .where(*_ACTIVE_HELD, tasks.c.owner == sa.bindparam("k_owner"))
    .values(state=sa.bindparam("state"), result=sa.bindparam("result"))
)
FINISH_TASK = FINISH_HELD_TASK.returning(*tasks.c)
_REQUEUE_TASK = (
    tasks.update()
    .where(*_ACTIVE_HELD, tasks.c.delivery < sa.bindparam("k_max"))
    .values(
        state=TaskState.QUEUED.value, worker=None, activated_at=None, expires_at=None, acked=False
    )
)
_GIVE_UP_TASK = (
    tasks.update()
    .where(*_ACTIVE_HELD)
    .values(state=TaskState.FAILED.value, result=sa.bindparam("result"))
)
_EXPIRE_TASK = (
    tasks.update()
    .where(
        *_HELD, tasks.c.state == sa.bindparam("k_state"), tasks.c.acked == sa.bindparam("k_acked")
    )
    .values(state=TaskState.TIMED_OUT.value, result=sa.bindparam("result"))
)
# Each with its table, for a subclass that compiles them itself.
BATCHED: tuple[tuple[sa.Insert | sa.Update | sa.Delete, sa.Table], ...] = (
    (INSERT_RUN, runs),
    (INSERT_STEPS, step_runs),
    (INSERT_GATES, gate_results),
    (INSERT_EVENTS, events),
    (INSERT_OUTBOX, outbox),
    (INSERT_QUEUED, analytics_queue),
    (UPDATE_RUN, runs),
    (UPDATE_STEP, step_runs),
    (UPDATE_GATE, gate_results),
    (CANCEL_TASKS, tasks),
    (FINISH_HELD_TASK, tasks),
    (DELETE_TIMERS, timers),
    (INSERT_TIMERS, timers),
)

# --- analytics ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Queued:
    """A queue row read by a fold, with what its run adds (none when it cannot be counted)."""

    id: int
    owner: str
    template_id: str
    template_version: int
    ended_at: datetime
    counts: Sequence[Count]


class seconds_between(FunctionElement[float]):
    """SQL for the seconds from one time column to another (NULL when either is), exact to
    the microsecond. SQLite's date functions keep milliseconds only, so the whole seconds come
    from julianday() of the text's first 19 characters and the microseconds from its last six
    (the store writes "YYYY-MM-DD HH:MM:SS.ffffff")."""

    type = sa.Float()
    inherit_cache = True


@compiles(seconds_between, "sqlite")
def _seconds_on_sqlite(element: seconds_between, compiler: Any, **kw: Any) -> str:
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    return (
        f"(round((julianday(substr({end}, 1, 19)) - julianday(substr({start}, 1, 19))) "
        f"* 86400.0) + (substr({end}, 21) - substr({start}, 21)) / 1000000.0)"
    )


@compiles(seconds_between, "postgresql")
def _seconds_on_postgresql(element: seconds_between, compiler: Any, **kw: Any) -> str:
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST(EXTRACT(EPOCH FROM ({end} - {start})) AS DOUBLE PRECISION)"


_QUEUED = (
    sa.select(analytics_queue)
    .order_by(analytics_queue.c.id)
    .limit(sa.bindparam("limit", type_=sa.Integer))
)
_IDS: sa.BindParameter[str] = sa.bindparam("ids", expanding=True)
_RUNS_TO_COUNT = sa.select(
    runs.c.id, runs.c.template_key, runs.c.status,
    seconds_between(runs.c.started_at, runs.c.ended_at).label("seconds"),
).where(runs.c.id.in_(_IDS))  # fmt: skip
_STEPS_TO_COUNT = sa.select(
    step_runs.c.run_id, step_runs.c.step_id, step_runs.c.status, step_runs.c.attempt,
    seconds_between(step_runs.c.started_at, step_runs.c.ended_at),
).where(step_runs.c.run_id.in_(_IDS))  # fmt: skip
_GATES_TO_COUNT = sa.select(
    gate_results.c.run_id, gate_results.c.gate_id, gate_results.c.status
).where(gate_results.c.run_id.in_(_IDS))


def _sum_up(found: Sequence[_Queued]) -> dict[tuple[Any, ...], Tally]:
    """What queue rows add to analytics_sums, by its primary key: added up by hour first, then
    each hour's tallies into its 6 hours and its day."""
    hours: dict[tuple[Any, ...], Tally] = {}
    for q in found:
        hour = counting.floor_hour(q.ended_at)
        for c in q.counts:
            key = (q.owner, hour, q.template_id, q.template_version, c.kind, c.subject)
            tally = hours.get(key)
            if tally is None:
                hours[key] = tally = Tally()
            tally.add(c)
    sums: dict[tuple[Any, ...], Tally] = {}
    for (owner, hour, *rest), tally in hours.items():
        for width, start in counting.span_starts(hour):
            key = (owner, int(width.total_seconds()), start, *rest)
            if width == counting.HOUR:
                sums[key] = tally
            else:
                sums.setdefault(key, Tally()).merge(tally)
    return sums


def queued_row(run: Run) -> dict[str, Any]:
    """The analytics queue row of a run its commit ends: what it adds, counted from the run in
    memory (no read later)."""
    return {
        "run_id": run.id, "owner": run.owner, "template_id": run.template.id,
        "template_version": run.template.version, "ended_at": run.ended_at,
        "counts": counting.flat_counts_of(run),
    }  # fmt: skip


_SUM_COLUMNS = tuple(c.name for c in analytics_sums.c)
_SUM_KEY = tuple(c.name for c in analytics_sums.primary_key)


def add_sums(insert: Callable[[sa.Table], Any]) -> sa.Insert:
    """INSERT INTO analytics_sums ... ON CONFLICT DO UPDATE adding the new values to the
    stored ones, with `insert` the dialect's (sqlite.insert or postgresql.insert)."""
    statement = insert(analytics_sums)
    added = statement.excluded
    return statement.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=list(_SUM_KEY),
        set_={name: analytics_sums.c[name] + added[name] for name in counting.VALUES},
    )


def sums_query(owner: str, span: counting.Span, query: AnalyticsQuery) -> sa.Select[Any]:
    """The sums of one span of a window (its days, 6-hour spans or hours), added up by
    template and (kind, subject) in the order of counting.VALUES: a range of analytics_sums'
    primary key (owner, span width, span start). (Public so a test can check the plan.)"""
    c = analytics_sums.c
    statement = sa.select(
        c.template_id, c.kind, c.subject, *(sa.func.sum(c[name]) for name in counting.VALUES)
    ).where(
        c.owner == owner,
        c.span_seconds == int(span.width.total_seconds()),
        c.span_start >= span.start,
        c.span_start < span.end,
    )
    if query.template_id:
        statement = statement.where(c.template_id == query.template_id)
        if query.template_version:
            statement = statement.where(c.template_version == query.template_version)
    return statement.group_by(c.template_id, c.kind, c.subject)


_COUNT_ACTIVE = sa.select(sa.func.count()).where(
    runs.c.owner == sa.bindparam("owner"), runs.c.status.in_(_ACTIVE)
)
_LATEST_VERSION = sa.select(sa.func.max(templates.c.version)).where(
    templates.c.owner == sa.bindparam("owner"),
    templates.c.id == sa.bindparam("id"),
    templates.c.deleted_at.is_(None),
)


def _timer_work(run_id: str, changes: Mapping[str, datetime | None]) -> Writes:
    """The statements that set and clear a run's timers (set = replace: delete, then insert)."""
    return [
        (DELETE_TIMERS, [{"k_run_id": run_id, "k_key": k} for k in changes]),
        (INSERT_TIMERS, [{"run_id": run_id, "key": k, "fire_at": at}
                         for k, at in changes.items() if at]),
    ]  # fmt: skip


def _task_now(conn: sa.Connection, run_id: str, step_id: str) -> TaskRecord | None:
    found = conn.execute(_GET_TASK, {"k_run_id": run_id, "k_step_id": step_id}).mappings().first()
    return rows.task_from_row(found) if found is not None else None


def _finished_row(finished: TaskResult) -> dict[str, Any]:
    return {
        **_task_key(finished.key), "k_owner": finished.owner,
        "state": finished.state.value, "result": dict(finished.result),
    }  # fmt: skip


def _task_key(key: TaskKey) -> dict[str, Any]:
    return {
        "k_run_id": key.run_id, "k_step_id": key.step_id,
        "k_attempt": key.attempt, "k_delivery": key.delivery,
    }  # fmt: skip


def _time(value: Any) -> datetime | None:
    """A timestamp from an aggregate: SQLite may hand it back as text."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return codec.utc(value)


def _raise_lost_write(conn: sa.Connection, run_id: str, fence: Fence | None) -> None:
    """A run's UPDATE matched nothing: say whether its lease or its version moved."""
    lease = None
    if fence is not None:
        lease = conn.execute(
            sa.select(runs.c.lease_owner, runs.c.lease_epoch).where(runs.c.id == run_id)
        ).first()
    raise lost_write(run_id, fence, None if lease is None else (lease[0], lease[1]))


def lost_write(
    run_id: str, fence: Fence | None, lease: tuple[str | None, int] | None
) -> LeaseLost | Conflict:
    """Why a run's compare-and-set UPDATE matched no row, given the lease stored now (None:
    no such run): LeaseLost when a fenced write's lease moved, else Conflict (its version did)."""
    if fence is not None and (lease is None or lease != (fence.owner, fence.epoch)):
        return LeaseLost(f"workflow {run_id} is leased to another server now")
    return Conflict(f"workflow {run_id} was changed by another writer")
