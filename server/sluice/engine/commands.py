"""The calls a person or client makes on a run, as pure functions: state in, events out.

Each checks that the run's status allows it (FailedPrecondition with a sentence otherwise) and
returns a Decision whose events the runner commits like any other change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from sluice.engine.errors import FailedPrecondition, InvalidArgument, NotFound, Violation
from sluice.engine.model import (
    Event,
    EventType,
    ExecutionOptions,
    GateStatus,
    Run,
    RunStatus,
    StepStatus,
)
from sluice.engine.scheduler import Decision, terminate


def start(
    run: Run,
    now: datetime,
    options: ExecutionOptions,
    request_id: str = "",
    request_hash: str = "",
) -> Decision:
    """Start a PENDING run. `request_hash` fingerprints the call carrying `request_id`: a retry
    of the call that started the run gets the run back; the same id on a different request is
    refused (AIP-155)."""
    decision = Decision(run.copy())
    if request_id and request_id == run.start_request_id:
        if request_hash and run.start_request_hash and request_hash != run.start_request_hash:
            raise request_id_reused("ExecuteWorkflow")
        return decision  # a retry of the call that started the run: it gets the run back
    if run.status is RunStatus.PENDING:
        details: dict[str, object] = {**_options(options)}
        if request_id:
            details["requestId"] = request_id
            if request_hash:
                details["requestHash"] = request_hash
        decision.emit(Event(EventType.WORKFLOW_STARTED, now, details=details))
    elif run.status is RunStatus.PAUSED:
        raise FailedPrecondition(f"workflow {run.id} is PAUSED; ResumeWorkflow continues it")
    elif run.status.terminal:
        raise FailedPrecondition(f"workflow {run.id} is {run.status} and cannot run again")
    return decision  # RUNNING: already started, nothing to do


def pause(run: Run, now: datetime, reason: str) -> Decision:
    if run.status is not RunStatus.RUNNING:
        raise FailedPrecondition(f"only a RUNNING workflow can be paused; {run.id} is {run.status}")
    decision = Decision(run.copy())
    decision.emit(
        Event(EventType.WORKFLOW_PAUSED, now, details={"reason": reason or "paused by user"})
    )
    return decision


def resume(
    run: Run,
    now: datetime,
    options: ExecutionOptions | None,
    *,
    auto_approve: bool | None = None,
    notify_on_completion: bool | None = None,
) -> Decision:
    """Resume a paused run. A gate it was paused on counts as approved by the resume.

    `options` replaces both options; `auto_approve` / `notify_on_completion` change one and
    keep the other, read from the run under its lock (a client need not read it first)."""
    if run.status is not RunStatus.PAUSED:
        raise FailedPrecondition(f"only a PAUSED workflow can be resumed; {run.id} is {run.status}")
    if options is None and (auto_approve is not None or notify_on_completion is not None):
        options = ExecutionOptions(
            auto_approve=run.options.auto_approve if auto_approve is None else auto_approve,
            notify_on_completion=(
                run.options.notify_on_completion
                if notify_on_completion is None
                else notify_on_completion
            ),
        )
    decision = Decision(run.copy())
    if run.paused_gate_id:
        gate = run.template_gate(run.paused_gate_id)
        decision.emit(
            Event(
                EventType.GATE_APPROVED, now, gate.step_id, gate.id,
                details={"message": "approved by resuming the workflow"},
            )
        )  # fmt: skip
    decision.emit(
        Event(EventType.WORKFLOW_RESUMED, now, details=_options(options) if options else {})
    )
    return decision


def cancel(run: Run, now: datetime, reason: str) -> Decision:
    if run.status.terminal:
        raise FailedPrecondition(f"workflow {run.id} is already {run.status}")
    decision = Decision(run.copy())
    terminate(decision, now, RunStatus.CANCELLED, reason or "cancelled by user")
    return decision


def expire(run: Run, now: datetime, reason: str) -> Decision:
    """End a run left PENDING too long (never executed): CANCELLED, with the reason."""
    if run.status is not RunStatus.PENDING:
        raise FailedPrecondition(f"only a PENDING workflow expires; {run.id} is {run.status}")
    decision = Decision(run.copy())
    terminate(decision, now, RunStatus.CANCELLED, reason)
    return decision


def decide_gate(run: Run, now: datetime, gate_id: str, approve: bool, comment: str) -> Decision:
    if gate_id not in run.gates:
        raise NotFound(f"workflow {run.id} has no gate {gate_id!r}")
    status = run.gates[gate_id].status
    if run.status is not RunStatus.PAUSED or run.paused_gate_id != gate_id:
        raise FailedPrecondition(
            f"workflow {run.id} is not waiting on gate {gate_id} (workflow {run.status}, "
            f"gate {status})"
        )
    gate = run.template_gate(gate_id)
    decision = Decision(run.copy())
    verdict = "approved" if approve else "rejected"
    message = comment or f"{verdict} by user"
    if approve:
        decision.emit(
            Event(EventType.GATE_APPROVED, now, gate.step_id, gate_id, details={"message": message})
        )
        decision.emit(Event(EventType.WORKFLOW_RESUMED, now))
    else:
        decision.emit(
            Event(EventType.GATE_REJECTED, now, gate.step_id, gate_id, details={"message": message})
        )
        terminate(decision, now, RunStatus.FAILED, f"gate {gate_id} rejected: {message}")
    assert status in (GateStatus.AWAITING_APPROVAL, GateStatus.FAILED)
    return decision


def retry_now(run: Run, now: datetime, step_id: str) -> Decision:
    """Start the next attempt of a step waiting out its retry backoff (RETRYING) at once; the
    STEP_STARTED says so (`retryNow`) and clears the step's retry timer with it."""
    step = run.steps.get(step_id)
    if step is None:
        steps = ", ".join(run.template.order)
        raise InvalidArgument(
            [Violation("step_id", f"must be a step of the workflow's template ({steps})")]
        )
    if run.status is not RunStatus.RUNNING:
        raise FailedPrecondition(
            f"workflow {run.id} is {run.status}; a step is retried now only in a RUNNING workflow"
        )
    if step.status is not StepStatus.RETRYING:
        raise FailedPrecondition(
            f"step {step_id} is {step.status}; only a step waiting out its retry backoff "
            "(RETRYING) can be retried now"
        )
    decision = Decision(run.copy())
    decision.emit(
        Event(
            EventType.STEP_STARTED, now, step_id, attempt=step.attempt + 1,
            details={"retryNow": True},
        )
    )  # fmt: skip
    return decision


