"""Domain values <-> JSON-ready dicts, for the columns that hold structured data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sluice.engine.model import (
    ApprovalTimeout,
    DependencyRule,
    ExecutionOptions,
    GateAction,
    GateSpec,
    GateType,
    Operator,
    ParamSpec,
    RetryPolicy,
    StepSpec,
    Template,
)


def template_to_json(t: Template) -> dict[str, Any]:
    return {
        "id": t.id,
        "name": t.name,
        "description": t.description,
        "version": t.version,
        "predefined": t.predefined,
        "owner": t.owner,
        "createdAt": t.created_at.isoformat() if t.created_at else None,
        "params": [
            {
                "name": p.name,
                "description": p.description,
                "required": p.required,
                "default": p.default,
            }
            for p in t.params
        ],
        "steps": [_step_to_json(s) for s in t.steps],
        "gates": [_gate_to_json(g) for g in t.gates],
    }


def template_from_json(d: dict[str, Any]) -> Template:
    created = d.get("createdAt")
    return Template(
        id=d["id"],
        name=d.get("name", ""),
        description=d.get("description", ""),
        version=d.get("version", 0),
        predefined=d.get("predefined", False),
        owner=d.get("owner", ""),
        created_at=datetime.fromisoformat(created) if created else None,
        params=tuple(
            ParamSpec(
                p["name"], p.get("description", ""), p.get("required", False), p.get("default")
            )
            for p in d.get("params", [])
        ),
        steps=tuple(_step_from_json(s) for s in d.get("steps", [])),
        gates=tuple(_gate_from_json(g) for g in d.get("gates", [])),
    )


def _step_to_json(s: StepSpec) -> dict[str, Any]:
    return {
        "id": s.id,
        "type": s.type,
        "name": s.name,
        "description": s.description,
        "config": dict(s.config),
        "dependencies": list(s.dependencies),
        "optional": s.optional,
        "retry": _retry_to_json(s.retry),
        # Keys only when set: a template's stored body (and its snapshot key) stays the same
        # as before these existed.
        **({"when": s.when} if s.when else {}),
        **({"validates": s.validates} if s.validates else {}),
        **(
            {"dependencyRule": s.dependency_rule.value}
            if s.dependency_rule is not DependencyRule.ALL_COMPLETED
            else {}
        ),
        "timeout": s.timeout.total_seconds() if s.timeout is not None else None,
        **(
            {
                "taskType": s.task_type,
                "scheduleToStart": _seconds(s.schedule_to_start),
            }
            if s.remote
            else {}
        ),
    }


def _retry_to_json(r: RetryPolicy) -> dict[str, Any]:
    return {
        "maxAttempts": r.max_attempts,
        "initialBackoff": r.initial_backoff.total_seconds(),
        "multiplier": r.multiplier,
        "maxBackoff": r.max_backoff.total_seconds(),
        "jitter": r.jitter,
        **({"nonRetryable": list(r.non_retryable_errors)} if r.non_retryable_errors else {}),
    }


def _retry_from_json(r: dict[str, Any]) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=r["maxAttempts"],
        initial_backoff=timedelta(seconds=r["initialBackoff"]),
        multiplier=r["multiplier"],
        max_backoff=timedelta(seconds=r["maxBackoff"]),
        jitter=r.get("jitter", 0.0),  # stored before retries had jitter: none
        non_retryable_errors=tuple(r.get("nonRetryable", ())),
    )


def _seconds(value: timedelta | None) -> float | None:
    return value.total_seconds() if value is not None else None


def _step_from_json(d: dict[str, Any]) -> StepSpec:
    r = d["retry"]
    timeout = d.get("timeout")
    return StepSpec(
        id=d["id"],
        type=d["type"],
        name=d.get("name", ""),
        description=d.get("description", ""),
        config=d.get("config", {}),
        dependencies=tuple(d.get("dependencies", ())),
        optional=d.get("optional", False),
        retry=_retry_from_json(r),
        when=d.get("when", ""),
        dependency_rule=DependencyRule(d.get("dependencyRule", "ALL_COMPLETED")),
        validates=d.get("validates", ""),
        timeout=timedelta(seconds=timeout) if timeout is not None else None,
        task_type=d.get("taskType", ""),
        schedule_to_start=(
            timedelta(seconds=d["scheduleToStart"])
            if d.get("scheduleToStart") is not None
            else None
        ),
    )


def _gate_to_json(g: GateSpec) -> dict[str, Any]:
    return {
        "id": g.id,
        "name": g.name,
        "type": g.type.value if g.type else None,
        "stepId": g.step_id,
        "action": g.action.value if g.action else None,
        "metric": g.metric,
        "operator": g.operator.value if g.operator else None,
        "threshold": g.threshold,
        "expression": g.expression,
        **(
            {"approvalTimeout": g.approval_timeout.total_seconds()}
            if g.approval_timeout is not None
            else {}
        ),
        **({"onTimeout": g.on_timeout.value} if g.on_timeout is not None else {}),
        **(
            {
                "webhookUrl": g.webhook_url,
                "taskType": g.task_type,
                "validatorTimeout": _seconds(g.validator_timeout),
                "validatorRetry": _retry_to_json(g.validator_retry),
            }
            if g.type is GateType.EXTERNAL
            else {}
        ),
    }


def _gate_from_json(d: dict[str, Any]) -> GateSpec:
    return GateSpec(
        id=d["id"],
        name=d.get("name", ""),
        type=GateType(d["type"]) if d.get("type") else None,
        step_id=d["stepId"],
        action=GateAction(d["action"]) if d.get("action") else None,
        metric=d.get("metric", ""),
        operator=Operator(d["operator"]) if d.get("operator") else None,
        threshold=d.get("threshold", 0.0),
        expression=d.get("expression", ""),
        approval_timeout=_delta(d.get("approvalTimeout")),
        on_timeout=ApprovalTimeout(d["onTimeout"]) if d.get("onTimeout") else None,
        webhook_url=d.get("webhookUrl", ""),
        task_type=d.get("taskType", ""),
        validator_timeout=_delta(d.get("validatorTimeout")),
        validator_retry=_retry_from_json(d["validatorRetry"])
        if "validatorRetry" in d
        else RetryPolicy(),
    )


def _delta(seconds: float | None) -> timedelta | None:
    return timedelta(seconds=seconds) if seconds is not None else None


def options_to_json(o: ExecutionOptions) -> dict[str, bool]:
    return {"autoApprove": o.auto_approve, "notifyOnCompletion": o.notify_on_completion}


def options_from_json(d: dict[str, Any]) -> ExecutionOptions:
    return ExecutionOptions(bool(d.get("autoApprove")), bool(d.get("notifyOnCompletion")))


def utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every time we store is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
