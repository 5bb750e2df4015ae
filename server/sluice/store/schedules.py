"""Schedules' SQL (SQLite and PostgreSQL alike): the schedules, their slots, and the claim.

A slot fires once because claiming it is an INSERT into `schedule_fires` keyed by (owner,
schedule, slot), in the same transaction that moves the schedule's `next_fire_at` past it. On
PostgreSQL the claim reads due schedules `FOR UPDATE SKIP LOCKED`, so servers looking at the
same moment split the due schedules instead of queueing on them; SQLite serves one server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from sluice.engine.model import ExecutionOptions
from sluice.engine.schedules import (
    FIRE_HISTORY,
    RECENT_FIRES,
    Claimed,
    Fire,
    FireStatus,
    OverlapPolicy,
    Planner,
    Schedule,
)
from sluice.store.codec import utc
from sluice.store.executors import Executor
from sluice.store.schema import schedule_fires, schedules


class SqlScheduleStore:
    """`engine.schedules.ScheduleStore` on either database."""

    def __init__(self, executor: Executor) -> None:
        self._db = executor

    async def create(self, schedule: Schedule) -> bool:
        """Store a new schedule; False (nothing written) when the owner has one by that id."""

        def insert(conn: sa.Connection) -> bool:
            if _load(conn, schedule.owner, schedule.id) is not None:
                return False
            conn.execute(schedules.insert(), _row(schedule))
            return True

        return await self._db.write(insert)

    async def get(self, owner: str, schedule_id: str) -> Schedule | None:
        def load(conn: sa.Connection) -> Schedule | None:
            found = _load(conn, owner, schedule_id)
            if found is not None:
                found.recent = _recent(conn, owner, schedule_id)
            return found

        return await self._db.read(load)

    async def page(self, owner: str, *, limit: int, after: str) -> list[Schedule]:
        """The owner's schedules by id after `after`, at most `limit` (without recent fires)."""
        query = (
            sa.select(schedules)
            .where(schedules.c.owner == owner, schedules.c.id > after)
            .order_by(schedules.c.id)
            .limit(limit)
        )
        return await self._db.read(
            lambda conn: [_schedule(r) for r in conn.execute(query).mappings()]
        )

    async def set_paused(
        self,
        owner: str,
        schedule_id: str,
        *,
        paused: bool,
        reason: str,
        next_fire_at: Callable[[Schedule], datetime | None],
        now: datetime,
    ) -> Schedule | None:
        """Pause or resume (`next_fire_at` of the schedule as found); None when not found.
        Asking for the state it is in changes nothing."""

        def update(conn: sa.Connection) -> Schedule | None:
            found = _load(conn, owner, schedule_id, lock=True)
            if found is None or found.paused == paused:
                return found
            values: dict[str, Any] = {
                "paused": paused,
                "pause_reason": reason if paused else "",
                "next_fire_at": None if paused else next_fire_at(found),
                "updated_at": now,
            }
            conn.execute(_where(schedules.update(), owner, schedule_id).values(values))
            return replace(
                found,
                paused=paused,
                pause_reason=values["pause_reason"],
                next_fire_at=values["next_fire_at"],
                updated_at=now,
            )

        return await self._db.write(update)

    async def update(self, schedule: Schedule, *, expected: datetime) -> bool:
        row = _row(schedule)
        values = {k: row[k] for k in _SETTING_COLUMNS}
        statement = (
            _where(schedules.update(), schedule.owner, schedule.id)
            .where(schedules.c.updated_at == expected)
            .values(values)
        )
        return await self._db.write(lambda conn: conn.execute(statement).rowcount == 1)

    async def delete(self, owner: str, schedule_id: str) -> bool:
        def delete(conn: sa.Connection) -> bool:
            fires = schedule_fires.delete().where(
                schedule_fires.c.owner == owner, schedule_fires.c.schedule_id == schedule_id
            )
            conn.execute(fires)
            return conn.execute(_where(schedules.delete(), owner, schedule_id)).rowcount > 0

        return await self._db.write(delete)

    async def earliest(self) -> datetime | None:
        """The earliest next slot of any schedule not paused."""
        query = sa.select(sa.func.min(schedules.c.next_fire_at))
        return await self._db.read(lambda conn: utc(conn.execute(query).scalar()))

    async def claim_due(self, now: datetime, planner: Planner, *, limit: int) -> list[Claimed]:
        """Claim the due slots of up to `limit` due schedules: record them PENDING (and the
        missed ones MISSED) and move each schedule's next slot on, in one transaction."""
        query = (
            sa.select(schedules)
            .where(schedules.c.next_fire_at <= now)
            .order_by(schedules.c.next_fire_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )

        def claim(conn: sa.Connection) -> list[Claimed]:
            claimed: list[Claimed] = []
            for row in conn.execute(query).mappings().all():
                schedule = _schedule(row)
                assert schedule.next_fire_at is not None  # the query's condition
                plan = planner(schedule, now)
                if plan.missed_first is not None:
                    count = plan.missed_count
                    more = "or more " if count >= 10_000 else ""
                    _insert_fire(
                        conn,
                        Fire(
                            schedule.id,
                            plan.missed_first,
                            FireStatus.MISSED,
                            now,
                            message=f"{count} {more}slot(s) from this one on were older than "
                            f"the catch-up window ({schedule.catchup_window}) when the "
                            "schedule was next looked at",
                        ),
                        schedule.owner,
                    )
                for slot in plan.fire:
                    fire = Fire(schedule.id, slot, FireStatus.PENDING, now)
                    if _insert_fire(conn, fire, schedule.owner):
                        claimed.append(Claimed(schedule, slot))
                conn.execute(
                    schedule_fires.delete().where(
                        schedule_fires.c.owner == schedule.owner,
                        schedule_fires.c.schedule_id == schedule.id,
                        schedule_fires.c.slot < now - FIRE_HISTORY,
                        schedule_fires.c.status != FireStatus.PENDING.value,
                    )
                )
                values: dict[str, Any] = {"next_fire_at": plan.next_fire_at}
                if plan.fire:
                    values["last_fire_at"] = plan.fire[-1]
                conn.execute(_where(schedules.update(), schedule.owner, schedule.id).values(values))
            return claimed

        return await self._db.write(claim)

    async def claim_trigger(self, owner: str, schedule_id: str, now: datetime) -> Claimed | None:
        """A PENDING slot at `now` for TriggerSchedule; None when the schedule is not found."""

        def claim(conn: sa.Connection) -> Claimed | None:
            found = _load(conn, owner, schedule_id)
            if found is None:
                return None
            _insert_fire(
                conn, Fire(schedule_id, now, FireStatus.PENDING, now, triggered=True), owner
            )
            return Claimed(found, now, triggered=True)

        return await self._db.write(claim)

    async def stale_pending(self, before: datetime, *, limit: int) -> list[Claimed]:
        """Slots claimed before `before` and still PENDING: their server stopped between the
        claim and the run's start. Whoever starts them gets the same run (its request id)."""
        query = (
            sa.select(schedule_fires.c.slot, schedule_fires.c.triggered, *schedules.c)
            .join(
                schedules,
                sa.and_(
                    schedules.c.owner == schedule_fires.c.owner,
                    schedules.c.id == schedule_fires.c.schedule_id,
                ),
            )
            .where(
                schedule_fires.c.status == FireStatus.PENDING.value,
                schedule_fires.c.recorded_at < before,
            )
            .order_by(schedule_fires.c.recorded_at)
            .limit(limit)
        )

        def load(conn: sa.Connection) -> list[Claimed]:
            return [
                Claimed(_schedule(r), utc_required(r["slot"]), bool(r["triggered"]))
                for r in conn.execute(query).mappings()
            ]

        return await self._db.read(load)

    async def finish(self, owner: str, fire: Fire) -> None:
        """Record what became of a claimed slot; a started run becomes the schedule's last run
        unless a later slot's run already is."""

        def update(conn: sa.Connection) -> None:
            conn.execute(
                schedule_fires.update()
                .where(
                    schedule_fires.c.owner == owner,
                    schedule_fires.c.schedule_id == fire.schedule_id,
                    schedule_fires.c.slot == fire.slot,
                )
                .values(
                    status=fire.status.value,
                    run_id=fire.run_id,
                    message=fire.message,
                    recorded_at=fire.recorded_at,
                )
            )
            if fire.status is FireStatus.STARTED:
                later = schedules.c.last_run_slot
                conn.execute(
                    _where(schedules.update(), owner, fire.schedule_id)
                    .where(sa.or_(later.is_(None), later <= fire.slot))
                    .values(last_run_id=fire.run_id, last_run_slot=fire.slot)
                )

        await self._db.write(update)


# What UpdateSchedule writes: the settings, and the times they decide.
_SETTING_COLUMNS = (
    "description",
    "template_id",
    "template_version",
    "params",
    "cron",
    "time_zone",
    "overlap",
    "catchup_seconds",
    "options",
    "next_fire_at",
    "updated_at",
)


def utc_required(value: datetime) -> datetime:
    found = utc(value)
    assert found is not None
    return found


def _where(statement: Any, owner: str, schedule_id: str) -> Any:
    return statement.where(schedules.c.owner == owner, schedules.c.id == schedule_id)


def _load(
    conn: sa.Connection, owner: str, schedule_id: str, *, lock: bool = False
) -> Schedule | None:
    query = _where(sa.select(schedules), owner, schedule_id)
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    return _schedule(row) if row is not None else None


def _recent(conn: sa.Connection, owner: str, schedule_id: str) -> list[Fire]:
    query = (
        sa.select(schedule_fires)
        .where(schedule_fires.c.owner == owner, schedule_fires.c.schedule_id == schedule_id)
        .order_by(schedule_fires.c.slot.desc())
        .limit(RECENT_FIRES)
    )
    return [_fire(r) for r in conn.execute(query).mappings()]


def _insert_fire(conn: sa.Connection, fire: Fire, owner: str) -> bool:
    """Insert the slot's row unless it exists; whether this call inserted it."""
    exists = conn.execute(
        sa.select(schedule_fires.c.slot).where(
            schedule_fires.c.owner == owner,
            schedule_fires.c.schedule_id == fire.schedule_id,
            schedule_fires.c.slot == fire.slot,
        )
    ).first()
    if exists is not None:
        return False
    conn.execute(
        schedule_fires.insert(),
        {
            "owner": owner,
            "schedule_id": fire.schedule_id,
            "slot": fire.slot,
            "status": fire.status.value,
            "triggered": fire.triggered,
            "run_id": fire.run_id,
            "message": fire.message,
            "recorded_at": fire.recorded_at,
        },
    )
    return True


def _row(s: Schedule) -> dict[str, Any]:
    return {
        "owner": s.owner,
        "id": s.id,
        "description": s.description,
        "template_id": s.template_id,
        "template_version": s.template_version,
        "params": s.params,
        "cron": s.cron,
        "time_zone": s.time_zone,
        "overlap": s.overlap.value,
        "catchup_seconds": s.catchup_window.total_seconds(),
        "options": {
            "autoApprove": s.options.auto_approve,
            "notifyOnCompletion": s.options.notify_on_completion,
        },
        "paused": s.paused,
        "pause_reason": s.pause_reason,
        "next_fire_at": s.next_fire_at,
        "last_fire_at": s.last_fire_at,
        "last_run_id": s.last_run_id,
        "last_run_slot": None,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
    }


def _schedule(r: sa.RowMapping) -> Schedule:
    options = r["options"] or {}
    return Schedule(
        owner=r["owner"],
        id=r["id"],
        description=r["description"],
        template_id=r["template_id"],
        template_version=r["template_version"],
        params=dict(r["params"] or {}),
        cron=r["cron"],
        time_zone=r["time_zone"],
        overlap=OverlapPolicy(r["overlap"]),
        catchup_window=timedelta(seconds=r["catchup_seconds"]),
        options=ExecutionOptions(
            auto_approve=bool(options.get("autoApprove")),
            notify_on_completion=bool(options.get("notifyOnCompletion")),
        ),
        paused=bool(r["paused"]),
        pause_reason=r["pause_reason"],
        next_fire_at=utc(r["next_fire_at"]),
        last_fire_at=utc(r["last_fire_at"]),
        last_run_id=r["last_run_id"],
        created_at=utc(r["created_at"]),
        updated_at=utc(r["updated_at"]),
    )


def _fire(r: sa.RowMapping) -> Fire:
    return Fire(
        schedule_id=r["schedule_id"],
        slot=utc_required(r["slot"]),
        status=FireStatus(r["status"]),
        recorded_at=utc_required(r["recorded_at"]),
        run_id=r["run_id"],
        message=r["message"],
        triggered=bool(r["triggered"]),
    )
