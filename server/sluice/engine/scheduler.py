"""What happens next in a run: a pure function from the run's state to the events to record.

`decide` is called after every committed change. It never does I/O: starting a step is the
STEP_STARTED event it returns (the runtime dispatches the handler once that event is
committed), cancelling one is a STEP_CANCELLED event, and waiting is a time: a failed attempt
that will be retried is a STEP_RETRYING event carrying when (`retryAt`), which the decision
also lists as a timer for the runtime to keep durably; `decide` starts the attempt once that
time has come.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sluice.engine import gates
from sluice.engine.model import (
    Event,
    EventType,
    GateAction,
    GateSpec,
    GateStatus,
    GateType,
    Run,
    RunStatus,
    StepStatus,
)
from sluice.engine.transitions import apply

_BLOCKED = frozenset({StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED})


def retry_timer(step_id: str) -> str:
    """The key of the timer that starts a RETRYING step's next attempt."""
    return f"retry:{step_id}"


@dataclass(slots=True)
class Decision:
    """The events to commit, already applied (in order) to `run`, a copy of the input, and
    the durable timers they set (a time) or clear (None), by key, to store with them."""

    run: Run
    events: list[Event] = field(default_factory=list)
    timers: dict[str, datetime | None] = field(default_factory=dict)

    def emit(self, event: Event) -> None:
        step = self.run.steps.get(event.step_id) if event.step_id else None
        was_waiting = step is not None and step.status is StepStatus.RETRYING
        self.events.append(apply(self.run, event))
        if step is not None:
            if step.status is StepStatus.RETRYING:
                self.timers[retry_timer(step.step_id)] = step.retry_at
            elif was_waiting:
                self.timers[retry_timer(step.step_id)] = None


def wake_at(run: Run) -> datetime | None:
    """The earliest time at which `decide` will have something to do for `run` without any
    other change (a retry falling due), or None."""
    if run.status is not RunStatus.RUNNING:
        return None
    due = [s.retry_at for s in run.steps.values() if s.retry_at is not None]
    return min(due) if due else None


def attempt_failed(
    decision: Decision,
    now: datetime,
    step_id: str,
    error: str,
    *,
    retryable: bool,
    retry_after: timedelta | None = None,
) -> None:
    """A step's attempt failed: retry it after its policy's backoff, or `retry_after` when the
    step's worker asked for its own (STEP_RETRYING with the time), or, when it may not be
    retried or has no attempts left, STEP_FAILED."""
    step = decision.run.steps[step_id]
    policy = decision.run.template.step(step_id).retry
    if retryable and step.attempt < policy.max_attempts:
        delay = retry_after
        if delay is None:
            draw = jitter_draw(decision.run.id, step_id, step.attempt)
            delay = policy.delay_after(step.attempt, draw)
        details = {
            "error": error,
            "delaySeconds": delay.total_seconds(),
            "retryAt": (now + delay).isoformat(),
        }
        decision.emit(
            Event(EventType.STEP_RETRYING, now, step_id, attempt=step.attempt, details=details)
        )
    else:
        decision.emit(
            Event(
                EventType.STEP_FAILED, now, step_id, attempt=step.attempt,
                details={"error": error},
            )
        )  # fmt: skip


