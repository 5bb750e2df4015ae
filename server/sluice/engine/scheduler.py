"""What happens next in a run: a pure function from the run's state to the events to record.

`decide` is called after every committed change. It never does I/O: starting a step is the
STEP_STARTED event it returns (the runtime dispatches the handler once that event is
committed), cancelling one is a STEP_CANCELLED event, and waiting is a time. A failed attempt
that will be retried is a STEP_RETRYING event carrying when (`retryAt`); a wait step starts
with its wake time (`wakeAt`); an approval gate with a timeout waits with its `deadline`. The
decision lists each such time as a timer for the runtime to keep durably, and `decide` acts
once the time has come: the next attempt starts, the wait step completes, the timeout acts.

Skips: a step whose `when` condition is false is skipped, and so is, under the default
dependency rule (ALL_COMPLETED), every step that depends on a skipped, failed or cancelled
one: a branch not taken is skipped to its end. A step with the rule ANY_COMPLETED waits until
all its dependencies ended and runs when at least one of them completed: the join after
branches.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sluice.engine import gates, substitution, validators, waits
from sluice.engine.expressions import ExpressionError
from sluice.engine.model import (
    ApprovalTimeout,
    DependencyRule,
    Event,
    EventType,
    GateAction,
    GateSpec,
    GateStatus,
    GateType,
    Run,
    RunStatus,
    StepSpec,
    StepStatus,
)
from sluice.engine.transitions import apply

_BLOCKED = frozenset({StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED})
_ENDS_RUN = frozenset(
    {EventType.WORKFLOW_COMPLETED, EventType.WORKFLOW_FAILED, EventType.WORKFLOW_CANCELLED}
)


def wake_timer(step_id: str) -> str:
    """The key of the timer that ends a step's wait: its next attempt, or its wait step."""
    return f"wake:{step_id}"


def deadline_timer(gate_id: str) -> str:
    """The key of the timer that acts on an approval nobody decided in time."""
    return f"deadline:{gate_id}"


@dataclass(slots=True)
class Decision:
    """The events to commit, already applied (in order) to `run`, a copy of the input, and
    the durable timers they set (a time) or clear (None), by key, to store with them."""

    run: Run
    events: list[Event] = field(default_factory=list)
    timers: dict[str, datetime | None] = field(default_factory=dict)

    def emit(self, event: Event) -> None:
        run = self.run
        step = run.steps.get(event.step_id) if event.step_id else None
        gate = run.gates.get(event.gate_id) if event.gate_id else None
        step_wait = step.wake_at if step is not None else None
        gate_wait = gate.deadline if gate is not None else None
        # The run's end clears every deadline (a run cancelled while it awaited approval).
        deadlines = (
            [g.gate_id for g in run.gates.values() if g.deadline is not None]
            if event.type in _ENDS_RUN
            else ()
        )
        self.events.append(apply(run, event))
        if step is not None and step.wake_at != step_wait:
            self.timers[wake_timer(step.step_id)] = step.wake_at
        if gate is not None and gate.deadline != gate_wait:
            self.timers[deadline_timer(gate.gate_id)] = gate.deadline
        for gate_id in deadlines:
            self.timers[deadline_timer(gate_id)] = None


def wake_at(run: Run) -> datetime | None:
    """The earliest time at which `decide` will have something to do for `run` without any
    other change (a retry falling due, a wait step ending, an approval timing out), or None."""
    if run.status is RunStatus.RUNNING:
        due = [s.wake_at for s in run.steps.values() if s.wake_at is not None]
        return min(due) if due else None
    if run.status is RunStatus.PAUSED and run.paused_gate_id:
        return run.gates[run.paused_gate_id].deadline
    return None


