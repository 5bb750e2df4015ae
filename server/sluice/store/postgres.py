"""The Store on PostgreSQL.

The hot path, a run's creation and every transition, goes to asyncpg directly through group
commit (`postgres_group_commit`): the transitions and creations waiting at a moment are one
statement (`postgres_writes`), one round trip and one transaction. Everything else (reads,
templates, deletions, housekeeping) runs on SQLAlchemy's async engine (`AsyncExecutor`).

Measured with bench/postgres_hotpath.py (one-step workflows, one server, 2 cores): through
SQLAlchemy a workflow cost 27 statements and 9 transactions (the pool's pre-ping, BEGIN, one
statement per table, COMMIT, a NOTIFY of its own); now 3 statements, 3 transactions, one at a
time, and 0.2 with 64 callers, whose writes share statements: 536 workflows/s against 120.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sluice.engine.errors import Conflict
from sluice.engine.model import Event, Run
from sluice.engine.ports import TaskRecord
from sluice.store import rows
from sluice.store.base import (
    SqlStore,
    Transition,
    Writes,
    add_sums,
    creation_writes,
    lost_write,
    upsert_tasks,
)
from sluice.store.executors import AsyncExecutor
from sluice.store.postgres_group_commit import GroupCommit
from sluice.store.postgres_notify import payloads
from sluice.store.postgres_writes import LEASES_SQL, NO_NOTICES, Creation, write_statement
from sluice.store.schema import template_snapshots

# Writer connections, each taking the writes waiting when it is free. One: the batches grow
# while a statement is out, which measured the least CPU per workflow (server 0.7-1.0 ms,
# PostgreSQL 0.3 ms, one-step workflows with 64 callers; two writers: 0.9-1.2 and 0.4-0.6 ms)
# at the same throughput, and commits that send notices are serialized by PostgreSQL anyway.
WRITERS = 1


class PostgresStore(SqlStore):
    INSERT_SNAPSHOT = postgresql.insert(template_snapshots).on_conflict_do_nothing()
    ADD_SUMS = add_sums(postgresql.insert)
    UPSERT_TASKS = upsert_tasks(postgresql.insert)
    # A result in the group commit's one statement would need its run's UPDATE to depend on
    # the task's compare-and-set (a CTE per batch); until then results are recorded first
    # with finish_task, and their outcomes committed by the group commit as before.
    results_in_commits = False

    def __init__(self, executor: AsyncExecutor, writes: GroupCommit) -> None:
        super().__init__(executor)
        self._writes = writes
        self._kind = _Writes()
        self._stored_snapshots: set[str] = set()
        self._storing_snapshots: dict[str, asyncio.Future[None]] = {}

    @classmethod
    def on_engine(cls, engine: AsyncEngine) -> PostgresStore:
        """The store on a (migrated) database; it disposes of `engine` when closed."""
        dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        return cls(AsyncExecutor(engine), GroupCommit(dsn, writers=WRITERS))

    def carry_notices(self, channel: str, server_id: str) -> None:
        """From now on every batch of creations and transitions also sends the notice naming
        its runs on `channel` (as `server_id`; see `postgres_notify`), which PostgreSQL
        delivers once the batch commits: a notice costs no transaction of its own."""
        self._kind.notices = (channel, server_id)

    def probe_commits(self, probe: Callable[[int, float], None]) -> None:
        self._writes.on_batch = probe  # runs' creations and transitions: the hot path's writes

    async def close(self) -> None:
        await self._writes.close()
        await super().close()

    def _execute(self, conn: sa.Connection, writes: Writes) -> int:
        changed = 0
        for i, (statement, values) in enumerate(writes):
            if values:
                # One row: a plain execute, whose rowcount asyncpg reports (executemany's
                # it may not); the compare-and-set of a commit is always one row.
                result = conn.execute(statement, values[0] if len(values) == 1 else values)
                changed = result.rowcount if i == 0 else changed
        return changed

    async def _commit(self, t: Transition) -> list[list[TaskRecord]]:
        if t.finished_tasks or t.claims:  # (not sent here: results_in_commits is False)
            return await super()._commit(t)  # one transaction
        try:
            await self._writes.write(self._kind, t, t.run_id)
            return []
        except asyncpg.IntegrityConstraintViolationError as exc:
            # A duplicate event sequence: someone else won the race.
            raise Conflict(f"workflow {t.run_id} was changed by another writer") from exc

    async def create_run(self, run: Run, new_events: Sequence[Event]) -> Run:
        return await self._create(run, new_events, None)

    async def create_leased_run(self, run: Run, new_events: Sequence[Event], owner: str) -> Run:
        """`create_run`, the new run leased to the server `owner`."""
        return await self._create(run, new_events, owner)

    async def _store_snapshot(self, snapshot: rows.Snapshot) -> None:
        """Its own transaction, before the run's: a snapshot never changes and is never
        deleted, so one stored for a run that then fails is simply there for the next. (In the
        batch statement a sibling's INSERT is not visible to the runs' key check.)"""
        row = snapshot.row()
        await self._db.write(lambda conn: conn.execute(self.INSERT_SNAPSHOT, row))
        if len(self._stored_snapshots) > 4096:
            self._stored_snapshots.clear()
        self._stored_snapshots.add(snapshot.key)

    async def _create(self, run: Run, new_events: Sequence[Event], lease: str | None) -> Run:
        snapshot = rows.snapshot(run.template)
        if snapshot.key not in self._stored_snapshots:
            # Creations of one new template at once share one insert of its snapshot, and go
            # on in the order they came (a shared future wakes its waiters in that order): the
            # first of two creations with one request id is the one that stays.
            storing = self._storing_snapshots.get(snapshot.key)
            if storing is None:
                storing = asyncio.ensure_future(self._store_snapshot(snapshot))
                self._storing_snapshots[snapshot.key] = storing
                storing.add_done_callback(lambda _: self._storing_snapshots.pop(snapshot.key))
            await asyncio.shield(storing)
        creation = Creation(creation_writes(run, new_events), lease)
        if await self._writes.write(self._kind, creation, run.id):
            return run
        # Not inserted: its owner already used its request id (perhaps in this very batch).
        found = await self.get_run_by_request(run.owner, run.request_id) if run.request_id else None
        if found is None:
            raise Conflict(f"workflow {run.id} could not be created: its id is taken")
        return found


class _Writes:
    """Transitions and creations, as `write_statement`. A transition whose compare-and-set
    matched nothing gets LeaseLost or Conflict (as `base.lost_write` decides from its lease,
    read afterwards); a creation gets whether its run was inserted."""

    def __init__(self) -> None:
        self.notices: tuple[str, str] | None = None  # (PostgreSQL channel, server id)

    async def run(
        self, conn: asyncpg.Connection, batch: Sequence[Transition | Creation]
    ) -> list[object]:
        # By run id: batches and lease renewals then tend to lock runs in the same order.
        transitions = sorted(
            (w for w in batch if isinstance(w, Transition)), key=lambda t: t.run_id
        )
        creations = [w for w in batch if isinstance(w, Creation)]
        notices = NO_NOTICES
        if self.notices is not None:
            channel, server_id = self.notices
            texts = payloads(server_id, [w.run_id for w in batch])
            notices = [channel] * len(texts), texts
        sql, arguments = write_statement(transitions, creations, notices)
        written = {r[0] for r in await conn.fetch(sql, *arguments)}
        fenced = [t.run_id for t in transitions if t.run_id not in written and t.fence is not None]
        leases: dict[str, tuple[str | None, int]] = {}
        if fenced:
            leases = {r[0]: (r[1], r[2]) for r in await conn.fetch(LEASES_SQL, fenced)}
        return [
            w.run_id in written
            if isinstance(w, Creation)
            else None
            if w.run_id in written
            else lost_write(w.run_id, w.fence, leases.get(w.run_id))
            for w in batch
        ]


def create_engine(url: URL, **options: Any) -> AsyncEngine:
    """An async engine (asyncpg) on `url`; a pooled connection is checked before use, so one
    the server dropped (a restart, a failover) is replaced rather than failing a call."""
    return create_async_engine(url, pool_pre_ping=True, **options)
