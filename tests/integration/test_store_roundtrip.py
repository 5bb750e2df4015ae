"""What the store writes reads back the same, on SQLite's raw-cursor path and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sluice.engine.model import (
    Event,
    EventType,
    ExecutionOptions,
    GateAction,
    GateSpec,
    GateType,
    Operator,
    Publication,
    Run,
    StepSpec,
    Template,
)
from sluice.engine.transitions import apply
from sluice.store.factory import open_store

NOW = datetime(2026, 5, 17, 8, 30, 12, 345678, tzinfo=UTC)


async def test_a_run_and_its_transitions_read_back_unchanged(database_url: str) -> None:
    template = Template(
        id="t",
        steps=(StepSpec("a", "x", config={"n": 1.5, "s": "ünïcode"}), StepSpec("b", "x", dependencies=("a",))),
        gates=(GateSpec("g", GateType.THRESHOLD, "a", GateAction.PAUSE, metric="q", operator=Operator.GTE, threshold=0.5),),
    )  # fmt: skip
    run = Run.new(id="00000000-0000-4000-8000-0000000000aa", owner="u", template=template,
                  params={"p": [1, {"x": None}], "q": "text"}, now=NOW)  # fmt: skip
    created = [apply(run, Event(EventType.WORKFLOW_CREATED, NOW))]
    store = await open_store(database_url)
    try:
        await store.create_run(run, created)
        later = NOW + timedelta(seconds=1, microseconds=7)
        events = [
            apply(run, Event(EventType.WORKFLOW_STARTED, later, details={"autoApprove": True})),
            apply(run, Event(EventType.STEP_STARTED, later, "a", attempt=1)),
            apply(run, Event(EventType.STEP_COMPLETED, later, "a", attempt=1, details={"output": {"q": 0.25, "none": None}})),
            apply(run, Event(EventType.GATE_FAILED, later, "a", "g", details={"observedValue": 0.25, "message": "low"})),
        ]  # fmt: skip
        run.version += 1
        await store.commit(run, events, [("a", Publication("post", "blog", {"k": [1, 2]}))])

        stored = await store.get_run("u", run.id)
        assert stored is not None
        assert (stored.status, stored.options, stored.version, stored.last_sequence) == (
            run.status, ExecutionOptions(auto_approve=True), 1, 5,
        )  # fmt: skip
        assert (stored.created_at, stored.started_at, stored.updated_at) == (NOW, later, later)
        assert stored.params == run.params
        assert stored.steps == run.steps
        assert stored.gates == run.gates
        assert stored.template.step("a").config == {"n": 1.5, "s": "ünïcode"}
        read_events = await store.list_events(run.id, 0, 10)
        assert [(e.sequence, e.type, e.time, dict(e.details)) for e in read_events] == [
            (e.sequence, e.type, e.time, dict(e.details)) for e in [*created, *events]
        ]
        [record] = await store.list_outbox(run.id)
        assert (record["kind"], record["channel"], record["payload"]) == (
            "post",
            "blog",
            {"k": [1, 2]},
        )
    finally:
        await store.close()
