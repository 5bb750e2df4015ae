"""The Store on SQLAlchemy 2 (async Core): SQLite through aiosqlite, PostgreSQL through asyncpg.

All SQL of the service lives in this package. A transition is one transaction of a few
statements: a compare-and-set UPDATE of the run, executemany UPDATEs of the steps and gates it
touched, and multi-row INSERTs of its events and outbox records.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from sluice.engine.errors import Conflict
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
from sluice.engine.ports import RunPage
from sluice.store import codec
from sluice.store import migrate as migrate_schema
from sluice.store.schema import events, gate_results, outbox, runs, step_runs, templates

_TERMINAL_EVENTS = frozenset(
    {EventType.WORKFLOW_COMPLETED, EventType.WORKFLOW_FAILED, EventType.WORKFLOW_CANCELLED}
)


class SqlStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        # SQLite has one writer at a time; queueing our own writers here, rather than in
        # SQLite's busy loop, keeps latency flat and avoids SQLITE_BUSY on lock upgrades.
        self._write_lock = asyncio.Lock() if self._sqlite else None

    @classmethod
    async def open(cls, url: str, *, migrate: bool = False) -> SqlStore:
        """Connect and make sure the schema is one this code runs on: an empty database is
        created at the latest revision, an older one is upgraded only with `migrate`, a newer
        one is refused (SchemaError)."""
        engine = create_engine(url)
        try:
            await migrate_schema.prepare(engine, migrate=migrate)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine)

    async def close(self) -> None:
        await self._engine.dispose()

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        async with contextlib.AsyncExitStack() as stack:
            if self._write_lock is not None:
                await stack.enter_async_context(self._write_lock)
            conn = await stack.enter_async_context(self._engine.begin())
            yield conn

    # --- runs ---------------------------------------------------------------------------------

    async def create_run(self, run: Run, new_events: Sequence[Event]) -> Run:
        try:
            return await self._insert_run(run, new_events)
        except IntegrityError:
            # Two calls with one request_id raced (possible on PostgreSQL): the winner's run.
            if not run.request_id:
                raise
            async with self._engine.connect() as conn:
                existing = await self._run_id_for_request(conn, run.owner, run.request_id)
                found = await self._load_run(conn, run.owner, existing) if existing else None
            if found is None:
                raise
            return found

    async def _insert_run(self, run: Run, new_events: Sequence[Event]) -> Run:
        async with self._write() as conn:
            if run.request_id:
                existing = await self._run_id_for_request(conn, run.owner, run.request_id)
                if existing is not None:
                    found = await self._load_run(conn, run.owner, existing)
                    assert found is not None
                    return found
            await conn.execute(runs.insert().values(**_run_row(run), **_run_identity(run)))
            await conn.execute(
                step_runs.insert(),
                [_step_row(run, s) | {"position": i} for i, s in enumerate(run.steps.values())],
            )
            if run.gates:
                await conn.execute(
                    gate_results.insert(),
                    [_gate_row(run, g) | {"position": i} for i, g in enumerate(run.gates.values())],
                )
            await conn.execute(events.insert(), [_event_row(e) for e in new_events])
        return run

    async def commit(
        self,
        run: Run,
        new_events: Sequence[Event],
        publications: Sequence[tuple[str, Publication]] = (),
    ) -> None:
        step_ids = {e.step_id for e in new_events if e.step_id}
        ends = any(e.type in _TERMINAL_EVENTS for e in new_events)
        gate_ids = set(run.gates) if ends else {e.gate_id for e in new_events if e.gate_id}
        try:
            async with self._write() as conn:
                result = await conn.execute(
                    runs.update()
                    .where(runs.c.id == run.id, runs.c.version == run.version - 1)
                    .values(**_run_row(run))
                )
                if result.rowcount != 1:
                    raise Conflict(f"workflow {run.id} was changed by another writer")
                if step_ids:
                    rows = [_step_row(run, run.steps[s]) for s in sorted(step_ids)]
                    await _update_children(conn, step_runs, "step_id", rows)
                if gate_ids:
                    rows = [_gate_row(run, run.gates[g]) for g in sorted(gate_ids)]
                    await _update_children(conn, gate_results, "gate_id", rows)
                if new_events:
                    await conn.execute(events.insert(), [_event_row(e) for e in new_events])
                if publications:
                    now = run.updated_at
                    await conn.execute(
                        outbox.insert(),
                        [
                            {
                                "run_id": run.id,
                                "step_id": step_id,
                                "kind": p.kind,
                                "channel": p.channel,
                                "payload": dict(p.payload),
                                "created_at": now,
                            }
                            for step_id, p in publications
                        ],
                    )
        except IntegrityError as exc:  # a duplicate event sequence: someone else won the race
            raise Conflict(f"workflow {run.id} was changed by another writer") from exc

    async def get_run(self, owner: str, run_id: str) -> Run | None:
        async with self._engine.connect() as conn:
            return await self._load_run(conn, owner, run_id)

    async def list_runs(
        self,
        owner: str,
        *,
        statuses: Sequence[RunStatus],
        template_id: str,
        limit: int,
        after: tuple[datetime, str] | None,
    ) -> RunPage:
        query = sa.select(runs).where(runs.c.owner == owner)
        if statuses:
            query = query.where(runs.c.status.in_([s.value for s in statuses]))
        if template_id:
            query = query.where(runs.c.template_id == template_id)
        if after is not None:
            created, last_id = after
            query = query.where(
                sa.or_(
                    runs.c.created_at < created,
                    sa.and_(runs.c.created_at == created, runs.c.id < last_id),
                )
            )
        query = query.order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit + 1)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
            found = await self._hydrate(conn, rows[:limit])
        more = len(rows) > limit
        cursor = (found[-1].created_at, found[-1].id) if more and found else None
        return RunPage(found, cursor)

    async def count_active_runs(self, owner: str) -> int:
        active = [RunStatus.PENDING.value, RunStatus.RUNNING.value, RunStatus.PAUSED.value]
        query = sa.select(sa.func.count()).where(runs.c.owner == owner, runs.c.status.in_(active))
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def unfinished_runs(self) -> list[Run]:
        query = sa.select(runs).where(
            runs.c.status.in_([RunStatus.RUNNING.value, RunStatus.PAUSED.value])
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query.order_by(runs.c.created_at))).mappings().all()
            return await self._hydrate(conn, rows)

    async def list_events(self, run_id: str, after_sequence: int, limit: int) -> list[Event]:
        query = (
            sa.select(events)
            .where(events.c.run_id == run_id, events.c.sequence > after_sequence)
            .order_by(events.c.sequence)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_event_from_row(r) for r in rows]

    async def list_outbox(self, run_id: str) -> list[dict[str, Any]]:
        query = sa.select(outbox).where(outbox.c.run_id == run_id).order_by(outbox.c.id)
        async with self._engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings().all()]

    async def _run_id_for_request(
        self, conn: AsyncConnection, owner: str, request_id: str
    ) -> str | None:
        query = sa.select(runs.c.id).where(runs.c.owner == owner, runs.c.request_id == request_id)
        return (await conn.execute(query)).scalar_one_or_none()

    async def _load_run(self, conn: AsyncConnection, owner: str, run_id: str) -> Run | None:
        query = sa.select(runs).where(runs.c.id == run_id, runs.c.owner == owner)
        row = (await conn.execute(query)).mappings().one_or_none()
        if row is None:
            return None
        return (await self._hydrate(conn, [row]))[0]

    async def _hydrate(self, conn: AsyncConnection, rows: Sequence[Any]) -> list[Run]:
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        step_rows = (
            (
                await conn.execute(
                    sa.select(step_runs)
                    .where(step_runs.c.run_id.in_(ids))
                    .order_by(step_runs.c.position)
                )
            )
            .mappings()
            .all()
        )
        gate_rows = (
            (
                await conn.execute(
                    sa.select(gate_results)
                    .where(gate_results.c.run_id.in_(ids))
                    .order_by(gate_results.c.position)
                )
            )
            .mappings()
            .all()
        )
        steps_by_run: dict[str, dict[str, StepRun]] = {i: {} for i in ids}
        for s in step_rows:
            steps_by_run[s["run_id"]][s["step_id"]] = StepRun(
                step_id=s["step_id"],
                status=StepStatus(s["status"]),
                attempt=s["attempt"],
                started_at=codec.utc(s["started_at"]),
                ended_at=codec.utc(s["ended_at"]),
                output=s["output"],
                error=s["error"],
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
                template=codec.template_from_json(r["template"]),
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
            )
            for r in rows
        ]

    # --- templates ----------------------------------------------------------------------------

    async def add_template(self, template: Template) -> Template:
        async with self._write() as conn:
            latest = (
                await conn.execute(
                    sa.select(sa.func.max(templates.c.version)).where(
                        templates.c.owner == template.owner, templates.c.id == template.id
                    )
                )
            ).scalar_one_or_none()
            stored = _with_version(template, (latest or 0) + 1)
            await conn.execute(
                templates.insert().values(
                    owner=stored.owner,
                    id=stored.id,
                    version=stored.version,
                    body=codec.template_to_json(stored),
                    created_at=stored.created_at,
                )
            )
        return stored

    async def get_template(self, owner: str, template_id: str, version: int) -> Template | None:
        query = sa.select(templates.c.body).where(
            templates.c.owner == owner, templates.c.id == template_id
        )
        if version:
            query = query.where(templates.c.version == version)
        query = query.order_by(templates.c.version.desc()).limit(1)
        async with self._engine.connect() as conn:
            body = (await conn.execute(query)).scalar_one_or_none()
        return codec.template_from_json(body) if body is not None else None

    async def list_templates(self, owner: str) -> list[Template]:
        latest = (
            sa.select(templates.c.id, sa.func.max(templates.c.version).label("version"))
            .where(templates.c.owner == owner)
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
        async with self._engine.connect() as conn:
            bodies = (await conn.execute(query)).scalars().all()
        return [codec.template_from_json(b) for b in bodies]


# --- rows -------------------------------------------------------------------------------------


async def _update_children(
    conn: AsyncConnection, table: sa.Table, key: str, rows: list[dict[str, Any]]
) -> None:
    """One executemany UPDATE of a run's step or gate rows, keyed by (run_id, `key`)."""
    fields = [name for name in rows[0] if name not in ("run_id", key)]
    statement = (
        table.update()
        .where(table.c.run_id == sa.bindparam("b_run_id"), table.c[key] == sa.bindparam("b_key"))
        .values({name: sa.bindparam(name) for name in fields})
    )
    await conn.execute(
        statement,
        [{"b_run_id": r["run_id"], "b_key": r[key], **{f: r[f] for f in fields}} for r in rows],
    )


def _run_identity(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "owner": run.owner,
        "template_id": run.template.id,
        "template_version": run.template.version,
        "template": codec.template_to_json(run.template),
        "params": run.params,
        "created_at": run.created_at,
        "request_id": run.request_id or None,
    }


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


def _with_version(template: Template, version: int) -> Template:
    from dataclasses import replace

    return replace(template, version=version)


def create_engine(url: str) -> AsyncEngine:
    """An async engine for `url`; for SQLite, creates the file's folder and sets the pragmas a
    server needs (WAL, a busy timeout, foreign keys, full fsync on commit)."""
    parsed = make_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, pool_pre_ping=not sqlite)
    if sqlite:
        sa_event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