def attempt_failed(
    decision: Decision,
    now: datetime,
    step_id: str,
    error: str,
    *,
    retryable: bool,
    retry_after: timedelta | None = None,
    error_type: str = "",
) -> None:
    """A step's attempt failed: retry it after its policy's backoff, or `retry_after` when the
    step's worker asked for its own (STEP_RETRYING with the time), or, when it may not be
    retried (the handler said so, or its policy names `error_type` as not retryable) or has no
    attempts left, STEP_FAILED."""
    step = decision.run.steps[step_id]
    policy = decision.run.template.step(step_id).retry
    details: dict[str, object] = {"error": error}
    if error_type:
        details["errorType"] = error_type
    if error_type and error_type in policy.non_retryable_errors:
        details["nonRetryable"] = True
        retryable = False
    if retryable and step.attempt < policy.max_attempts:
        delay = retry_after
        if delay is None:
            draw = jitter_draw(decision.run.id, step_id, step.attempt)
            delay = policy.delay_after(step.attempt, draw)
        details["delaySeconds"] = delay.total_seconds()
        details["retryAt"] = (now + delay).isoformat()
        decision.emit(
            Event(EventType.STEP_RETRYING, now, step_id, attempt=step.attempt, details=details)
        )
    else:
        decision.emit(
            Event(EventType.STEP_FAILED, now, step_id, attempt=step.attempt, details=details)
        )


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
    if run.status is RunStatus.PAUSED:
        _time_out_approval(decision, now)
    if run.status is not RunStatus.RUNNING:
        return
    _wake_waiters(decision, now)
    if _check_gates(decision, now) or _fail_on_required_failure(decision, now):
        return
    if _skip_steps(decision, now):
        return
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
            awaiting = _gate_event(EventType.GATE_AWAITING_APPROVAL, now, gate, "")
            if gate.approval_timeout is not None:
                deadline = (now + gate.approval_timeout).isoformat()
                awaiting = Event(
                    awaiting.type, now, gate.step_id, gate.id,
                    details={"message": "", "deadline": deadline,
                             "onTimeout": (gate.on_timeout or ApprovalTimeout.REJECT).value},
                )  # fmt: skip
            decision.emit(awaiting)
            decision.emit(
                Event(
                    EventType.WORKFLOW_PAUSED, now, gate.step_id, gate.id,
                    details={"reason": f"waiting for approval of gate {gate.id}"},
                )
            )  # fmt: skip
            return True
        if gate.type is GateType.EXTERNAL:
            validator = run.steps[gate.id]  # its validator step (sluice.engine.validators)
            if validator.status is StepStatus.COMPLETED:
                outcome = validators.verdict(gate, validator.output)
            elif validator.status is StepStatus.FAILED:
                outcome = gates.GateOutcome(False, f"the validator failed: {validator.error}")
            else:
                continue  # still asking
        else:
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


def _time_out_approval(decision: Decision, now: datetime) -> None:
    """The approval a PAUSED run waits on had a deadline, and it passed: the gate's
    `on_timeout` decides in the person's place."""
    run = decision.run
    result = run.gates.get(run.paused_gate_id) if run.paused_gate_id else None
    if result is None or result.deadline is None or result.deadline > now:
        return
    gate = run.template_gate(result.gate_id)
    late = f"no decision by the deadline {result.deadline.isoformat()}"
    # The gate's event, and how the run ends (None: it goes on).
    kind, message, ending = {
        ApprovalTimeout.APPROVE: (EventType.GATE_APPROVED, f"approved: {late}", None),
        ApprovalTimeout.REJECT: (
            EventType.GATE_REJECTED,
            f"rejected: {late}",
            f"gate {gate.id} rejected: {late}",
        ),
        ApprovalTimeout.FAIL: (
            EventType.GATE_FAILED,
            f"timed out: {late}",
            f"gate {gate.id} timed out: {late}",
        ),
    }[gate.on_timeout or ApprovalTimeout.REJECT]
    details: dict[str, object] = {"message": message, "timedOut": True}
    if kind is EventType.GATE_FAILED:
        details["action"] = GateAction.ABORT.value
    decision.emit(Event(kind, now, gate.step_id, gate.id, details=details))
    if ending is None:
        decision.emit(Event(EventType.WORKFLOW_RESUMED, now))
    else:
        terminate(decision, now, RunStatus.FAILED, ending)


def _wake_waiters(decision: Decision, now: datetime) -> None:
    """Wait steps whose wake time has come complete."""
    run = decision.run
    for step_id in run.template.order:
        step = run.steps[step_id]
        if step.status is StepStatus.RUNNING and step.wake_at is not None and step.wake_at <= now:
            output = {"wakeAt": step.wake_at.isoformat(), "wokeAt": now.isoformat()}
            decision.emit(
                Event(EventType.STEP_COMPLETED, now, step_id, attempt=step.attempt,
                      details={"output": output})
            )  # fmt: skip


def _fail_on_required_failure(decision: Decision, now: datetime) -> bool:
    run = decision.run
    for step_id in run.template.order:
        step = run.steps[step_id]
        if step.status is StepStatus.FAILED and not run.template.step(step_id).optional:
            terminate(decision, now, RunStatus.FAILED, f"step {step_id} failed: {step.error}")
            return True
    return False


