"""A run's life in the log: one line per event a user would look for, with the run's id (and
the step's) as fields.

Called with every committed batch of events, so it must cost next to nothing for the events it
does not log (a step started or completed, a gate passed): one dictionary look-up each.

A traced run's lines name its trace (`trace_id`) and the span they are about (`span_id`: the
run's, or the step attempt's), whatever span is current where the commit happened.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import structlog

from sluice.engine.model import Event, EventType, Run, RunStatus
from sluice.observability.trace_ids import log_fields

log = structlog.get_logger("sluice.runs")


def committed(run: Run, events: Sequence[Event]) -> None:
    """Log what `events`, just committed, did to `run` (its state after them)."""
    for event in events:
        line = _LINES.get(event.type)
        if line is not None:
            line(run, event)


def _created(run: Run, event: Event) -> None:
    # A rerun says where it came from (its line is otherwise a new run's).
    origin: dict[str, object] = {}
    if run.rerun_of:
        origin = {
            "rerun_of": run.rerun_of,
            "from_step": run.rerun_from_step or None,
            "reused_steps": sum(1 for s in run.steps.values() if s.reused),
        }
    log.info(
        "workflow created", run_id=run.id, user=run.owner,
        template_id=run.template.id, template_version=run.template.version, **origin,
        **log_fields(run.trace_context),
    )  # fmt: skip


def _step_started(run: Run, event: Event) -> None:
    if event.details.get("retryNow"):  # only the attempts someone started before their time
        log.info(
            "step retried now", run_id=run.id, user=run.owner, step_id=event.step_id,
            attempt=event.attempt, **log_fields(run.trace_context, event.step_id, event.attempt),
        )  # fmt: skip


def _started(run: Run, event: Event) -> None:
    log.info(
        "workflow started", run_id=run.id, user=run.owner,
        auto_approve=run.options.auto_approve, **log_fields(run.trace_context),
    )  # fmt: skip


def _paused(run: Run, event: Event) -> None:
    log.info(
        "workflow paused", run_id=run.id, user=run.owner,
        reason=str(event.details.get("reason", "")), gate_id=event.gate_id or None,
        **log_fields(run.trace_context),
    )  # fmt: skip


def _resumed(run: Run, event: Event) -> None:
    log.info("workflow resumed", run_id=run.id, user=run.owner, **log_fields(run.trace_context))


def _finished(run: Run, event: Event) -> None:
    began = run.started_at or run.created_at
    duration = (event.time - began).total_seconds()
    status = event.run_status or run.status
    if status is RunStatus.FAILED:
        log.warning(
            "workflow finished", run_id=run.id, user=run.owner, status=status.value,
            duration_s=round(duration, 3), error=run.error, **log_fields(run.trace_context),
        )  # fmt: skip
        return
    reason = event.details.get("reason") if status is RunStatus.CANCELLED else None
    log.info(
        "workflow finished", run_id=run.id, user=run.owner, status=status.value,
        duration_s=round(duration, 3), reason=reason, **log_fields(run.trace_context),
    )  # fmt: skip


def _step_retrying(run: Run, event: Event) -> None:
    log.warning(
        "step retrying", run_id=run.id, step_id=event.step_id, attempt=event.attempt,
        error=str(event.details.get("error", "")),
        delay_s=event.details.get("delaySeconds"),
        **log_fields(run.trace_context, event.step_id, event.attempt),
    )  # fmt: skip


def _step_failed(run: Run, event: Event) -> None:
    log.warning(
        "step failed", run_id=run.id, step_id=event.step_id, attempt=event.attempt,
        error=str(event.details.get("error", "")),
        optional=run.template.step(event.step_id).optional,
        **log_fields(run.trace_context, event.step_id, event.attempt),
    )  # fmt: skip


def _gate_failed(run: Run, event: Event) -> None:
    log.info(
        "gate failed" if event.type is EventType.GATE_FAILED else "gate rejected",
        run_id=run.id, step_id=event.step_id, gate_id=event.gate_id,
        detail=str(event.details.get("message", "")), **log_fields(run.trace_context),
    )  # fmt: skip


_LINES: dict[EventType, Callable[[Run, Event], None]] = {
    EventType.WORKFLOW_CREATED: _created,
    EventType.WORKFLOW_STARTED: _started,
    EventType.WORKFLOW_PAUSED: _paused,
    EventType.WORKFLOW_RESUMED: _resumed,
    EventType.WORKFLOW_COMPLETED: _finished,
    EventType.WORKFLOW_FAILED: _finished,
    EventType.WORKFLOW_CANCELLED: _finished,
    EventType.STEP_STARTED: _step_started,
    EventType.STEP_RETRYING: _step_retrying,
    EventType.STEP_FAILED: _step_failed,
    EventType.GATE_FAILED: _gate_failed,
    EventType.GATE_REJECTED: _gate_failed,
}