def jitter_draw(run_id: str, step_id: str, attempt: int) -> float:
    """A number in [0, 1) that looks random across runs but is fixed for one attempt: the
    engine stays a function of its inputs, and a decision made again waits as long."""
    digest = hashlib.blake2b(f"{run_id}/{step_id}/{attempt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def decide(run: Run, now: datetime, free_slots: int) -> Decision:
    """The next events of a RUNNING run; none for a run in any other status.

    `free_slots` bounds how many more steps may be running at once in this run.
    """
    decision = Decision(run.copy())
    decide_into(decision, now, free_slots)
    return decision


def decide_into(decision: Decision, now: datetime, free_slots: int) -> None:
    """`decide` for a decision under way: its run already holds its events; appends the next."""
    run = decision.run
    if run.status is not RunStatus.RUNNING:
        return
    if _check_gates(decision, now) or _fail_on_required_failure(decision, now):
        return
    _skip_unreachable(decision, now)
    if free_slots > 0:
        _start_due_retries(decision, now)
    _start_ready(decision, now, free_slots)
    if all(s.status.terminal for s in decision.run.steps.values()):
        # The notification goes before the terminal event: watchers stop at that one.
        if decision.run.options.notify_on_completion:
            message = f"Workflow {run.template.id} completed"
            details = {"message": message, "kind": "completion"}
            decision.emit(Event(EventType.NOTIFICATION, now, details=details))
        decision.emit(Event(EventType.WORKFLOW_COMPLETED, now))


def terminate(decision: Decision, now: datetime, status: RunStatus, reason: str) -> None:
    """End the run: pending steps are skipped, running ones cancelled, then the run event."""
    for step_id in decision.run.template.order:
        step = decision.run.steps[step_id]
        if step.status is StepStatus.PENDING:
            decision.emit(Event(EventType.STEP_SKIPPED, now, step_id, details={"reason": reason}))
        elif step.status.active:
            decision.emit(
                Event(
                    EventType.STEP_CANCELLED, now, step_id, attempt=step.attempt,
                    details={"reason": reason},
                )
            )  # fmt: skip
    if status is RunStatus.CANCELLED:
        decision.emit(Event(EventType.WORKFLOW_CANCELLED, now, details={"reason": reason}))
    else:
        decision.emit(Event(EventType.WORKFLOW_FAILED, now, details={"error": reason}))


def _check_gates(decision: Decision, now: datetime) -> bool:
    """Decide the pending gates of completed steps. True when the run stopped on one."""
    run = decision.run
    for gate in run.template.gates:
        if run.gates[gate.id].status is not GateStatus.PENDING:
            continue
        if run.steps[gate.step_id].status is not StepStatus.COMPLETED:
            continue
        if gate.type is GateType.APPROVAL:
            if run.options.auto_approve:
                decision.emit(_gate_event(EventType.GATE_APPROVED, now, gate, "auto-approved"))
                continue
            decision.emit(_gate_event(EventType.GATE_AWAITING_APPROVAL, now, gate, ""))
            decision.emit(
                Event(
                    EventType.WORKFLOW_PAUSED, now, gate.step_id, gate.id,
                    details={"reason": f"waiting for approval of gate {gate.id}"},
                )
            )  # fmt: skip
            return True
        outcome = gates.evaluate(gate, run)
        details: dict[str, object] = {"message": outcome.message}
        if outcome.observed_value is not None:
            details["observedValue"] = outcome.observed_value
        if outcome.passed:
            decision.emit(Event(EventType.GATE_PASSED, now, gate.step_id, gate.id, details=details))
            continue
        details["action"] = (gate.action or GateAction.PAUSE).value
        decision.emit(Event(EventType.GATE_FAILED, now, gate.step_id, gate.id, details=details))
        if gate.action is GateAction.PAUSE:
            decision.emit(
                Event(
                    EventType.WORKFLOW_PAUSED, now, gate.step_id, gate.id,
                    details={"reason": f"gate {gate.id} failed: {outcome.message}"},
                )
            )  # fmt: skip
            return True
        if gate.action is GateAction.ABORT:
            terminate(decision, now, RunStatus.FAILED, f"gate {gate.id} failed: {outcome.message}")
            return True
    return False


def _gate_event(kind: EventType, now: datetime, gate: GateSpec, message: str) -> Event:
    return Event(kind, now, gate.step_id, gate.id, details={"message": message})


def _fail_on_required_failure(decision: Decision, now: datetime) -> bool:
    run = decision.run
    for step_id in run.template.order:
        step = run.steps[step_id]
        if step.status is StepStatus.FAILED and not run.template.step(step_id).optional:
            terminate(decision, now, RunStatus.FAILED, f"step {step_id} failed: {step.error}")
            return True
    return False


def _skip_unreachable(decision: Decision, now: datetime) -> None:
    run = decision.run
    for step_id in run.template.order:  # dependencies first, so skips cascade in one pass
        if run.steps[step_id].status is not StepStatus.PENDING:
            continue
        blocked = [
            d for d in run.template.step(step_id).dependencies if run.steps[d].status in _BLOCKED
        ]
        if blocked:
            reason = f"dependency {blocked[0]} {run.steps[blocked[0]].status.lower()}"
            decision.emit(Event(EventType.STEP_SKIPPED, now, step_id, details={"reason": reason}))


def _start_due_retries(decision: Decision, now: datetime) -> None:
    """The next attempt of each RETRYING step whose time has come (it keeps its slot)."""
    run = decision.run
    for step_id in run.template.order:
        step = run.steps[step_id]
        if step.status is StepStatus.RETRYING and (step.retry_at is None or step.retry_at <= now):
            decision.emit(Event(EventType.STEP_STARTED, now, step_id, attempt=step.attempt + 1))


def _start_ready(decision: Decision, now: datetime, free_slots: int) -> None:
    run = decision.run
    free = free_slots - sum(1 for s in run.steps.values() if s.status.active)
    for step_id in run.template.order:
        if free <= 0:
            return
        step = run.steps[step_id]
        if step.status is StepStatus.PENDING and _ready(run, step_id):
            decision.emit(Event(EventType.STEP_STARTED, now, step_id, attempt=step.attempt + 1))
            free -= 1


def _ready(run: Run, step_id: str) -> bool:
    """All dependencies completed and every gate after them let them through."""
    for dep in run.template.step(step_id).dependencies:
        if run.steps[dep].status is not StepStatus.COMPLETED:
            return False
        for gate in run.template.gates_after(dep):
            status = run.gates[gate.id].status
            passed = status in (GateStatus.PASSED, GateStatus.APPROVED)
            overridden = status is GateStatus.FAILED and gate.action is GateAction.CONTINUE
            if not (passed or overridden):
                return False
    return True
