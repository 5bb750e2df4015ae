"""Proto messages <-> domain values. Proto types stop here: the engine never sees them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any, TypeVar

from google.protobuf import duration_pb2, json_format, struct_pb2, timestamp_pb2
from google.protobuf.descriptor import EnumDescriptor

from sluice.engine import metrics as metrics_mod
from sluice.engine.analytics import Analytics, Durations
from sluice.engine.catalog import StepTypeInfo
from sluice.engine.model import (
    ApprovalTimeout,
    DependencyRule,
    Event,
    EventType,
    ExecutionOptions,
    GateAction,
    GateSpec,
    GateStatus,
    GateType,
    Operator,
    ParamSpec,
    RetryPolicy,
    Run,
    RunStatus,
    StepSpec,
    StepStatus,
    Template,
)
from sluice.engine.validators import with_validators
from sluice.v1 import analytics_pb2, event_pb2, template_pb2, workflow_pb2
from sluice.v1 import workflow_service_pb2 as service_pb2

_DEFAULT_RETRY = RetryPolicy()

# --- enums (by name: the proto value is PREFIX_ + the domain value) ----------------------------

E = TypeVar("E", bound=StrEnum)


def _to_proto(domain: type[E], proto: Any, prefix: str) -> dict[E, int]:
    """Domain value -> proto number, looked up once: this also fails at import if a domain value
    has no proto twin."""
    return {value: proto.Value(f"{prefix}{value.value}") for value in domain}


_RUN_STATUS = _to_proto(RunStatus, workflow_pb2.WorkflowStatus, "WORKFLOW_STATUS_")
_STEP_STATUS = _to_proto(StepStatus, workflow_pb2.StepStatus, "STEP_STATUS_")
_GATE_STATUS = _to_proto(GateStatus, workflow_pb2.GateStatus, "GATE_STATUS_")
_GATE_TYPE = _to_proto(GateType, workflow_pb2.GateType, "GATE_TYPE_")
_GATE_ACTION = _to_proto(GateAction, template_pb2.GateAction, "GATE_ACTION_")
_EVENT_TYPE = _to_proto(EventType, event_pb2.EventType, "EVENT_TYPE_")


def run_status_to_proto(status: RunStatus) -> workflow_pb2.WorkflowStatus.ValueType:
    return workflow_pb2.WorkflowStatus.ValueType(_RUN_STATUS[status])


def run_status_from_proto(value: int) -> RunStatus | None:
    name = _enum_name(workflow_pb2.WorkflowStatus.DESCRIPTOR, value, "WORKFLOW_STATUS_")
    return RunStatus(name) if name else None


def _step_status(status: StepStatus) -> workflow_pb2.StepStatus.ValueType:
    return workflow_pb2.StepStatus.ValueType(_STEP_STATUS[status])


def _event_type(kind: EventType) -> event_pb2.EventType.ValueType:
    return event_pb2.EventType.ValueType(_EVENT_TYPE[kind])


def event_type_from_proto(value: int) -> EventType | None:
    name = _enum_name(event_pb2.EventType.DESCRIPTOR, value, "EVENT_TYPE_")
    return EventType(name) if name else None


def _gate_action_to_proto(action: GateAction | None) -> template_pb2.GateAction.ValueType:
    return template_pb2.GateAction.ValueType(_GATE_ACTION[action] if action else 0)


def _gate_action_from_proto(value: int) -> GateAction | None:
    name = _enum_name(template_pb2.GateAction.DESCRIPTOR, value, "GATE_ACTION_")
    return GateAction(name) if name else None


def _operator_from_proto(value: int) -> Operator | None:
    name = _enum_name(template_pb2.ComparisonOperator.DESCRIPTOR, value, "COMPARISON_OPERATOR_")
    return Operator(name) if name else None


def _enum_name(descriptor: EnumDescriptor, value: int, prefix: str) -> str:
    """The value's name without its prefix; "" for UNSPECIFIED and for numbers this server does
    not know (proto3 lets a newer client send them), so validation reports them."""
    known = descriptor.values_by_number.get(value)
    name = known.name.removeprefix(prefix) if known is not None else ""
    return "" if name == "UNSPECIFIED" else name


# --- well-known types --------------------------------------------------------------------------


def struct_to_dict(message: struct_pb2.Struct) -> dict[str, Any]:
    # Not json_format.MessageToDict: it turns NaN and infinities into strings, and validation
    # must see them to refuse them.
    return {key: _value(value) for key, value in message.fields.items()}


def _value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [_value(item) for item in value.list_value.values]
    if kind == "number_value":
        return value.number_value
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    return None


def dict_to_struct(data: Mapping[str, Any] | None, target: struct_pb2.Struct) -> None:
    if data:
        target.update(data)


def _duration(td: timedelta | None, target: duration_pb2.Duration) -> None:
    if td is not None:
        target.FromTimedelta(td)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _timestamp(dt: datetime | None, target: timestamp_pb2.Timestamp) -> None:
    # Set directly: Timestamp.FromDatetime took five times as long, for every time in every
    # Workflow and event message. (Floor division keeps nanos in [0, 1e9) before 1970 too.)
    if dt is not None:
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)  # the store's times are UTC
        target.seconds, micros = divmod((dt - _EPOCH) // _MICROSECOND, 1_000_000)
        target.nanos = micros * 1000


def _td(message: duration_pb2.Duration) -> timedelta:
    return timedelta(seconds=message.seconds, microseconds=message.nanos // 1000)


# --- templates ---------------------------------------------------------------------------------


def template_from_proto(pb: template_pb2.Template) -> Template:
    """A domain template, not yet validated: unset enums become None for validation to report.
    External gates get their validator steps (sluice.engine.validators)."""
    return with_validators(
        Template(
            id=pb.id,
            name=pb.name,
            description=pb.description,
            steps=tuple(_step_from_proto(s) for s in pb.steps),
            gates=tuple(_gate_from_proto(g) for g in pb.quality_gates),
            params=tuple(
                ParamSpec(
                    name=p.name,
                    description=p.description,
                    required=p.required,
                    default=_value(p.default_value) if p.HasField("default_value") else None,
                )
                for p in pb.params
            ),
        )
    )


def _retry_from_proto(r: template_pb2.RetryPolicy) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=r.max_attempts or 1,
        initial_backoff=_td(r.initial_backoff) if r.HasField("initial_backoff") else _DEFAULT_RETRY.initial_backoff,
        multiplier=r.backoff_multiplier or 2.0,
        max_backoff=_td(r.max_backoff) if r.HasField("max_backoff") else _DEFAULT_RETRY.max_backoff,
        jitter=r.jitter,
        non_retryable_errors=tuple(r.non_retryable_error_types),
    )  # fmt: skip


def _retry_to_proto(retry: RetryPolicy, target: template_pb2.RetryPolicy) -> None:
    target.max_attempts = retry.max_attempts
    target.backoff_multiplier = retry.multiplier
    _duration(retry.initial_backoff, target.initial_backoff)
    _duration(retry.max_backoff, target.max_backoff)
    target.jitter = retry.jitter
    target.non_retryable_error_types.extend(retry.non_retryable_errors)


def _step_from_proto(pb: template_pb2.StepSpec) -> StepSpec:
    retry = _retry_from_proto(pb.retry) if pb.HasField("retry") else _DEFAULT_RETRY
    return StepSpec(
        id=pb.id,
        type=pb.type,
        name=pb.name,
        description=pb.description,
        config=struct_to_dict(pb.config),
        dependencies=tuple(pb.dependencies),
        optional=pb.optional,
        retry=retry,
        timeout=_td(pb.timeout) if pb.HasField("timeout") else None,
        task_type=pb.task_type,
        schedule_to_start=(
            _td(pb.schedule_to_start_timeout) if pb.HasField("schedule_to_start_timeout") else None
        ),
        when=pb.when,
        dependency_rule=(
            DependencyRule.ANY_COMPLETED
            if pb.dependency_rule == template_pb2.DEPENDENCY_RULE_ANY_COMPLETED
            else DependencyRule.ALL_COMPLETED
        ),
    )


def _gate_from_proto(pb: template_pb2.QualityGate) -> GateSpec:
    kind = pb.WhichOneof("condition")
    external = pb.external
    return GateSpec(
        id=pb.id,
        name=pb.name,
        type=GateType(kind.upper()) if kind else None,
        step_id=pb.step_id,
        action=_gate_action_from_proto(pb.action),
        metric=pb.threshold.metric,
        operator=_operator_from_proto(pb.threshold.operator) if kind == "threshold" else None,
        threshold=pb.threshold.threshold,
        expression=pb.validation.expression,
        approval_timeout=_td(pb.approval.timeout) if pb.approval.HasField("timeout") else None,
        on_timeout=_APPROVAL_TIMEOUT.get(pb.approval.on_timeout),
        webhook_url=external.webhook_url,
        task_type=external.task_type,
        validator_timeout=_td(external.timeout) if external.HasField("timeout") else None,
        validator_retry=(
            _retry_from_proto(external.retry) if external.HasField("retry") else _DEFAULT_RETRY
        ),
    )


_APPROVAL_TIMEOUT = {
    template_pb2.APPROVAL_TIMEOUT_ACTION_APPROVE: ApprovalTimeout.APPROVE,
    template_pb2.APPROVAL_TIMEOUT_ACTION_REJECT: ApprovalTimeout.REJECT,
    template_pb2.APPROVAL_TIMEOUT_ACTION_FAIL: ApprovalTimeout.FAIL,
}


def template_to_proto(
    t: Template, target: template_pb2.Template | None = None
) -> template_pb2.Template:
    pb = target if target is not None else template_pb2.Template()
    pb.id, pb.name, pb.description = t.id, t.name, t.description
    pb.version, pb.predefined = t.version, t.predefined
    _timestamp(t.created_at, pb.create_time)
    for s in t.steps:
        if s.validates:
            continue  # an external gate's: the gate describes it
        step = pb.steps.add(
            id=s.id, type=s.type, name=s.name, description=s.description,
            dependencies=s.dependencies, optional=s.optional, task_type=s.task_type,
            when=s.when,
        )  # fmt: skip
        if s.dependency_rule is DependencyRule.ANY_COMPLETED:
            step.dependency_rule = template_pb2.DEPENDENCY_RULE_ANY_COMPLETED
        dict_to_struct(s.config, step.config)
        if s.retry != _DEFAULT_RETRY:
            _retry_to_proto(s.retry, step.retry)
        _duration(s.timeout, step.timeout)
        _duration(s.schedule_to_start, step.schedule_to_start_timeout)
    for g in t.gates:
        gate = pb.quality_gates.add(
            id=g.id, name=g.name, step_id=g.step_id, action=_gate_action_to_proto(g.action)
        )
        if g.type is GateType.THRESHOLD:
            gate.threshold.metric = g.metric
            gate.threshold.threshold = g.threshold
            if g.operator is not None:
                gate.threshold.operator = template_pb2.ComparisonOperator.Value(
                    f"COMPARISON_OPERATOR_{g.operator.value}"
                )
        elif g.type is GateType.VALIDATION:
            gate.validation.expression = g.expression
        elif g.type is GateType.EXTERNAL:
            gate.external.SetInParent()
            if g.webhook_url:
                gate.external.webhook_url = g.webhook_url
            else:
                gate.external.task_type = g.task_type
            _duration(g.validator_timeout, gate.external.timeout)
            if g.validator_retry != _DEFAULT_RETRY:
                _retry_to_proto(g.validator_retry, gate.external.retry)
        elif g.type is GateType.APPROVAL:
            gate.approval.SetInParent()
            _duration(g.approval_timeout, gate.approval.timeout)
            if g.on_timeout is not None:
                gate.approval.on_timeout = template_pb2.ApprovalTimeoutAction.Value(
                    f"APPROVAL_TIMEOUT_ACTION_{g.on_timeout.value}"
                )
    for p in t.params:
        param = pb.params.add(name=p.name, description=p.description, required=p.required)
        if p.default is not None:
            json_format.ParseDict(p.default, param.default_value)
    return pb


def step_type_to_proto(info: StepTypeInfo) -> template_pb2.StepType:
    pb = template_pb2.StepType(name=info.name, remote=info.remote)
    if info.config_schema is not None:
        # Set even when empty: "declares a schema" and "declares none" read differently.
        pb.config_schema.SetInParent()
        pb.config_schema.update(info.config_schema)
    return pb


# --- runs --------------------------------------------------------------------------------------


def options_from_proto(pb: workflow_pb2.ExecutionOptions) -> ExecutionOptions:
    return ExecutionOptions(
        auto_approve=pb.auto_approve, notify_on_completion=pb.notify_on_completion
    )


def run_to_proto(
    run: Run, now: datetime, into: workflow_pb2.Workflow | None = None, *, full: bool = True
) -> workflow_pb2.Workflow:
    """The run as a Workflow message; written `into` an empty one (a reply's field) when given,
    which spares copying the whole message into the reply. Without `full` (a list's BASIC
    view), the template and the steps' outputs are left out: they are most of a run's size."""
    pb = workflow_pb2.Workflow() if into is None else into
    pb.id, pb.owner, pb.status = run.id, run.owner, run_status_to_proto(run.status)
    pb.template_id, pb.template_version = run.template.id, run.template.version
    pb.error, pb.pause_reason, pb.paused_gate_id = run.error, run.pause_reason, run.paused_gate_id
    pb.last_sequence = run.last_sequence
    if run.rerun_of:
        pb.rerun_of, pb.rerun_from_step_id = run.rerun_of, run.rerun_from_step
        pb.reused_step_ids.extend(s.id for s in run.template.steps if run.steps[s.id].reused)
    if full:
        pb.template.MergeFromString(_template_bytes(run.template))
    dict_to_struct(run.params, pb.params)
    pb.options.auto_approve = run.options.auto_approve
    pb.options.notify_on_completion = run.options.notify_on_completion
    for ts, field in (
        (run.created_at, pb.create_time),
        (run.started_at, pb.start_time),
        (run.ended_at, pb.end_time),
        (run.updated_at, pb.update_time),
    ):
        _timestamp(ts, field)
    for step_spec in run.template.steps:
        s = run.steps[step_spec.id]
        step = pb.steps.add(
            step_id=s.step_id, name=step_spec.name, type=step_spec.type,
            status=_step_status(s.status), attempt=s.attempt, optional=step_spec.optional,
            error=s.error,
        )  # fmt: skip
        _timestamp(s.wake_at, step.wake_time)
        _timestamp(s.started_at, step.start_time)
        _timestamp(s.ended_at, step.end_time)
        _duration(s.duration, step.duration)
        if full and s.output is not None:
            dict_to_struct(s.output, step.output)
    for spec in run.template.gates:
        g = run.gates[spec.id]
        gate = pb.gate_results.add(
            gate_id=g.gate_id,
            name=spec.name,
            type=_GATE_TYPE[spec.type] if spec.type else 0,
            step_id=spec.step_id,
            action=_gate_action_to_proto(spec.action),
            status=_GATE_STATUS[g.status],
            message=g.message,
        )
        if g.observed_value is not None:
            gate.observed_value = g.observed_value
        _timestamp(g.decided_at, gate.decide_time)
        _timestamp(g.deadline, gate.deadline)
    m = metrics_mod.compute(run, now)
    pm = pb.metrics
    pm.total_steps, pm.completed_steps, pm.failed_steps = (
        m.total_steps,
        m.completed_steps,
        m.failed_steps,
    )
    pm.skipped_steps, pm.cancelled_steps = m.skipped_steps, m.cancelled_steps
    pm.quality_gates_passed, pm.quality_gates_failed = (
        m.quality_gates_passed,
        m.quality_gates_failed,
    )
    pm.total_attempts = m.total_attempts
    _duration(m.total_duration, pm.total_duration)
    for step_id, duration in m.step_durations.items():
        pm.step_durations[step_id].FromTimedelta(duration)
    return pb


@lru_cache(maxsize=1024)
def _template_bytes(template: Template) -> bytes:
    """A run's template as serialized proto, converted once: templates never change, and
    every Workflow message carries one. (Keyed by identity; the cache holds the key alive.)"""
    return template_to_proto(template).SerializeToString()


def event_to_proto(
    e: Event, into: event_pb2.WorkflowEvent | None = None
) -> event_pb2.WorkflowEvent:
    """The event as WatchWorkflow and ListWorkflowEvents send it; written into `into` (an
    empty message, e.g. a list reply's next element) when given."""
    pb = into if into is not None else event_pb2.WorkflowEvent()
    pb.workflow_id = e.run_id
    pb.sequence = e.sequence
    pb.type = _event_type(e.type)
    pb.step_id = e.step_id
    pb.gate_id = e.gate_id
    pb.attempt = e.attempt
    if e.run_status is not None:
        pb.workflow_status = run_status_to_proto(e.run_status)
    _timestamp(e.time, pb.time)
    dict_to_struct(e.details, pb.details)
    return pb


# --- analytics ---------------------------------------------------------------------------------


def analytics_to_proto(a: Analytics) -> service_pb2.GetAnalyticsResponse:
    pb = service_pb2.GetAnalyticsResponse()
    _timestamp(a.start, pb.start_time)
    _timestamp(a.end, pb.end_time)
    for t in a.templates:
        tp = pb.templates.add(
            template_id=t.name, runs=t.total, completed=t.count("completed"),
            failed=t.count("failed"), cancelled=t.count("cancelled"),
            success_rate=t.success_rate,
        )  # fmt: skip
        _durations(t.durations, tp.duration)
    for st in a.step_types:
        sp = pb.step_types.add(
            step_type=st.name, steps=st.total, completed=st.count("completed"),
            failed=st.count("failed"), skipped=st.count("skipped"),
            cancelled=st.count("cancelled"), attempts=st.attempts, success_rate=st.success_rate,
        )  # fmt: skip
        _durations(st.durations, sp.duration)
    for g in a.gate_types:
        pb.gate_types.add(
            gate_type=_GATE_TYPE[g.gate_type], gates=g.total, passed=g.count("passed"),
            failed=g.count("failed"), approved=g.count("approved"),
            rejected=g.count("rejected"), skipped=g.count("skipped"),
            undecided=g.count("undecided"), pass_rate=g.pass_rate,
        )  # fmt: skip
    return pb


def _durations(d: Durations, target: analytics_pb2.DurationStats) -> None:
    target.count = d.count
    for name in ("mean", "p50", "p95", "p99"):
        _duration(getattr(d, name), getattr(target, name))
