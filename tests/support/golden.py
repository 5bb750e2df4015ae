"""Golden event histories: real runs' event logs and stored projections, kept as JSON files in
tests/golden/, replayed by tests/unit/engine/test_golden_histories.py.

A file is a record of what a past Sluice wrote: the replay test fails when a change to
`transitions.apply` would read a stored log differently, which is what a restarted server
does with every unfinished run. Record them again only for a change meant to alter stored
logs, and say so in the commit:

    .venv/bin/python -m tests.support.golden
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sluice.engine.handlers import HandlerRegistry
from sluice.engine.model import (
    Event,
    EventType,
    ExecutionOptions,
    GateAction,
    GateSpec,
    GateType,
    Operator,
    RetryPolicy,
    Run,
    RunStatus,
    StepSpec,
    Template,
)
from sluice.runtime.driver import Engine
from sluice.store import codec
from sluice.store.factory import open_store
from tests.support.handlers import Calls, register

FOLDER = Path(__file__).parent.parent / "golden"
OWNER = "golden"


@dataclass
class History:
    name: str
    description: str
    template: Template
    params: dict[str, Any]
    created_at: datetime
    events: list[Event]
    projection: dict[str, Any]  # what the store held once the run came to rest (`projection`)

    def fresh_run(self) -> Run:
        return Run.new(id=self.name, owner=OWNER, template=self.template, params=self.params,
                       now=self.created_at)  # fmt: skip


def load(path: Path) -> History:
    data = json.loads(path.read_text())
    return History(
        name=data["name"],
        description=data["description"],
        template=codec.template_from_json(data["template"]),
        params=data["params"],
        created_at=datetime.fromisoformat(data["createdAt"]),
        events=[_event_from_json(data["name"], e) for e in data["events"]],
        projection=data["projection"],
    )


def projection(run: Run) -> dict[str, Any]:
    """A run's state as JSON: what replaying its log must give back exactly."""
    return {
        "status": run.status.value,
        "options": codec.options_to_json(run.options),
        "error": run.error,
        "pauseReason": run.pause_reason,
        "pausedGateId": run.paused_gate_id,
        "startedAt": _time(run.started_at),
        "endedAt": _time(run.ended_at),
        "updatedAt": _time(run.updated_at),
        "lastSequence": run.last_sequence,
        "steps": {
            s.step_id: {"status": s.status.value, "attempt": s.attempt,
                        "startedAt": _time(s.started_at), "endedAt": _time(s.ended_at),
                        "output": s.output, "error": s.error}
            for s in run.steps.values()
        },
        "gates": {
            g.gate_id: {"status": g.status.value, "observedValue": g.observed_value,
                        "message": g.message, "decidedAt": _time(g.decided_at)}
            for g in run.gates.values()
        },
    }  # fmt: skip


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _event_to_json(e: Event) -> dict[str, Any]:
    assert e.run_status is not None
    return {"sequence": e.sequence, "type": e.type.value, "time": e.time.isoformat(),
            "stepId": e.step_id, "gateId": e.gate_id, "attempt": e.attempt,
            "runStatus": e.run_status.value, "details": dict(e.details)}  # fmt: skip


def _event_from_json(run_id: str, d: dict[str, Any]) -> Event:
    return Event(
        type=EventType(d["type"]), time=datetime.fromisoformat(d["time"]), step_id=d["stepId"],
        gate_id=d["gateId"], attempt=d["attempt"], details=d["details"],
        sequence=d["sequence"], run_id=run_id, run_status=RunStatus(d["runStatus"]),
    )  # fmt: skip


# --- recording --------------------------------------------------------------------------------

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


class _TickingClock:
    """A millisecond per reading: files that come out the same each time they are recorded."""

    def __init__(self) -> None:
        self._now = T0

    def now(self) -> datetime:
        self._now += timedelta(milliseconds=1)
        return self._now


def _sleep(seconds: float, **extra: Any) -> dict[str, Any]:
    return {"seconds": seconds, **extra}


Drive = Callable[[Engine, Calls, Run], Awaitable[None]]


async def _run_to_rest(engine: Engine, _calls: Calls, run: Run) -> None:
    await engine.execute(OWNER, run.id, ExecutionOptions(), wait=True)


