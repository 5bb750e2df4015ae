"""Two servers on one PostgreSQL database share a schedule that fires every second: for about
ten seconds each slot starts exactly one run, and no slot between the first and the last is
missing, whichever server claimed it.

PostgreSQL only (SQLite serves one server): run by `make test-postgres`."""

from __future__ import annotations

import os
from collections import Counter
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from sluice.client import WorkflowClient
from sluice.v1 import schedule_pb2
from tests.conftest import ServerFactory
from tests.support.eventually import eventually
from tests.support.templates import step, template

pytestmark = pytest.mark.skipif(
    not os.environ.get("SLUICE_TEST_DATABASE_URL", "").startswith("postgresql"),
    reason="several servers need PostgreSQL (make test-postgres)",
)

SECONDS = 10
PENDING = schedule_pb2.SCHEDULE_FIRE_STATUS_PENDING


async def test_two_servers_fire_each_slot_of_an_every_second_schedule_once(
    start_server: ServerFactory, database_url: str
) -> None:
    # Short renewals: each server's loop also looks again at every renewal, as a replica that
    # did not create (and so was not woken by) the schedule does.
    a = await start_server(lease_ttl=timedelta(seconds=3), lease_renew=timedelta(seconds=0.5))
    b = await start_server(lease_ttl=timedelta(seconds=3), lease_renew=timedelta(seconds=0.5))
    async with WorkflowClient([a.address, b.address]) as client:
        await client.create_template(template("tick", step("a")))
        await client.create_schedule("every-second", "tick", "* * * * * *", overlap="allow")

        async def first_slot() -> datetime | None:
            fires = (await client.get_schedule("every-second")).recent_fires
            return fires[-1].slot_time.ToDatetime() if fires else None

        async def fired_for(first: datetime, seconds: int) -> bool:
            fires = (await client.get_schedule("every-second")).recent_fires  # newest first
            return fires[0].slot_time.ToDatetime() - first >= timedelta(seconds=seconds)

        first = await eventually(first_slot)
        await eventually(lambda: fired_for(first, SECONDS), timeout=SECONDS + 20, every=0.2)
        await client.pause_schedule("every-second")

        async def settled() -> bool:
            fires = (await client.get_schedule("every-second")).recent_fires
            return all(f.status != PENDING for f in fires)

        await eventually(settled)

    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            fires = (
                await conn.execute(
                    sa.text("SELECT slot, status, run_id FROM schedule_fires ORDER BY slot")
                )
            ).all()
            runs = (
                await conn.execute(
                    sa.text(
                        "SELECT request_id, lease_owner FROM runs "
                        "WHERE request_id LIKE 'schedule/every-second/%'"
                    )
                )
            ).all()
    finally:
        await engine.dispose()

    slots = [row.slot for row in fires]
    assert len(slots) > SECONDS
    # Every second from the first slot to the last, each once, each with a run of its own.
    assert [(s - slots[0]).total_seconds() for s in slots] == list(range(len(slots)))
    assert {row.status for row in fires} == {"STARTED"}
    assert len({row.run_id for row in fires}) == len(slots)
    per_slot = Counter(row.request_id for row in runs)
    assert len(per_slot) == len(slots)
    assert set(per_slot.values()) == {1}, per_slot
    print("runs created by server:", Counter(row.lease_owner for row in runs))
