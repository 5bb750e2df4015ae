"""The Store on SQLAlchemy 2 Core: SQLite (pysqlite on store threads) or PostgreSQL (asyncpg).

All SQL of the service lives in this package. Each operation is a plain function of a
synchronous `Connection`, run by an executor (see `executors`): on SQLite a whole transaction
costs one thread hop, and concurrent transitions share one commit. A transition is a
compare-and-set UPDATE of the run, executemany UPDATEs of the steps and gates it touched and
multi-row INSERTs of its events and outbox records.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sluice.engine.errors import Conflict, LeaseLost
from sluice.engine.model import (
    Event,
    EventType,
    GateResult,
    GateStatus,
    Publication,
    Run,
    RunStatus,
    StepRun,
    StepStatus,
    Template,
)
from sluice.engine.ports import Fence, RunFilter, RunKey, RunPage, Timer
from sluice.store import codec, sqlite_file, sqlite_wal, urls
from sluice.store import migrate as migrate_schema
from sluice.store.errors import opening
from sluice.store.executors import AsyncExecutor, Executor, SqliteExecutor
from sluice.store.schema import (
    events,
    gate_results,
    outbox,
    run_commands,
    runs,
    step_runs,
    templates,
    timers,
)
from sluice.store.sqlite_raw import RawStatement

_TERMINAL_EVENTS = frozenset(
    {EventType.WORKFLOW_COMPLETED, EventType.WORKFLOW_FAILED, EventType.WORKFLOW_CANCELLED}
)
_ACTIVE = [RunStatus.PENDING.value, RunStatus.RUNNING.value, RunStatus.PAUSED.value]


class SqlStore:
    def __init__(self, executor: Executor) -> None:
        self._db = executor

    @classmethod
    async def open(cls, url: str, *, migrate: bool = False) -> SqlStore:
        """Connect and make sure the schema is one this code runs on: an empty database is
        created at the latest revision, an older one is upgraded only with `migrate`, a newer
        one is refused (SchemaError). A database that cannot be used as configured (missing,
        unreachable, refusing the user) raises StoreSetupError saying what to do."""
        engine = create_engine(url)
        try:
            with opening(engine.url):
                await migrate_schema.prepare(engine, migrate=migrate)
        except BaseException:
            await engine.dispose()
            raise
        if engine.dialect.name != "sqlite":
            return cls(AsyncExecutor(engine))
        await engine.dispose()  # migrations done; SQLite's own threads take over
        return cls(SqliteExecutor(*_sqlite_engines(engine.url)))

    @property
    def executor(self) -> Executor:
        return self._db

    async def close(self) -> None:
        await self._db.close()

    # --- runs ---------------------------------------------------------------------------------

    async def create_run(
        self,
        run: Run,
        new_events: Sequence[Event],
        *,
        then: Callable[[sa.Connection], object] | None = None,
    ) -> Run:
        """`then`: more work on the new run in the same transaction (not for an existing run
        returned for its request id)."""

        def insert(conn: sa.Connection) -> Run:
            if run.request_id:
                existing = _run_id_for_request(conn, run.owner, run.request_id)
                if existing is not None:
                    found = _load_runs(conn, sa.select(*_RUN_COLUMNS).where(runs.c.id == existing))
                    return found[0]
            inserts = (
                (_INSERT_RUN, _RAW_INSERT_RUN, [{**_run_row(run), **_run_identity(run)}]),
                (_INSERT_STEPS, _RAW_INSERT_STEPS,
                 [_step_row(run, s) | {"position": i} for i, s in enumerate(run.steps.values())]),
                (_INSERT_GATES, _RAW_INSERT_GATES,
                 [_gate_row(run, g) | {"position": i} for i, g in enumerate(run.gates.values())]),
                (_INSERT_EVENTS, _RAW_INSERT_EVENTS, [_event_row(e) for e in new_events]),
            )  # fmt: skip
            if conn.dialect.name == "sqlite":
                _execute_raw(conn, [(raw, rows) for _, raw, rows in inserts])
            else:
                for statement, _, rows in inserts:
                    if rows:
                        conn.execute(statement, rows)
            if then is not None:
                then(conn)
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
            return _load_runs(conn, sa.select(*_RUN_COLUMNS).where(runs.c.id == existing))[0]

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
    ) -> None:
        step_ids = sorted({e.step_id for e in new_events if e.step_id})
        ends = any(e.type in _TERMINAL_EVENTS for e in new_events)
        gate_ids = sorted(set(run.gates) if ends else {e.gate_id for e in new_events if e.gate_id})
        step_rows = [_keyed(_step_row(run, run.steps[s]), "run_id", "step_id") for s in step_ids]
        gate_rows = [_keyed(_gate_row(run, run.gates[g]), "run_id", "gate_id") for g in gate_ids]
        event_rows = [_event_row(e) for e in new_events]
        outbox_rows = [
            {"run_id": run.id, "step_id": step_id, "kind": p.kind, "channel": p.channel,
             "payload": dict(p.payload), "created_at": run.updated_at}
            for step_id, p in publications
        ]  # fmt: skip
        run_row = {**_run_row(run), "k_id": run.id, "k_version": run.version - 1}
        if fence is not None:
            run_row |= {"k_lease_owner": fence.owner, "k_lease_epoch": fence.epoch}
        timer_work = _timer_work(run.id, timers) if timers else ()
        command_row = (
            {"k_id": command[0], "outcome": dict(command[1]), "done_at": run.updated_at}
            if command is not None
            else None
        )

        def write(conn: sa.Connection) -> None:
            for statement, params in timer_work:
                conn.execute(statement, params)
            if command_row is not None:
                conn.execute(_FINISH_COMMAND, command_row)
            if conn.dialect.name == "sqlite" and fence is None:
                return _write_raw(
                    conn, run.id, run_row, step_rows, gate_rows, event_rows, outbox_rows
                )
            result = conn.execute(_UPDATE_RUN if fence is None else _UPDATE_FENCED_RUN, run_row)
            if result.rowcount != 1:
                _raise_lost_write(conn, run.id, fence)
            if step_rows:
                conn.execute(_UPDATE_STEP, step_rows)
            if gate_rows:
                conn.execute(_UPDATE_GATE, gate_rows)
            if event_rows:
                conn.execute(_INSERT_EVENTS, event_rows)
            if outbox_rows:
                conn.execute(_INSERT_OUTBOX, outbox_rows)

        try:
            await self._db.write(write)
        except IntegrityError as exc:  # a duplicate event sequence: someone else won the race
            raise Conflict(f"workflow {run.id} was changed by another writer") from exc

    async def timers_of(self, run_ids: Iterable[str]) -> list[Timer]:
        ids = list(run_ids)
        query = sa.select(timers.c.run_id, timers.c.key, timers.c.fire_at).where(
            timers.c.run_id.in_(ids)
        )
        return await self._db.read(
            lambda conn: [Timer(r, k, codec.utc(at) or at) for r, k, at in conn.execute(query)]
        )

    async def get_run_any(self, run_id: str) -> Run | None:
        """The run whatever its owner (for a server taking runs over, never for a caller)."""
        query = sa.select(*_RUN_COLUMNS).where(runs.c.id == run_id)

        def load(conn: sa.Connection) -> Run | None:
            found = _load_runs(conn, query)
            return found[0] if found else None

        return await self._db.read(load)

    async def get_run(self, owner: str, run_id: str) -> Run | None:
        query = sa.select(*_RUN_COLUMNS).where(runs.c.id == run_id, runs.c.owner == owner)

        def load(conn: sa.Connection) -> Run | None:
            found = _load_runs(conn, query)
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
            rows = [row for query in queries for row in conn.execute(query).mappings()]
            if len(queries) > 1:
                rows.sort(key=lambda r: (r["created_at"], r["id"]), reverse=True)
            return _assemble_runs(conn, rows[: limit + 1], outputs=outputs)

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

    async def unfinished_runs(self) -> list[Run]:
        query = (
            sa.select(*_RUN_COLUMNS)
            .where(runs.c.status.in_([RunStatus.RUNNING.value, RunStatus.PAUSED.value]))
            .order_by(runs.c.created_at)
        )
        return await self._db.read(lambda conn: _load_runs(conn, query))

    async def list_events(self, run_id: str, after_sequence: int, limit: int) -> list[Event]:
        query = (
            sa.select(events)
            .where(events.c.run_id == run_id, events.c.sequence > after_sequence)
            .order_by(events.c.sequence)
            .limit(limit)
        )
        return await self._db.read(
            lambda conn: [_event_from_row(r) for r in conn.execute(query).mappings()]
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
    query = sa.select(*_RUN_COLUMNS).where(runs.c.owner == owner)
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


# A run's template snapshot is read as text and decoded once per distinct text: the runs of
# one template version share it (and then one Template, whose serialized forms are cached by
# identity), where decoding it per row was a third of a list's time.
_RUN_COLUMNS = [
    *(c for c in runs.c if c.name != "template"),
    sa.cast(runs.c.template, sa.Text).label("template"),
]


@lru_cache(maxsize=1024)
def _template_snapshot(text: str) -> Template:
    return codec.template_from_json(json.loads(text))


def _load_runs(conn: sa.Connection, query: sa.Select[Any]) -> list[Run]:
    return _assemble_runs(conn, conn.execute(query).mappings().all())


_STEP_COLUMNS_WITHOUT_OUTPUT = [c for c in step_runs.c if c.name != "output"]


def _assemble_runs(
    conn: sa.Connection, rows: Sequence[sa.RowMapping], *, outputs: bool = True
) -> list[Run]:
    """Runs from their rows, with their steps (and outputs, unless left out) and gates."""
    if not rows:
        return []
    ids = [r["id"] for r in rows]
    step_columns = list(step_runs.c) if outputs else _STEP_COLUMNS_WITHOUT_OUTPUT
    step_rows = conn.execute(
        sa.select(*step_columns).where(step_runs.c.run_id.in_(ids)).order_by(step_runs.c.position)
    ).mappings()
    gate_rows = conn.execute(
        sa.select(gate_results)
        .where(gate_results.c.run_id.in_(ids))
        .order_by(gate_results.c.position)
    ).mappings()
    steps_by_run: dict[str, dict[str, StepRun]] = {i: {} for i in ids}
    for s in step_rows:
        steps_by_run[s["run_id"]][s["step_id"]] = StepRun(
            step_id=s["step_id"],
            status=StepStatus(s["status"]),
            attempt=s["attempt"],
            started_at=codec.utc(s["started_at"]),
            ended_at=codec.utc(s["ended_at"]),
            output=s["output"] if outputs else None,
            error=s["error"],
            retry_at=codec.utc(s["retry_at"]),
        )
    gates_by_run: dict[str, dict[str, GateResult]] = {i: {} for i in ids}
    for g in gate_rows:
        gates_by_run[g["run_id"]][g["gate_id"]] = GateResult(
            gate_id=g["gate_id"],
            status=GateStatus(g["status"]),
            observed_value=g["observed_value"],
            message=g["message"],
            decided_at=codec.utc(g["decided_at"]),
        )
    return [
        Run(
            id=r["id"],
            owner=r["owner"],
            template=_template_snapshot(r["template"]),
            params=r["params"],
            created_at=codec.utc(r["created_at"]) or r["created_at"],
            status=RunStatus(r["status"]),
            steps=steps_by_run[r["id"]],
            gates=gates_by_run[r["id"]],
            options=codec.options_from_json(r["options"]),
            error=r["error"],
            pause_reason=r["pause_reason"],
            paused_gate_id=r["paused_gate_id"],
            started_at=codec.utc(r["started_at"]),
            ended_at=codec.utc(r["ended_at"]),
            updated_at=codec.utc(r["updated_at"]),
            last_sequence=r["last_sequence"],
            version=r["version"],
            request_id=r["request_id"] or "",
            start_request_id=r["start_request_id"] or "",
            request_hash=r["request_hash"] or "",
            start_request_hash=r["start_request_hash"] or "",
        )
        for r in rows
    ]


# --- rows -------------------------------------------------------------------------------------


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


_STEP_FIELDS = ("status", "attempt", "started_at", "ended_at", "output", "error", "retry_at")
_GATE_FIELDS = ("status", "observed_value", "message", "decided_at")
_RUN_FIELDS = (
    "status", "options", "error", "pause_reason", "paused_gate_id", "started_at", "ended_at",
    "updated_at", "last_sequence", "version", "start_request_id", "start_request_hash",
)  # fmt: skip
_UPDATE_RUN = _keyed_update(runs, ("id", "version"), _RUN_FIELDS)
_UPDATE_FENCED_RUN = _keyed_update(
    runs, ("id", "version", "lease_owner", "lease_epoch"), _RUN_FIELDS
)
_FINISH_COMMAND = _keyed_update(run_commands, ("id",), ("outcome", "done_at"))
_DELETE_TIMERS = timers.delete().where(
    timers.c.run_id == sa.bindparam("run_id"),
    timers.c.key.in_(sa.bindparam("keys", expanding=True)),
)
_INSERT_TIMERS = timers.insert()
_UPDATE_STEP = _keyed_update(step_runs, ("run_id", "step_id"), _STEP_FIELDS)
_UPDATE_GATE = _keyed_update(gate_results, ("run_id", "gate_id"), _GATE_FIELDS)
_INSERT_EVENTS = events.insert()
_COUNT_ACTIVE = sa.select(sa.func.count()).where(
    runs.c.owner == sa.bindparam("owner"), runs.c.status.in_(_ACTIVE)
)
_LATEST_VERSION = sa.select(sa.func.max(templates.c.version)).where(
    templates.c.owner == sa.bindparam("owner"),
    templates.c.id == sa.bindparam("id"),
    templates.c.deleted_at.is_(None),
)
_INSERT_OUTBOX = outbox.insert()


_INSERT_RUN = runs.insert()
_INSERT_STEPS = step_runs.insert()
_INSERT_GATES = gate_results.insert()
_RAW_INSERT_RUN = RawStatement(_INSERT_RUN, runs)
_RAW_INSERT_STEPS = RawStatement(_INSERT_STEPS, step_runs)
_RAW_INSERT_GATES = RawStatement(_INSERT_GATES, gate_results)
_RAW_UPDATE_RUN = RawStatement(_UPDATE_RUN, runs)
_RAW_UPDATE_STEP = RawStatement(_UPDATE_STEP, step_runs)
_RAW_UPDATE_GATE = RawStatement(_UPDATE_GATE, gate_results)
_RAW_INSERT_EVENTS = RawStatement(_INSERT_EVENTS, events)
_RAW_INSERT_OUTBOX = RawStatement(_INSERT_OUTBOX, outbox)


def _write_raw(
    conn: sa.Connection,
    run_id: str,
    run_row: dict[str, Any],
    step_rows: list[dict[str, Any]],
    gate_rows: list[dict[str, Any]],
    event_rows: list[dict[str, Any]],
    outbox_rows: list[dict[str, Any]],
) -> None:
    """A transition's statements on SQLite's own cursor (see sqlite_raw), same transaction."""
    if _execute_raw(conn, [(_RAW_UPDATE_RUN, [run_row])]) != 1:
        raise Conflict(f"workflow {run_id} was changed by another writer")
    _execute_raw(
        conn,
        [
            (_RAW_UPDATE_STEP, step_rows),
            (_RAW_UPDATE_GATE, gate_rows),
            (_RAW_INSERT_EVENTS, event_rows),
            (_RAW_INSERT_OUTBOX, outbox_rows),
        ],
    )


def _execute_raw(
    conn: sa.Connection, work: Sequence[tuple[RawStatement, list[dict[str, Any]]]]
) -> int:
    """Run each statement for its rows; the rows changed by the first. Integrity errors come
    out as SQLAlchemy's, as on the other path."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    changed = 0
    try:
        for i, (statement, rows) in enumerate(work):
            if rows:
                count = statement.execute(cursor, rows)
                changed = count if i == 0 else changed
    except sqlite3.IntegrityError as exc:
        raise IntegrityError(statement=None, params=None, orig=exc) from exc
    except sqlite3.OperationalError as exc:  # e.g. "database is locked"
        raise OperationalError(statement=None, params=None, orig=exc) from exc
    finally:
        cursor.close()
    return changed


