"""Domain values <-> table rows: what every SQL store writes and reads, whatever the database."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sluice.engine.model import (
    Event,
    EventType,
    GateResult,
    GateStatus,
    Run,
    RunStatus,
    StepRun,
    StepStatus,
    Template,
)
from sluice.engine.ports import TaskRecord, TaskState
from sluice.store import codec


def run_identity(run: Run) -> dict[str, Any]:
    """The columns a run is created with and never changes."""
    return {
        "id": run.id,
        "owner": run.owner,
        "template_id": run.template.id,
        "template_version": run.template.version,
        "template_key": snapshot(run.template).key,
        "params": run.params,
        "created_at": run.created_at,
        "request_id": run.request_id or None,
        "request_hash": run.request_hash or None,
        "lease_owner": None,
        "lease_epoch": 0,
        "rerun_of": run.rerun_of or None,
        "rerun_from_step": run.rerun_from_step or None,
        "trace_context": dict(run.trace_context) or None,
    }


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A template as runs keep it: its JSON body and the key it is stored under."""

    key: str
    body: dict[str, Any]

    def row(self) -> dict[str, Any]:
        return {"key": self.key, "body": self.body}


@lru_cache(maxsize=1024)
def snapshot(template: Template) -> Snapshot:
    """Built once per template (they never change, and every run of a registered template
    shares one object); the body is only ever serialized, never changed."""
    body = codec.template_to_json(template)
    return Snapshot(snapshot_key(body), body)


def snapshot_key(body: dict[str, Any]) -> str:
    """SHA-256 of the body as canonical JSON: equal bodies share a key, whatever their order.
    (Migration 0004 computes the same for the runs it moves; keep the two in step.)"""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def run_row(run: Run) -> dict[str, Any]:
    """The columns a transition may change."""
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


def step_row(run: Run, s: StepRun) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "step_id": s.step_id,
        "status": s.status.value,
        "attempt": s.attempt,
        "started_at": s.started_at,
        "ended_at": s.ended_at,
        "output": s.output,
        "error": s.error,
        "wake_at": s.wake_at,
    }


def gate_row(run: Run, g: GateResult) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "gate_id": g.gate_id,
        "status": g.status.value,
        "observed_value": g.observed_value,
        "message": g.message,
        "decided_at": g.decided_at,
        "deadline": g.deadline,
    }


def event_row(e: Event) -> dict[str, Any]:
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


def keyed(row: dict[str, Any], *keys: str) -> dict[str, Any]:
    """`row` with its key columns renamed k_<name>, as the keyed UPDATEs bind them."""
    return {(f"k_{k}" if k in keys else k): v for k, v in row.items()}


def event_from_row(r: Mapping[Any, Any]) -> Event:
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


def step_from_row(s: Mapping[Any, Any], *, output: bool) -> StepRun:
    return StepRun(
        step_id=s["step_id"],
        status=StepStatus(s["status"]),
        attempt=s["attempt"],
        started_at=codec.utc(s["started_at"]),
        ended_at=codec.utc(s["ended_at"]),
        output=s["output"] if output else None,
        error=s["error"],
        wake_at=codec.utc(s["wake_at"]),
    )


def gate_from_row(g: Mapping[Any, Any]) -> GateResult:
    return GateResult(
        gate_id=g["gate_id"],
        status=GateStatus(g["status"]),
        observed_value=g["observed_value"],
        message=g["message"],
        decided_at=codec.utc(g["decided_at"]),
        deadline=codec.utc(g["deadline"]),
    )


def run_from_row(
    r: Mapping[Any, Any],
    template: Template,
    steps: dict[str, StepRun],
    gates: dict[str, GateResult],
) -> Run:
    """A run from its row, the template its template_key names, and its steps and gates."""
    return Run(
        id=r["id"],
        owner=r["owner"],
        template=template,
        params=r["params"],
        created_at=codec.utc(r["created_at"]) or r["created_at"],
        status=RunStatus(r["status"]),
        steps=steps,
        gates=gates,
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
        rerun_of=r["rerun_of"] or "",
        rerun_from_step=r["rerun_from_step"] or "",
        trace_context=r["trace_context"] or {},
    )


def task_row(t: TaskRecord) -> dict[str, Any]:
    return {
        "run_id": t.run_id,
        "step_id": t.step_id,
        "attempt": t.attempt,
        "owner": t.owner,
        "task_type": t.task_type,
        "state": t.state.value,
        "delivery": t.delivery,
        "queued_at": t.queued_at,
        "start_by": t.start_by,
        "run_timeout": t.run_timeout.total_seconds(),
        "input": dict(t.input),
        "worker": t.worker,
        "activated_at": t.activated_at,
        "expires_at": t.expires_at,
        "acked": t.acked,
        "result": dict(t.result) if t.result is not None else None,
    }


def task_from_row(r: Mapping[Any, Any]) -> TaskRecord:
    return TaskRecord(
        run_id=r["run_id"],
        step_id=r["step_id"],
        attempt=r["attempt"],
        owner=r["owner"],
        task_type=r["task_type"],
        state=TaskState(r["state"]),
        delivery=r["delivery"],
        queued_at=_utc(r["queued_at"]),
        start_by=_utc(r["start_by"]),
        run_timeout=timedelta(seconds=r["run_timeout"]),
        input=r["input"],
        worker=r["worker"],
        activated_at=codec.utc(r["activated_at"]),
        expires_at=codec.utc(r["expires_at"]),
        acked=bool(r["acked"]),
        result=r["result"],
    )


def _utc(value: datetime) -> datetime:
    return codec.utc(value) or value
