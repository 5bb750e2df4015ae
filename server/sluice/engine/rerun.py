"""Rerunning a FAILED or CANCELLED run: which of its steps a new run takes over, and the events
that create that run. Pure: the runtime stores the result like any new run, then starts it.

The new run keeps the original's params and template (its snapshot: a template registered
again since does not change a rerun). A step it takes over is COMPLETED from the start with the
original's output (its handler does not run again, its notifications and publications are not
repeated), so `{{ steps.X.output }}` and gates further on see the same data. A gate after a
step taken over keeps its original result when that result let the run go on (PASSED,
APPROVED, or FAILED with action CONTINUE): nobody is asked twice to approve the same output.
Any other gate (never decided, awaiting approval, rejected, failed with PAUSE or ABORT) is
decided afresh once the new run starts, as in any run.
"""

from __future__ import annotations

from datetime import datetime

from sluice.engine.errors import FailedPrecondition, InvalidArgument, Violation
from sluice.engine.model import (
    Event,
    EventType,
    GateAction,
    GateSpec,
    GateStatus,
    Run,
    RunStatus,
    StepStatus,
)
from sluice.engine.scheduler import Decision
from sluice.engine.transitions import REUSED_FROM

RERUNNABLE = frozenset({RunStatus.FAILED, RunStatus.CANCELLED})

# The original gate results a rerun keeps, as the events that record them.
_KEPT_GATES = {
    GateStatus.PASSED: EventType.GATE_PASSED,
    GateStatus.APPROVED: EventType.GATE_APPROVED,
    GateStatus.FAILED: EventType.GATE_FAILED,  # only with action CONTINUE (see _kept_gate)
}


def reused_steps(original: Run, from_step: str = "") -> tuple[str, ...]:
    """The steps a rerun of `original` takes over, in template order: each that COMPLETED, is
    neither `from_step` nor downstream of it, and whose dependencies all end as they did.
    Every other step runs again (or is skipped again, as the scheduler decides).

    A dependency ends as it did when it is taken over, or when the original SKIPPED it and its
    own dependencies all end as they did: that skip was a branch not taken (a `when` condition
    over the same params and outputs, or the cascade from one), so the new run skips it again,
    and a join after it (ANY_COMPLETED) that completed is taken over too. A step skipped after
    a failure does not qualify: what failed runs again and may complete this time."""
    template = original.template
    settled: set[str] = set()
    taken: list[str] = []
    for step_id in template.order:  # dependencies first
        status = original.steps[step_id].status
        if status is not StepStatus.COMPLETED and status is not StepStatus.SKIPPED:
            continue
        if from_step and (step_id == from_step or from_step in template.upstream(step_id)):
            continue
        if all(d in settled for d in template.step(step_id).dependencies):
            settled.add(step_id)
            if status is StepStatus.COMPLETED:
                taken.append(step_id)
    return tuple(taken)


def check(original: Run, from_step: str = "") -> None:
    """Whether `original` may be rerun (from `from_step`): FailedPrecondition or
    InvalidArgument (field from_step_id) otherwise."""
    if from_step and from_step not in original.steps:
        steps = ", ".join(original.template.order)
        raise InvalidArgument(
            [Violation("from_step_id", f"must be a step of the workflow's template ({steps})")]
        )
    if original.status not in RERUNNABLE:
        raise FailedPrecondition(
            f"workflow {original.id} is {original.status}; only a FAILED or CANCELLED workflow "
            "can be rerun"
        )


def rerun(original: Run, *, id: str, now: datetime, from_step: str = "") -> Decision:
    """The new run, PENDING, linked to `original`, with what it takes over already recorded:
    WORKFLOW_CREATED (naming the original and `from_step`), then for each step taken over a
    STEP_COMPLETED with the original's output, followed by its gates' kept results; each of
    those events names the original under `reusedFrom`."""
    check(original, from_step)
    template = original.template
    run = Run.new(
        id=id, owner=original.owner, template=template, params=dict(original.params), now=now
    )
    decision = Decision(run)
    created: dict[str, str] = {"templateId": template.id, "rerunOf": original.id}
    if from_step:
        created["fromStep"] = from_step
    decision.emit(Event(EventType.WORKFLOW_CREATED, now, details=created))
    for step_id in reused_steps(original, from_step):
        output = original.steps[step_id].output or {}
        details = {"output": output, REUSED_FROM: original.id}
        decision.emit(Event(EventType.STEP_COMPLETED, now, step_id, details=details))
        for gate in template.gates_after(step_id):
            kept = _kept_gate(original, gate, now)
            if kept is not None:
                decision.emit(kept)
    return decision


def _kept_gate(original: Run, gate: GateSpec, now: datetime) -> Event | None:
    """The event that keeps `gate`'s original result, or None when it is decided afresh."""
    result = original.gates[gate.id]
    kind = _KEPT_GATES.get(result.status)
    if kind is None or (kind is EventType.GATE_FAILED and gate.action is not GateAction.CONTINUE):
        return None
    details: dict[str, object] = {"message": result.message, REUSED_FROM: original.id}
    if result.observed_value is not None:
        details["observedValue"] = result.observed_value
    if kind is EventType.GATE_FAILED:
        details["action"] = GateAction.CONTINUE.value
    return Event(kind, now, gate.step_id, gate.id, details=details)
