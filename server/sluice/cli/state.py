"""What a person watching a run sees, kept current from its events.

The live view cannot call GetWorkflow per event (that would double the traffic of a watch), so it
folds events into this small model; a snapshot seeds it and the final Workflow replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp

from sluice.client import (
    EventType,
    GateStatus,
    StepStatus,
    Template,
    Workflow,
    WorkflowEvent,
    WorkflowStatus,
)
from sluice.v1 import template_pb2
from sluice.v1.workflow_pb2 import GateType

E = EventType
_STEP_STATUS: dict[EventType.ValueType, StepStatus.ValueType] = {
    E.EVENT_TYPE_STEP_STARTED: StepStatus.STEP_STATUS_RUNNING,
    E.EVENT_TYPE_STEP_RETRYING: StepStatus.STEP_STATUS_RETRYING,
    E.EVENT_TYPE_STEP_COMPLETED: StepStatus.STEP_STATUS_COMPLETED,
    E.EVENT_TYPE_STEP_FAILED: StepStatus.STEP_STATUS_FAILED,
    E.EVENT_TYPE_STEP_SKIPPED: StepStatus.STEP_STATUS_SKIPPED,
    E.EVENT_TYPE_STEP_CANCELLED: StepStatus.STEP_STATUS_CANCELLED,
}
_GATE_STATUS: dict[EventType.ValueType, GateStatus.ValueType] = {
    E.EVENT_TYPE_GATE_PASSED: GateStatus.GATE_STATUS_PASSED,
    E.EVENT_TYPE_GATE_FAILED: GateStatus.GATE_STATUS_FAILED,
    E.EVENT_TYPE_GATE_APPROVED: GateStatus.GATE_STATUS_APPROVED,
    E.EVENT_TYPE_GATE_REJECTED: GateStatus.GATE_STATUS_REJECTED,
    E.EVENT_TYPE_GATE_AWAITING_APPROVAL: GateStatus.GATE_STATUS_AWAITING_APPROVAL,
}
ACTIVE_STEP = frozenset({StepStatus.STEP_STATUS_RUNNING, StepStatus.STEP_STATUS_RETRYING})
_SETTLED_STEP = frozenset(
    {
        StepStatus.STEP_STATUS_COMPLETED,
        StepStatus.STEP_STATUS_FAILED,
        StepStatus.STEP_STATUS_SKIPPED,
        StepStatus.STEP_STATUS_CANCELLED,
    }
)
ENDED_RUN = frozenset(
    {
        WorkflowStatus.WORKFLOW_STATUS_COMPLETED,
        WorkflowStatus.WORKFLOW_STATUS_FAILED,
        WorkflowStatus.WORKFLOW_STATUS_CANCELLED,
    }
)


@dataclass(slots=True)
class StepView:
    id: str
    type: str
    optional: bool = False
    status: StepStatus.ValueType = StepStatus.STEP_STATUS_PENDING
    attempt: int = 0
    started: datetime | None = None
    ended: datetime | None = None

    def duration(self, now: datetime) -> timedelta | None:
        if self.started is None:
            return None
        return (self.ended or now) - self.started


@dataclass(slots=True)
class GateView:
    id: str
    type: str
    step_id: str
    status: GateStatus.ValueType = GateStatus.GATE_STATUS_PENDING
    message: str = ""


@dataclass(slots=True)
class RunView:
    id: str
    template_id: str
    status: WorkflowStatus.ValueType
    steps: dict[str, StepView] = field(default_factory=dict)
    gates: dict[str, GateView] = field(default_factory=dict)
    paused_gate_id: str = ""
    pause_reason: str = ""
    error: str = ""

    @classmethod
    def of(cls, workflow: Workflow) -> RunView:
        view = cls(
            workflow.id,
            workflow.template_id,
            workflow.status,
            steps=steps_of(workflow.template),
            gates=gates_of(workflow.template),
            paused_gate_id=workflow.paused_gate_id,
            pause_reason=workflow.pause_reason,
            error=workflow.error,
        )
        for run in workflow.steps:
            step = view.steps.setdefault(run.step_id, StepView(run.step_id, run.type))
            step.status, step.attempt, step.optional = run.status, run.attempt, run.optional
            step.started = _time(run.start_time) if run.HasField("start_time") else None
            step.ended = _time(run.end_time) if run.HasField("end_time") else None
        for result in workflow.gate_results:
            gate = view.gates.setdefault(
                result.gate_id,
                GateView(result.gate_id, gate_type_name(result.type), result.step_id),
            )
            gate.status, gate.message = result.status, result.message
        return view

    @classmethod
    def blank(cls, workflow: Workflow) -> RunView:
        """The run as its first event will find it: every step and gate pending."""
        return cls(
            workflow.id,
            workflow.template_id,
            WorkflowStatus.WORKFLOW_STATUS_PENDING,
            steps=steps_of(workflow.template),
            gates=gates_of(workflow.template),
        )

    @property
    def settled_steps(self) -> int:
        return sum(step.status in _SETTLED_STEP for step in self.steps.values())

    @property
    def active(self) -> bool:
        return any(step.status in ACTIVE_STEP for step in self.steps.values())

    def apply(self, event: WorkflowEvent) -> None:
        if event.workflow_status:
            self.status = event.workflow_status
        if status := _STEP_STATUS.get(event.type):
            self._apply_step(event, status)
        elif gate_status := _GATE_STATUS.get(event.type):
            gate = self.gates.setdefault(event.gate_id, GateView(event.gate_id, "", event.step_id))
            gate.status = gate_status
            gate.message = _detail(event, "message") or gate.message
        elif event.type == E.EVENT_TYPE_WORKFLOW_PAUSED:
            self.paused_gate_id, self.pause_reason = event.gate_id, _detail(event, "reason")
        elif event.type == E.EVENT_TYPE_WORKFLOW_RESUMED:
            self.paused_gate_id = self.pause_reason = ""
        elif event.type == E.EVENT_TYPE_WORKFLOW_FAILED:
            self.error = _detail(event, "error")

    def _apply_step(self, event: WorkflowEvent, status: StepStatus.ValueType) -> None:
        step = self.steps.setdefault(event.step_id, StepView(event.step_id, ""))
        step.status = status
        if event.attempt:
            step.attempt = event.attempt
        when = _time(event.time)
        if status == StepStatus.STEP_STATUS_RUNNING:
            # From the first attempt's start, as the server's StepRun.duration counts it:
            # retries and their backoff are part of the step's time.
            step.started, step.ended = step.started or when, None
        elif status in _SETTLED_STEP and step.started is not None:
            step.ended = when


def steps_of(template: Template) -> dict[str, StepView]:
    return {s.id: StepView(s.id, step_kind(s), s.optional) for s in template.steps}


def step_kind(spec: template_pb2.StepSpec) -> str:
    """A step's type as shown: a step served by workers with its task type."""
    return f"task {spec.task_type}" if spec.type == "task" and spec.task_type else spec.type


def gates_of(template: Template) -> dict[str, GateView]:
    return {
        g.id: GateView(g.id, g.WhichOneof("condition") or "", g.step_id)
        for g in template.quality_gates
    }


def gate_type_name(value: GateType.ValueType) -> str:
    return GateType.Name(value).removeprefix("GATE_TYPE_").lower()


def _detail(event: WorkflowEvent, key: str) -> str:
    value = event.details.fields.get(key)
    return value.string_value if value is not None else ""


def _time(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)
