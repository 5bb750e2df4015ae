"""The seed's workflow metrics, computed from the run's steps and gates (never stored apart)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sluice.engine.model import GateStatus, Metrics, Run, StepStatus


def compute(run: Run, now: datetime) -> Metrics:
    steps = run.steps.values()

    def count(status: StepStatus) -> int:
        return sum(1 for s in steps if s.status is status)

    gate_statuses = [g.status for g in run.gates.values()]
    end = run.ended_at or now
    durations = {s.step_id: d for s in steps if (d := s.duration) is not None}
    return Metrics(
        total_steps=len(run.steps),
        completed_steps=count(StepStatus.COMPLETED),
        failed_steps=count(StepStatus.FAILED),
        skipped_steps=count(StepStatus.SKIPPED),
        cancelled_steps=count(StepStatus.CANCELLED),
        total_duration=(end - run.started_at) if run.started_at else timedelta(0),
        quality_gates_passed=sum(
            s in (GateStatus.PASSED, GateStatus.APPROVED) for s in gate_statuses
        ),
        quality_gates_failed=sum(
            s in (GateStatus.FAILED, GateStatus.REJECTED) for s in gate_statuses
        ),
        total_attempts=sum(s.attempt for s in steps),
        step_durations=durations,
    )
