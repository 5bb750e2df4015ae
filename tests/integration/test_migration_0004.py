"""Migration 0004 moves runs' template copies into template_snapshots: a database at 0003
with runs comes out with every run, step, gate, event and outbox record, each run with the
template it had, and one stored body per distinct template."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from sluice.engine.model import GateAction, GateSpec, GateType, Operator, StepSpec, Template
from sluice.store import codec, migrate
from sluice.store.factory import create_engine, open_store

# Schema and migration tests start from an empty file, not from the migrated copy.
pytestmark = pytest.mark.empty_database

T0 = datetime(2026, 2, 1, 8, tzinfo=UTC)
Json = sa.JSON().with_variant(JSONB(), "postgresql")

# The tables as they were at 0003 (only the columns these rows need are named; the rest have
# no NOT NULL constraint).
RUNS = sa.table(
    "runs", *(sa.column(c) for c in (
        "id", "owner", "template_id", "template_version", "status", "error", "pause_reason",
        "paused_gate_id", "created_at", "last_sequence", "version", "request_id",
    )), sa.column("template", Json), sa.column("params", Json), sa.column("options", Json),
)  # fmt: skip
STEPS = sa.table("step_runs", *(sa.column(c) for c in ("run_id", "step_id", "position", "status", "attempt", "error")), sa.column("output", Json))  # fmt: skip
GATES = sa.table("gate_results", *(sa.column(c) for c in ("run_id", "gate_id", "position", "status", "message")))  # fmt: skip
EVENTS = sa.table("events", *(sa.column(c) for c in ("run_id", "sequence", "type", "time", "step_id", "gate_id", "attempt", "run_status")), sa.column("details", Json))  # fmt: skip
OUTBOX = sa.table("outbox", *(sa.column(c) for c in ("run_id", "step_id", "kind", "channel", "created_at")), sa.column("payload", Json))  # fmt: skip

GATE = GateSpec("g", GateType.THRESHOLD, "a", GateAction.PAUSE, metric="score",
                operator=Operator.GTE, threshold=0.5)  # fmt: skip
SHARED = Template("shared", version=2, owner="alice", created_at=T0,
                  steps=(StepSpec("a", "sleep", config={"x": [1, 2.5, "ü"]}),), gates=(GATE,))  # fmt: skip
INLINE = Template("inline", steps=(StepSpec("a", "sleep"), StepSpec("b", "fail", dependencies=("a",))))  # fmt: skip


def _run(n: int, template: Template) -> dict[str, Any]:
    return {
        "id": f"00000000-0000-4000-8000-{n:012d}", "owner": "alice", "template_id": template.id,
        "template_version": template.version, "template": codec.template_to_json(template),
        "params": {"n": n}, "status": "COMPLETED", "options": {}, "error": "",
        "pause_reason": "", "paused_gate_id": "", "created_at": T0 + timedelta(minutes=n),
        "last_sequence": 2, "version": 1, "request_id": f"req-{n}",
    }  # fmt: skip


async def test_runs_at_0003_keep_their_templates_and_logs(database_url: str) -> None:
    runs = [_run(1, SHARED), _run(2, SHARED), _run(3, INLINE), _run(4, SHARED)]
    engine = create_engine(database_url)
    try:
        await migrate.upgrade(engine, "0003")
        async with engine.begin() as conn:
            await conn.execute(RUNS.insert(), runs)
            for r in runs:
                run_id = r["id"]
                await conn.execute(STEPS.insert(), [{"run_id": run_id, "step_id": "a", "position": 0, "status": "COMPLETED", "attempt": 1, "error": "", "output": {"score": 0.9}}])  # fmt: skip
                await conn.execute(GATES.insert(), [{"run_id": run_id, "gate_id": "g", "position": 0, "status": "PASSED", "message": "ok"}])  # fmt: skip
                await conn.execute(EVENTS.insert(), [{"run_id": run_id, "sequence": s, "type": "WORKFLOW_CREATED", "time": r["created_at"], "step_id": "", "gate_id": "", "attempt": 0, "run_status": "COMPLETED", "details": {"s": s}} for s in (1, 2)])  # fmt: skip
                await conn.execute(OUTBOX.insert(), [{"run_id": run_id, "step_id": "a", "kind": "post", "channel": "blog", "created_at": r["created_at"], "payload": {"n": 1}}])  # fmt: skip
    finally:
        await engine.dispose()

    store = await open_store(database_url, migrate=True)
    try:
        for r in runs:
            back = await store.get_run("alice", r["id"])
            assert back is not None, f"run {r['id']} was lost"
            assert codec.template_to_json(back.template) == r["template"]
            assert (back.params, back.request_id, back.last_sequence) == ({"n": r["params"]["n"]}, r["request_id"], 2)  # fmt: skip
            assert back.steps["a"].output == {"score": 0.9}
            assert back.gates["g"].message == "ok"
            assert [e.details for e in await store.list_events(r["id"], 0, 10)] == [{"s": 1}, {"s": 2}]  # fmt: skip
            assert len(await store.list_outbox(r["id"])) == 1
    finally:
        await store.close()

    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            counts = {
                table: (await conn.execute(sa.text(f"SELECT count(*) FROM {table}"))).scalar_one()
                for table in ("runs", "template_snapshots", "step_runs", "gate_results", "events", "outbox")
            }  # fmt: skip
    finally:
        await engine.dispose()
    assert counts == {"runs": 4, "template_snapshots": 2, "step_runs": 4, "gate_results": 4,
                      "events": 8, "outbox": 4}  # fmt: skip
