"""The state machine: how each event changes a run. Written once; every change goes through it.

`apply` is the only function that mutates a `Run`. Replaying a run's stored events through it
from a fresh `Run.new(...)` gives the stored projection, which is what makes the event log the
truth and the rows a cache of it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sluice.engine.errors import IllegalTransition
from sluice.engine.model import (
    Event,
    EventType,
    ExecutionOptions,
    GateStatus,
    Run,
    RunStatus,
    StepStatus,
)

R = RunStatus
S = StepStatus
G = GateStatus

# Which run statuses each workflow event may leave from, and where it goes.
RUN_TRANSITIONS: dict[EventType, tuple[frozenset[RunStatus], RunStatus]] = {
    EventType.WORKFLOW_STARTED: (frozenset({R.PENDING}), R.RUNNING),
    EventType.WORKFLOW_PAUSED: (frozenset({R.RUNNING}), R.PAUSED),
    EventType.WORKFLOW_RESUMED: (frozenset({R.PAUSED}), R.RUNNING),
    EventType.WORKFLOW_COMPLETED: (frozenset({R.RUNNING}), R.COMPLETED),
    EventType.WORKFLOW_FAILED: (frozenset({R.RUNNING, R.PAUSED}), R.FAILED),
    EventType.WORKFLOW_CANCELLED: (frozenset({R.PENDING, R.RUNNING, R.PAUSED}), R.CANCELLED),
}

# Which step statuses each step event may leave from, and where it goes. A step may start again
# while RUNNING: that is a restart after the server stopped mid-attempt (a new attempt).
STEP_TRANSITIONS: dict[EventType, tuple[frozenset[StepStatus], StepStatus]] = {
    EventType.STEP_STARTED: (frozenset({S.PENDING, S.RETRYING, S.RUNNING}), S.RUNNING),
    EventType.STEP_RETRYING: (frozenset({S.RUNNING}), S.RETRYING),
    EventType.STEP_COMPLETED: (frozenset({S.RUNNING}), S.COMPLETED),
    EventType.STEP_FAILED: (frozenset({S.RUNNING}), S.FAILED),
    EventType.STEP_SKIPPED: (frozenset({S.PENDING}), S.SKIPPED),
    EventType.STEP_CANCELLED: (frozenset({S.RUNNING, S.RETRYING}), S.CANCELLED),
}

GATE_TRANSITIONS: dict[EventType, tuple[frozenset[GateStatus], GateStatus]] = {
    EventType.GATE_PASSED: (frozenset({G.PENDING}), G.PASSED),
    # From AWAITING_APPROVAL: an approval's deadline passed with the action FAIL.
    EventType.GATE_FAILED: (frozenset({G.PENDING, G.AWAITING_APPROVAL}), G.FAILED),
    EventType.GATE_AWAITING_APPROVAL: (frozenset({G.PENDING}), G.AWAITING_APPROVAL),
    # A FAILED gate can still be approved or rejected: that is how a run paused on it goes on.
    EventType.GATE_APPROVED: (frozenset({G.PENDING, G.AWAITING_APPROVAL, G.FAILED}), G.APPROVED),
    EventType.GATE_REJECTED: (frozenset({G.AWAITING_APPROVAL, G.FAILED}), G.REJECTED),
}

# Run states in which steps and gates may still change (a step finishing while the run pauses).
_LIVE = frozenset({R.RUNNING, R.PAUSED})

# A rerun's run takes over what the run it reruns completed, as it is created (still PENDING):
# a step goes from PENDING straight to COMPLETED with the original's output, a gate to the
# original's result. Each such event names that run under this key; no other event changes a
# PENDING run's steps or gates (but the skips of a cancel).
REUSED_FROM = "reusedFrom"
REUSE_TRANSITIONS: dict[EventType, tuple[frozenset[StepStatus], StepStatus]] = {
    EventType.STEP_COMPLETED: (frozenset({S.PENDING}), S.COMPLETED),
}
REUSED_GATE_EVENTS = frozenset(
    {EventType.GATE_PASSED, EventType.GATE_FAILED, EventType.GATE_APPROVED}
)


def apply(run: Run, event: Event) -> Event:
    """Apply one event to `run` in place; return the event with its sequence and run status.

    Raises IllegalTransition, leaving `run` unchanged, when the event does not fit the state.
    """
    kind = event.type
    if REUSED_FROM in event.details:
        _apply_reused(run, event)
    elif kind in RUN_TRANSITIONS:
        _apply_run_event(run, event)
    elif kind in STEP_TRANSITIONS:
        # Cancelling a PENDING run skips its steps; nothing else touches steps before it starts.
        live = _LIVE | {R.PENDING} if kind is EventType.STEP_SKIPPED else _LIVE
        _require(run.status in live, f"{kind} while the run is {run.status}")
        _apply_step_event(run, event, STEP_TRANSITIONS[kind])
    elif kind in GATE_TRANSITIONS:
        _require(run.status in _LIVE, f"{kind} while the run is {run.status}")
        _apply_gate_event(run, event)
    elif kind is EventType.WORKFLOW_CREATED:
        _require(run.last_sequence == 0, "WORKFLOW_CREATED must be the first event")
        run.rerun_of = str(event.details.get("rerunOf", ""))
        run.rerun_from_step = str(event.details.get("fromStep", ""))
    elif kind is EventType.NOTIFICATION:
        pass
    else:  # pragma: no cover - every EventType is handled above
        raise IllegalTransition(f"unknown event type {kind!r}")
    run.last_sequence += 1
    run.updated_at = event.time
    # Built directly rather than with dataclasses.replace: this runs for every event.
    return Event(
        type=event.type, time=event.time, step_id=event.step_id, gate_id=event.gate_id,
        attempt=event.attempt, details=event.details,
        sequence=run.last_sequence, run_id=run.id, run_status=run.status,
    )  # fmt: skip


def apply_all(run: Run, events: Iterable[Event]) -> list[Event]:
    return [apply(run, event) for event in events]


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise IllegalTransition(message)


def _apply_run_event(run: Run, event: Event) -> None:
    sources, target = RUN_TRANSITIONS[event.type]
    _require(run.status in sources, f"cannot go from {run.status} to {target}")
    details = event.details
    sets_options = "autoApprove" in details or "notifyOnCompletion" in details
    if event.type in (EventType.WORKFLOW_STARTED, EventType.WORKFLOW_RESUMED) and sets_options:
        run.options = ExecutionOptions(
            auto_approve=bool(details.get("autoApprove", False)),
            notify_on_completion=bool(details.get("notifyOnCompletion", False)),
        )
    if event.type is EventType.WORKFLOW_STARTED:
        run.started_at = event.time
        run.start_request_id = str(details.get("requestId", ""))
        run.start_request_hash = str(details.get("requestHash", ""))
    if event.type is EventType.WORKFLOW_PAUSED:
        run.pause_reason = str(details.get("reason", ""))
        run.paused_gate_id = event.gate_id
    else:
        run.pause_reason = ""
        run.paused_gate_id = ""
    if target.terminal:
        run.ended_at = event.time
        run.error = str(details.get("error", "")) if target is R.FAILED else ""
        for gate in run.gates.values():
            gate.deadline = None
            if gate.status is G.PENDING:
                gate.status = G.SKIPPED
    run.status = target


def _apply_reused(run: Run, event: Event) -> None:
    """A step or gate result a rerun takes over from the run it reruns (see REUSED_FROM)."""
    kind = event.type
    _require(run.status is R.PENDING, f"{kind} reused while the run is {run.status}")
    if kind in REUSE_TRANSITIONS:
        _apply_step_event(run, event, REUSE_TRANSITIONS[kind])
    elif kind in REUSED_GATE_EVENTS:
        gate = run.gates.get(event.gate_id)
        step = run.steps[run.template_gate(event.gate_id).step_id] if gate is not None else None
        _require(
            step is not None and step.reused,
            f"{kind} reused for gate {event.gate_id!r}, whose step was not reused",
        )
        _apply_gate_event(run, event)
    else:
        raise IllegalTransition(f"{kind} cannot be reused from another run")


def _apply_step_event(
    run: Run, event: Event, transition: tuple[frozenset[StepStatus], StepStatus]
) -> None:
    step = run.steps.get(event.step_id)
    _require(step is not None, f"{event.type} names unknown step {event.step_id!r}")
    assert step is not None
    sources, target = transition
    _require(
        step.status in sources, f"step {step.step_id}: cannot go from {step.status} to {target}"
    )
    details = event.details
    match event.type:
        case EventType.STEP_STARTED:
            _require(event.attempt > step.attempt, f"step {step.step_id}: attempt must grow")
            step.attempt = event.attempt
            step.started_at = step.started_at or event.time
            step.error = ""
            # A wait step waits RUNNING until its wake time.
            wake = details.get("wakeAt")
            step.wake_at = datetime.fromisoformat(wake) if isinstance(wake, str) else None
        case EventType.STEP_RETRYING:
            step.error = str(details.get("error", ""))
            step.wake_at = retry_time(event)
        case EventType.STEP_COMPLETED:
            output = details.get("output", {})
            step.output = dict(output) if isinstance(output, dict) else {}
            step.ended_at = event.time
            step.error = ""
            step.wake_at = None
        case EventType.STEP_FAILED:
            step.error = str(details.get("error", ""))
            step.ended_at = event.time
            step.wake_at = None
        case EventType.STEP_SKIPPED | EventType.STEP_CANCELLED:
            step.error = str(details.get("reason", ""))
            if event.type is EventType.STEP_CANCELLED:
                step.ended_at = event.time
                step.wake_at = None
    step.status = target


def retry_time(event: Event) -> datetime:
    """When the attempt after a STEP_RETRYING event is due: its `retryAt`, or (events written
    before retries were timers) its time plus `delaySeconds`."""
    at = event.details.get("retryAt")
    if isinstance(at, str):
        return datetime.fromisoformat(at)
    return event.time + timedelta(seconds=float(event.details.get("delaySeconds", 0)))


def _apply_gate_event(run: Run, event: Event) -> None:
    gate = run.gates.get(event.gate_id)
    _require(gate is not None, f"{event.type} names unknown gate {event.gate_id!r}")
    assert gate is not None
    sources, target = GATE_TRANSITIONS[event.type]
    _require(
        gate.status in sources, f"gate {gate.gate_id}: cannot go from {gate.status} to {target}"
    )
    details = event.details
    if "observedValue" in details:
        observed = details["observedValue"]
        gate.observed_value = float(observed) if observed is not None else None
    gate.message = str(details.get("message", gate.message))
    if target is G.AWAITING_APPROVAL:
        deadline = details.get("deadline")
        gate.deadline = datetime.fromisoformat(deadline) if isinstance(deadline, str) else None
    else:
        gate.decided_at = event.time
        gate.deadline = None
    gate.status = target