def request_id_reused(method: str) -> InvalidArgument:
    return InvalidArgument(
        [
            Violation(
                "request_id",
                f"was already used for a different {method} request; a retry must repeat the "
                "request exactly, and a new request needs a new request_id",
            )
        ]
    )


def _options(options: ExecutionOptions) -> dict[str, bool]:
    return {
        "autoApprove": options.auto_approve,
        "notifyOnCompletion": options.notify_on_completion,
    }


# --- commands as data -------------------------------------------------------------------------
# A call on a run another server drives is stored as (kind, arguments) and carried out by that
# server with the same functions; its outcome comes back as data too (`outcome_of` / `raise_`).

Command = Callable[[Run, datetime], Decision]


def build(kind: str, args: Mapping[str, Any]) -> Command:
    """The command function for a stored (kind, arguments); KeyError for an unknown kind."""
    return _BUILDERS[kind](args)


def _options_from(args: Mapping[str, Any]) -> ExecutionOptions | None:
    found = args.get("options")
    if found is None:
        return None
    return ExecutionOptions(
        auto_approve=bool(found["autoApprove"]),
        notify_on_completion=bool(found["notifyOnCompletion"]),
    )


def options_arg(options: ExecutionOptions | None) -> dict[str, bool] | None:
    return _options(options) if options is not None else None


_BUILDERS: dict[str, Callable[[Mapping[str, Any]], Command]] = {
    "start": lambda a: lambda run, now: start(
        run, now, _options_from(a) or ExecutionOptions(), a.get("requestId", ""),
        a.get("requestHash", ""),
    ),
    "pause": lambda a: lambda run, now: pause(run, now, a.get("reason", "")),
    "resume": lambda a: lambda run, now: resume(
        run, now, _options_from(a), auto_approve=a.get("autoApprove"),
        notify_on_completion=a.get("notifyOnCompletion"),
    ),
    "cancel": lambda a: lambda run, now: cancel(run, now, a.get("reason", "")),
    "expire": lambda a: lambda run, now: expire(run, now, a.get("reason", "")),
    "decide_gate": lambda a: lambda run, now: decide_gate(
        run, now, a["gateId"], bool(a["approve"]), a.get("comment", "")
    ),
    "retry_step": lambda a: lambda run, now: retry_now(run, now, a["stepId"]),
}  # fmt: skip


def outcome_of(error: Exception | None) -> dict[str, Any]:
    """A command's outcome as JSON data: {"ok": true}, or the error to raise to its caller."""
    if error is None:
        return {"ok": True}
    outcome: dict[str, Any] = {"ok": False, "error": type(error).__name__, "message": str(error)}
    if isinstance(error, InvalidArgument):
        outcome["violations"] = [[v.field, v.description] for v in error.violations]
    return outcome


def raise_(outcome: Mapping[str, Any]) -> None:
    """Raise the error an outcome carries (nothing for a success)."""
    if outcome.get("ok"):
        return
    message = str(outcome.get("message", ""))
    match outcome.get("error"):
        case "InvalidArgument":
            raise InvalidArgument([Violation(f, d) for f, d in outcome.get("violations", [])])
        case "NotFound":
            raise NotFound(message)
        case _:  # FailedPrecondition (or IllegalTransition): the run's state refused it
            raise FailedPrecondition(message)