async def _approve(engine: Engine, _calls: Calls, run: Run) -> None:
    paused = await engine.execute(OWNER, run.id, ExecutionOptions(), wait=True)
    assert paused.status is RunStatus.PAUSED, paused.status
    await engine.decide_gate(OWNER, run.id, paused.paused_gate_id, approve=True, wait=True)


async def _cancel(engine: Engine, _calls: Calls, run: Run) -> None:
    await engine.execute(OWNER, run.id, ExecutionOptions())
    # Cancelled once "b" has finished, while "slow" (started with it) still runs.
    async with asyncio.timeout(5):
        async for event in engine.watch(OWNER, run.id, follow=True):
            if event.type is EventType.STEP_COMPLETED and event.step_id == "b":
                break
    await engine.cancel(OWNER, run.id, "stopped by the operator")


def _cases() -> list[tuple[str, str, Template, dict[str, Any], Drive]]:
    quality = GateSpec("quality", GateType.THRESHOLD, "c", GateAction.ABORT,
                       metric="score", operator=Operator.GTE, threshold=0.8)  # fmt: skip
    review = GateSpec("review", GateType.APPROVAL, "draft", None)
    retry = RetryPolicy(max_attempts=3, initial_backoff=timedelta(milliseconds=1))
    return [
        ("parallel_dag", "a and b in parallel, c after both, its threshold gate passing",
         Template("dag", steps=(
             StepSpec("a", "sleep", config=_sleep(0)),
             StepSpec("b", "sleep", config=_sleep(0.02)),
             StepSpec("c", "sleep", config=_sleep(0, output={"score": 0.9}), dependencies=("a", "b")),
         ), gates=(quality,)), {"topic": "rivers"}, _run_to_rest),
        ("retry_then_success", "a step fails twice (transient) and succeeds on its third attempt",
         Template("retry", steps=(
             StepSpec("flaky", "flaky", config={"failures": 2}, retry=retry),
         )), {}, _run_to_rest),
        ("gate_pause_approve", "an approval gate pauses the run; approving it lets it finish",
         Template("review", steps=(
             StepSpec("draft", "sleep", config=_sleep(0, output={"text": "hello"})),
             StepSpec("publish", "sleep", config=_sleep(0), dependencies=("draft",)),
         ), gates=(review,)), {}, _approve),
        ("cancel", "cancelled while one step runs and after its sibling finished",
         Template("cancel", steps=(
             StepSpec("slow", "latch", config={"latch": "never"}),
             StepSpec("b", "sleep", config=_sleep(0)),
             StepSpec("after", "sleep", config=_sleep(0), dependencies=("slow", "b")),
         )), {}, _cancel),
        ("required_step_fails", "a required step fails: its dependent is skipped, the run fails",
         Template("fails", steps=(
             StepSpec("a", "fail", config={"permanent": True}),
             StepSpec("b", "sleep", config=_sleep(0), dependencies=("a",)),
         )), {}, _run_to_rest),
    ]  # fmt: skip


async def record(folder: Path = FOLDER) -> list[Path]:
    """Run each case on a SQLite store and write its log and stored projection."""
    written = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, description, template, params, drive in _cases():
            store = await open_store(f"sqlite:///{scratch}/{name}.db")
            calls = Calls()
            registry = HandlerRegistry()
            register(registry, calls)
            engine = Engine(store, registry, clock=_TickingClock())
            try:
                run = await engine.create_run(OWNER, template, params)
                await drive(engine, calls, run)
                stored = await store.get_run(OWNER, run.id)
                assert stored is not None and stored.status.resting
                events = await store.list_events(run.id, 0, 10_000)
            finally:
                await engine.stop()
                await store.close()
            data = {
                "name": name,
                "description": description,
                "template": codec.template_to_json(template),
                "params": params,
                "createdAt": stored.created_at.isoformat(),
                "events": [_event_to_json(e) for e in events],
                "projection": projection(stored),
            }
            path = folder / f"{name}.json"
            path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
            written.append(path)
    return written


if __name__ == "__main__":
    for path in asyncio.run(record()):
        print(path)
