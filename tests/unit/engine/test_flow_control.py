"""Conditions, dependency rules, wait steps, approval deadlines and non-retryable error types,
decided by the pure engine: state in, events out, time passed by hand."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from sluice.engine.gates import GateOutcome
from sluice.engine.model import (
    ApprovalTimeout,
    DependencyRule,
    Event,
    EventType,
    GateAction,
    GateSpec,
    GateStatus,
    GateType,
    RetryPolicy,
    Run,
    RunStatus,
    StepSpec,
    StepStatus,
    Template,
)
from sluice.engine.scheduler import (
    Decision,
    attempt_failed,
    deadline_timer,
    decide,
    wake_at,
    wake_timer,
)
from sluice.engine.transitions import apply
from sluice.engine.validation import validate_template
from sluice.engine.validators import verdict, with_validators
from sluice.steps import builtin_registry

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def started(template: Template, params: dict[str, object] | None = None) -> Run:
    run = Run.new(id="r1", owner="ann", template=template, params=params or {}, now=T0)
    apply(run, Event(EventType.WORKFLOW_CREATED, T0))
    apply(run, Event(EventType.WORKFLOW_STARTED, T0))
    return run


def step(step_id: str, *deps: str, **more: object) -> StepSpec:
    return StepSpec(step_id, "generate", config={"contentType": "email"}, dependencies=deps,
                    **more)  # type: ignore[arg-type]  # fmt: skip


def settle(run: Run, now: datetime, outputs: dict[str, dict[str, object]]) -> Run:
    """Decide at `now`, complete every (non-wait) step that started with its output from
    `outputs`, and repeat until nothing more happens: the run as it then rests."""
    while True:
        decision = decide(run, now, free_slots=8)
        if not decision.events:
            return run
        run = decision.run
        for event in decision.events:
            if event.type is EventType.STEP_STARTED and not run.template.step(event.step_id).waits:
                done = Event(EventType.STEP_COMPLETED, now, event.step_id, attempt=event.attempt,
                             details={"output": outputs.get(event.step_id, {})})  # fmt: skip
                apply(run, done)


BRANCHES = Template(
    "branches",
    steps=(
        step("check"),
        step("instagram", "check", when='steps.check.platform == "instagram"'),
        step("resize", "instagram"),
        step("facebook", "check", when='steps.check.platform == "facebook"'),
        step("report", "resize", "facebook", dependency_rule=DependencyRule.ANY_COMPLETED),
        step("strict", "resize", "facebook"),
    ),
)


def test_a_false_condition_skips_the_step_and_its_branch_with_the_reason() -> None:
    done = settle(started(BRANCHES), T0, {"check": {"platform": "facebook"}})

    status = {s: r.status for s, r in done.steps.items()}
    assert status == {
        "check": StepStatus.COMPLETED,
        "instagram": StepStatus.SKIPPED,
        "resize": StepStatus.SKIPPED,  # skipped propagates down the branch not taken
        "facebook": StepStatus.COMPLETED,
        "report": StepStatus.COMPLETED,  # ANY_COMPLETED: the join runs
        "strict": StepStatus.SKIPPED,  # ALL_COMPLETED: a skipped dependency skips it
    }
    assert done.status is RunStatus.COMPLETED
    assert done.steps["instagram"].error == (
        'condition steps.check.platform == "instagram" is false; steps.check.platform = "facebook"'
    )
    assert done.steps["resize"].error == "dependency instagram skipped"


def test_a_true_condition_runs_the_step() -> None:
    done = settle(started(BRANCHES), T0, {"check": {"platform": "instagram"}})
    assert done.steps["instagram"].status is StepStatus.COMPLETED
    assert done.steps["resize"].status is StepStatus.COMPLETED
    assert done.steps["facebook"].status is StepStatus.SKIPPED
    assert done.steps["report"].status is StepStatus.COMPLETED


def test_a_join_whose_dependencies_were_all_skipped_is_skipped() -> None:
    done = settle(started(BRANCHES), T0, {"check": {"platform": "tiktok"}})
    assert done.steps["report"].status is StepStatus.SKIPPED
    assert done.steps["report"].error == "no dependency completed"
    assert done.status is RunStatus.COMPLETED


def test_a_condition_that_cannot_be_evaluated_fails_the_run_saying_why() -> None:
    done = settle(started(BRANCHES), T0, {"check": {}})
    assert done.status is RunStatus.FAILED
    assert "the condition of step instagram could not be evaluated" in done.error
    assert "steps.check.platform is missing" in done.error


def test_conditions_are_validated_at_registration() -> None:
    bad = Template(
        "bad",
        steps=(
            step("a"),
            step("b", "a", when="output.x > 1"),
            step("c", "a", when="steps.b.x == 1"),
            step("d", when="params.x +"),
            step("e", dependency_rule=DependencyRule.ANY_COMPLETED),
        ),
    )
    found = {v.field: v.description for v in validate_template(bad, builtin_registry())}
    assert "unknown variable(s) output" in found["steps[1].when"]
    assert "reads steps.b, which is not upstream of 'c'" in found["steps[2].when"]
    assert "does not parse" in found["steps[3].when"]
    assert "needs dependencies" in found["steps[4].dependency_rule"]


WAITS = Template(
    "waits",
    steps=(
        step("a"),
        StepSpec("pause", "wait", config={"duration": "90s"}, dependencies=("a",)),
        StepSpec("slot", "wait", config={"until": "{{ steps.a.at }}"}, dependencies=("a",)),
        step("b", "pause", "slot"),
    ),
)


def test_a_wait_step_holds_until_its_time_then_completes_durably_listed_as_a_timer() -> None:
    slot = T0 + timedelta(minutes=5)
    run = settle(started(WAITS), T0, {"a": {"at": slot.isoformat()}})
    assert run.steps["pause"].status is StepStatus.RUNNING
    assert run.steps["pause"].wake_at == T0 + timedelta(seconds=90)
    assert run.steps["slot"].wake_at == slot
    assert wake_at(run) == T0 + timedelta(seconds=90)
    assert decide(run, T0 + timedelta(seconds=89), free_slots=8).events == []

    # The wait's start set its durable timer.
    replay = started(WAITS)
    apply(replay, Event(EventType.STEP_STARTED, T0, "a", attempt=1))
    apply(replay, Event(EventType.STEP_COMPLETED, T0, "a", attempt=1,
                        details={"output": {"at": slot.isoformat()}}))  # fmt: skip
    first = decide(replay, T0, free_slots=8)
    assert first.timers == {
        wake_timer("pause"): T0 + timedelta(seconds=90),
        wake_timer("slot"): slot,
    }

    later = decide(run, T0 + timedelta(seconds=90), free_slots=8)
    assert [(e.type, e.step_id) for e in later.events] == [(EventType.STEP_COMPLETED, "pause")]
    assert later.timers == {wake_timer("pause"): None}
    assert later.events[0].details["output"]["wakeAt"] == (T0 + timedelta(seconds=90)).isoformat()

    done = settle(later.run, slot, {})
    assert done.steps["b"].status is StepStatus.COMPLETED
    assert done.status is RunStatus.COMPLETED


def test_waits_take_no_slot_and_a_bad_until_fails_the_step() -> None:
    many = Template("many", steps=tuple(
        StepSpec(f"w{i}", "wait", config={"duration": "1h"}) for i in range(12)
    ))  # fmt: skip
    decision = decide(started(many), T0, free_slots=8)
    assert sum(e.type is EventType.STEP_STARTED for e in decision.events) == 12

    done = settle(started(WAITS), T0, {"a": {"at": "tomorrow"}})
    assert done.steps["slot"].status is StepStatus.FAILED
    assert "is not an ISO 8601 time" in done.steps["slot"].error
    assert done.status is RunStatus.FAILED


APPROVAL = GateSpec("ok", GateType.APPROVAL, "a", GateAction.PAUSE,
                    approval_timeout=timedelta(seconds=2))  # fmt: skip


def awaiting(on_timeout: ApprovalTimeout | None) -> Run:
    gate = dataclasses.replace(APPROVAL, on_timeout=on_timeout)
    template = Template("approve", steps=(step("a"), step("b", "a")), gates=(gate,))
    run = settle(started(template), T0, {})
    assert run.status is RunStatus.PAUSED
    assert run.gates["ok"].status is GateStatus.AWAITING_APPROVAL
    assert run.gates["ok"].deadline == T0 + timedelta(seconds=2)
    assert wake_at(run) == T0 + timedelta(seconds=2)
    assert decide(run, T0 + timedelta(seconds=1), free_slots=8).events == []
    return run


def test_an_approval_timeout_rejects_by_default_and_the_run_fails_at_the_deadline() -> None:
    decision = decide(awaiting(None), T0 + timedelta(seconds=2), free_slots=8)
    run = decision.run
    assert run.gates["ok"].status is GateStatus.REJECTED
    assert run.gates["ok"].deadline is None
    assert run.status is RunStatus.FAILED
    assert "gate ok rejected: no decision by the deadline" in run.error
    assert decision.timers == {deadline_timer("ok"): None}


def test_an_approval_timeout_may_approve_or_fail() -> None:
    approved = settle(awaiting(ApprovalTimeout.APPROVE), T0 + timedelta(seconds=3), {})
    assert approved.gates["ok"].status is GateStatus.APPROVED
    assert approved.status is RunStatus.COMPLETED

    failed = decide(awaiting(ApprovalTimeout.FAIL), T0 + timedelta(seconds=3), 8).run
    assert failed.gates["ok"].status is GateStatus.FAILED
    assert failed.status is RunStatus.FAILED
    assert "gate ok timed out" in failed.error


def test_a_non_retryable_error_type_fails_at_once_others_retry() -> None:
    policy = RetryPolicy(max_attempts=5, non_retryable_errors=("CardDeclined",))
    template = Template("pay", steps=(step("charge", retry=policy),))
    for error_type, expected in (("CardDeclined", StepStatus.FAILED),
                                 ("Timeout", StepStatus.RETRYING),
                                 ("", StepStatus.RETRYING)):  # fmt: skip
        run = started(template)
        apply(run, Event(EventType.STEP_STARTED, T0, "charge", attempt=1))
        decision = Decision(run)
        attempt_failed(decision, T0, "charge", "no", retryable=True, error_type=error_type)
        assert run.steps["charge"].status is expected, error_type
        [event] = decision.events
        assert event.details.get("errorType", "") == error_type
        assert event.details.get("nonRetryable", False) is (expected is StepStatus.FAILED)


EXTERNAL = GateSpec("brand", GateType.EXTERNAL, "a", GateAction.PAUSE,
                    webhook_url="https://hooks.example.com/v")  # fmt: skip


def test_a_validator_answer_becomes_the_gate_outcome() -> None:
    assert verdict(EXTERNAL, {"body": {"passed": False, "score": 0.4, "message": "no"}}) == (
        GateOutcome(False, "no", 0.4)
    )
    assert verdict(EXTERNAL, {"body": {"passed": True}}) == GateOutcome(True, "passed", None)
    for bad in ({"body": {"passed": "yes"}}, {"body": "ok"}, {}, None):
        outcome = verdict(EXTERNAL, bad)
        assert not outcome.passed and "is not {" in outcome.message
    worker_gate = dataclasses.replace(EXTERNAL, webhook_url="", task_type="brand.review")
    assert verdict(worker_gate, {"passed": True, "score": 3}) == GateOutcome(True, "passed", 3.0)


def test_an_external_gate_asks_its_validator_step_then_decides() -> None:
    template = with_validators(
        Template("ext", steps=(step("a"), step("b", "a")), gates=(EXTERNAL,))
    )
    assert template.step("brand").validates == "brand"
    assert template.step("brand").dependencies == ("a",) and template.step("brand").optional
    assert with_validators(template) is template  # added once

    run = settle(started(template), T0, {"brand": {"body": {"passed": False, "score": 0.1}}})
    assert run.status is RunStatus.PAUSED and run.paused_gate_id == "brand"
    assert run.gates["brand"].observed_value == 0.1
    assert run.steps["b"].status is StepStatus.PENDING


def test_templates_round_trip_through_the_api_without_their_validator_steps() -> None:
    from google.protobuf import json_format

    from sluice.api.convert import template_from_proto, template_to_proto
    from sluice.store.codec import template_from_json, template_to_json
    from sluice.v1 import template_pb2

    sent: dict[str, Any] = {
        "id": "ext",
        "steps": [{"id": "a", "type": "generate", "config": {"contentType": "email"},
                   "when": "params.go == true",
                   "retry": {"maxAttempts": 2, "nonRetryableErrorTypes": ["HTTP400"]}},
                  {"id": "w", "type": "wait", "dependencies": ["a"], "config": {"duration": "1m"},
                   "dependencyRule": "DEPENDENCY_RULE_ANY_COMPLETED"}],
        "qualityGates": [
            {"id": "brand", "stepId": "a", "action": "GATE_ACTION_PAUSE",
             "external": {"taskType": "brand.review", "timeout": "30s",
                          "retry": {"maxAttempts": 3}}},
            {"id": "ok", "stepId": "w",
             "approval": {"timeout": "3600s", "onTimeout": "APPROVAL_TIMEOUT_ACTION_APPROVE"}},
        ],
    }  # fmt: skip
    template = template_from_proto(json_format.ParseDict(sent, template_pb2.Template()))
    assert [s.id for s in template.steps] == ["a", "w", "brand"]
    stored = template_from_json(template_to_json(template))
    assert [s.id for s in stored.steps] == ["a", "w", "brand"]
    back = json_format.MessageToDict(template_to_proto(stored))
    assert [s["id"] for s in back["steps"]] == ["a", "w"]
    assert back["qualityGates"][0]["external"]["taskType"] == "brand.review"
    assert back["qualityGates"][0]["external"]["retry"]["maxAttempts"] == 3
    assert back["qualityGates"][1]["approval"] == sent["qualityGates"][1]["approval"]
    assert back["steps"][0]["when"] == "params.go == true"
    assert back["steps"][0]["retry"]["nonRetryableErrorTypes"] == ["HTTP400"]
    assert back["steps"][1]["dependencyRule"] == "DEPENDENCY_RULE_ANY_COMPLETED"