def _timer_work(run_id: str, changes: Mapping[str, datetime | None]) -> list[tuple[Any, Any]]:
    """The statements that set and clear a run's timers (set = replace: delete, then insert)."""
    work: list[tuple[Any, Any]] = [(_DELETE_TIMERS, {"run_id": run_id, "keys": list(changes)})]
    rows = [{"run_id": run_id, "key": k, "fire_at": at} for k, at in changes.items() if at]
    if rows:
        work.append((_INSERT_TIMERS, rows))
    return work


def _raise_lost_write(conn: sa.Connection, run_id: str, fence: Fence | None) -> None:
    """A run's UPDATE matched nothing: say whether the lease or the version moved."""
    if fence is not None:
        row = conn.execute(
            sa.select(runs.c.lease_owner, runs.c.lease_epoch).where(runs.c.id == run_id)
        ).first()
        if row is None or (row.lease_owner, row.lease_epoch) != (fence.owner, fence.epoch):
            raise LeaseLost(f"workflow {run_id} is leased to another server now")
    raise Conflict(f"workflow {run_id} was changed by another writer")


def _keyed(row: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {(f"k_{k}" if k in keys else k): v for k, v in row.items()}


def _run_identity(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "owner": run.owner,
        "template_id": run.template.id,
        "template_version": run.template.version,
        "template": _snapshot(run.template),
        "params": run.params,
        "created_at": run.created_at,
        "request_id": run.request_id or None,
        "request_hash": run.request_hash or None,
        "lease_owner": None,
        "lease_epoch": 0,
        "lease_expires_at": None,
    }


@lru_cache(maxsize=1024)
def _snapshot(template: Template) -> dict[str, Any]:
    """The template as stored with each run, built once per template (they never change, and
    every run of a registered template shares one); only ever serialized, never changed."""
    return codec.template_to_json(template)


def _run_row(run: Run) -> dict[str, Any]:
    return {
        "status": run.status.value,
        "options": codec.options_to_json(run.options),
        "error": run.error,
        "pause_reason": run.pause_reason,
        "paused_gate_id": run.paused_gate_id,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "updated_at": run.updated_at,
        "last_sequence": run.last_sequence,
        "version": run.version,
        "start_request_id": run.start_request_id or None,
        "start_request_hash": run.start_request_hash or None,
    }


def _step_row(run: Run, s: StepRun) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "step_id": s.step_id,
        "status": s.status.value,
        "attempt": s.attempt,
        "started_at": s.started_at,
        "ended_at": s.ended_at,
        "output": s.output,
        "error": s.error,
        "retry_at": s.retry_at,
    }