def _skip_steps(decision: Decision, now: datetime) -> bool:
    """Skip the steps that cannot run (their dependency rule can no longer hold) and the
    ready ones whose condition is false. True when the run failed on a condition that could
    not be evaluated."""
    run = decision.run
    for step_id in run.template.order:  # dependencies first, so skips cascade in one pass
        if run.steps[step_id].status is not StepStatus.PENDING:
            continue
        spec = run.template.step(step_id)
        reason = _unreachable(run, spec)
        if reason:
            decision.emit(Event(EventType.STEP_SKIPPED, now, step_id, details={"reason": reason}))
        elif spec.when and _ready(run, step_id):
            try:
                outcome = gates.condition(spec.when, run)
            except ExpressionError as exc:
                message = f"the condition of step {step_id} could not be evaluated: {exc}"
                terminate(decision, now, RunStatus.FAILED, message)
                return True
            if not outcome.passed:
                details = {"reason": f"condition {outcome.message}", "condition": spec.when}
                decision.emit(Event(EventType.STEP_SKIPPED, now, step_id, details=details))
    return False


def _unreachable(run: Run, spec: StepSpec) -> str:
    """Why the step's dependencies can no longer let it run, or ""."""
    if spec.dependency_rule is DependencyRule.ANY_COMPLETED:
        statuses = [run.steps[d].status for d in spec.dependencies]
        if statuses and all(s in _BLOCKED for s in statuses):
            return "no dependency completed"
        return ""
    for dep in spec.dependencies:
        status = run.steps[dep].status
        if status in _BLOCKED:
            return f"dependency {dep} {status.lower()}"
    return ""


def _start_due_retries(decision: Decision, now: datetime) -> None:
    """The next attempt of each RETRYING step whose time has come (it keeps its slot)."""
    run = decision.run
    for step_id in run.template.order:
        step = run.steps[step_id]
        if step.status is StepStatus.RETRYING and (step.wake_at is None or step.wake_at <= now):
            _start(decision, now, step_id)


def _start_ready(decision: Decision, now: datetime, free_slots: int) -> None:
    run = decision.run
    # A waiting step holds no slot: it is a timer, not work.
    busy = sum(
        1
        for s in run.steps.values()
        if s.status.active and not (s.status is StepStatus.RUNNING and s.wake_at is not None)
    )
    free = free_slots - busy
    for step_id in run.template.order:
        step = run.steps[step_id]
        if step.status is StepStatus.PENDING and _ready(run, step_id):
            waits = run.template.step(step_id).waits
            if free > 0 or waits:
                _start(decision, now, step_id)
                free -= not waits


def _start(decision: Decision, now: datetime, step_id: str) -> None:
    """The step's next attempt; a wait step's carries its wake time (a config that does not
    give one fails the step: another attempt would read the same config)."""
    run = decision.run
    spec = run.template.step(step_id)
    attempt = run.steps[step_id].attempt + 1
    if not spec.waits:
        decision.emit(Event(EventType.STEP_STARTED, now, step_id, attempt=attempt))
        return
    try:
        config = substitution.resolve(dict(spec.config), run.params, run.upstream_outputs(step_id))
        wake = waits.wake_time(config, now)
    except (substitution.SubstitutionError, waits.WaitError) as exc:
        decision.emit(Event(EventType.STEP_STARTED, now, step_id, attempt=attempt))
        attempt_failed(decision, now, step_id, str(exc), retryable=False)
        return
    details = {"wakeAt": wake.isoformat()}
    decision.emit(Event(EventType.STEP_STARTED, now, step_id, attempt=attempt, details=details))


def _ready(run: Run, step_id: str) -> bool:
    """The step's dependencies let it run: all of them completed (ANY_COMPLETED: all ended,
    at least one completed), and every gate after a completed one let it through."""
    spec = run.template.step(step_id)
    any_completed = spec.dependency_rule is DependencyRule.ANY_COMPLETED
    completed = 0
    for dep in spec.dependencies:
        status = run.steps[dep].status
        if status is not StepStatus.COMPLETED:
            if any_completed and status.terminal:
                continue
            return False
        completed += 1
        for gate in run.template.gates_after(dep):
            if gate.id == spec.validates:
                continue  # the step asks for this gate's verdict: it cannot wait for it
            gate_status = run.gates[gate.id].status
            passed = gate_status in (GateStatus.PASSED, GateStatus.APPROVED)
            overridden = gate_status is GateStatus.FAILED and gate.action is GateAction.CONTINUE
            if not (passed or overridden):
                return False
    return completed > 0 or not spec.dependencies