def _gate_row(run: Run, g: GateResult) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "gate_id": g.gate_id,
        "status": g.status.value,
        "observed_value": g.observed_value,
        "message": g.message,
        "decided_at": g.decided_at,
    }


def _event_row(e: Event) -> dict[str, Any]:
    assert e.run_status is not None and e.sequence > 0, "events are applied before they are stored"
    return {
        "run_id": e.run_id,
        "sequence": e.sequence,
        "type": e.type.value,
        "time": e.time,
        "step_id": e.step_id,
        "gate_id": e.gate_id,
        "attempt": e.attempt,
        "run_status": e.run_status.value,
        "details": dict(e.details),
    }


def _event_from_row(r: Any) -> Event:
    return Event(
        type=EventType(r["type"]),
        time=codec.utc(r["time"]) or r["time"],
        step_id=r["step_id"],
        gate_id=r["gate_id"],
        attempt=r["attempt"],
        details=r["details"],
        sequence=r["sequence"],
        run_id=r["run_id"],
        run_status=RunStatus(r["run_status"]),
    )


def _sqlite_engines(url: str | URL) -> tuple[sa.Engine, sa.Engine]:
    """The writer's and the readers' engines on the same file, with the pysqlite driver.

    pysqlite's own transaction handling is switched off (isolation_level None) so SQLAlchemy
    issues BEGIN itself: BEGIN IMMEDIATE for the writer, which takes the write lock up front
    (no deadlock-prone lock upgrades with another process), plain BEGIN for readers.
    """
    sync_url = make_url(url).set(drivername="sqlite")
    made = []
    for begin in ("BEGIN IMMEDIATE", "BEGIN"):
        engine = sa.create_engine(
            sync_url, connect_args={"check_same_thread": False, **_busy_timeout(sync_url)}
        )
        sa_event.listen(engine, "connect", _sqlite_pragmas)
        sa_event.listen(engine, "connect", _manual_transactions)
        sa_event.listen(engine, "begin", lambda conn, sql=begin: conn.exec_driver_sql(sql))
        made.append(engine)
    return made[0], made[1]


def _manual_transactions(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None


def create_engine(url: str | URL, **options: Any) -> AsyncEngine:
    """An async engine for `url` (any form `urls` accepts). For SQLite, creates the file and
    its folder and sets the pragmas a server needs (WAL, a busy timeout, foreign keys, full
    fsync on commit). StoreSetupError for a URL or SQLite file the store cannot use."""
    parsed = urls.normalize(url)
    path = urls.sqlite_path(parsed)
    sqlite = path is not None
    if path is not None:
        sqlite_file.check(path)
    engine = create_async_engine(
        parsed,
        pool_pre_ping=not sqlite,
        connect_args=_busy_timeout(parsed) if sqlite else {},
        **options,
    )
    if sqlite:
        sa_event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


# How long a SQLite write waits for another connection's lock before it fails (and the engine
# retries it): the URL's `?timeout=SECONDS`, as pysqlite reads it, or this.
SQLITE_BUSY_TIMEOUT_SECONDS = 5.0


def _busy_timeout(url: URL) -> dict[str, Any]:
    return {} if "timeout" in url.query else {"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    sqlite_wal.pragmas(cursor)
    cursor.close()
