"""The transition table and the pure scheduler, without I/O."""

from __future__ import annotations

import pytest

from sluice.engine import commands
from sluice.engine.errors import FailedPrecondition, IllegalTransition
from sluice.engine.model import (
    Event,
    EventType,
    ExecutionOptions,
    GateAction,
    GateStatus,
    Run,
    RunStatus,
    StepSpec,
    StepStatus,
    Template,
)
from sluice.engine.scheduler import decide
from sluice.engine.transitions import apply, apply_all
from tests.unit.engine.conftest import T0, make_run, make_template, threshold

DIAMOND = make_template(
    StepSpec("a", "x"),
    StepSpec("b", "x", dependencies=("a",)),
    StepSpec("c", "x", dependencies=("a",)),
    StepSpec("d", "x", dependencies=("b", "c")),
)


def started(template: Template = DIAMOND) -> Run:
    run = make_run(template)
    apply(run, Event(EventType.WORKFLOW_CREATED, T0))
    apply(run, Event(EventType.WORKFLOW_STARTED, T0))
    return run


def complete(run: Run, step_id: str, output: dict[str, object] | None = None) -> None:
    apply(run, Event(EventType.STEP_COMPLETED, T0, step_id, details={"output": output or {}}))


def test_events_are_numbered_and_carry_the_resulting_status() -> None:
    run = make_run(DIAMOND)
    events = apply_all(
        run, [Event(EventType.WORKFLOW_CREATED, T0), Event(EventType.WORKFLOW_STARTED, T0)]
    )
    assert [(e.sequence, e.run_status) for e in events] == [
        (1, RunStatus.PENDING),
        (2, RunStatus.RUNNING),
    ]
    assert run.last_sequence == 2


@pytest.mark.parametrize(
    "kind", [EventType.WORKFLOW_RESUMED, EventType.WORKFLOW_COMPLETED, EventType.WORKFLOW_PAUSED]
)
def test_illegal_run_transitions_raise_and_change_nothing(kind: EventType) -> None:
    run = make_run(DIAMOND)
    with pytest.raises(IllegalTransition):
        apply(run, Event(kind, T0))
    assert (run.status, run.last_sequence) == (RunStatus.PENDING, 0)


def test_a_completed_step_cannot_complete_again() -> None:
    run = started()
    apply(run, Event(EventType.STEP_STARTED, T0, "a", attempt=1))
    complete(run, "a")
    with pytest.raises(IllegalTransition):
        complete(run, "a")


def test_decide_starts_only_the_roots_then_the_ready_ones_in_parallel() -> None:
    run = started()
    first = decide(run, T0, free_slots=8)
    assert [(e.type, e.step_id) for e in first.events] == [(EventType.STEP_STARTED, "a")]
    run = first.run
    complete(run, "a")
    second = decide(run, T0, free_slots=8)
    assert sorted(e.step_id for e in second.events) == ["b", "c"]


def test_decide_respects_the_parallelism_bound() -> None:
    run = started()
    run = decide(run, T0, 8).run
    complete(run, "a")
    assert [e.step_id for e in decide(run, T0, free_slots=1).events] == ["b"]


def test_decide_does_nothing_while_paused() -> None:
    run = started()
    apply(run, Event(EventType.WORKFLOW_PAUSED, T0))
    assert decide(run, T0, 8).events == []


def test_failed_optional_step_skips_dependents_but_the_run_completes() -> None:
    template = make_template(
        StepSpec("a", "x", optional=True), StepSpec("b", "x", dependencies=("a",))
    )
    run = decide(started(template), T0, 8).run
    apply(run, Event(EventType.STEP_FAILED, T0, "a", details={"error": "boom"}))
    decision = decide(run, T0, 8)
    assert [(e.type, e.step_id) for e in decision.events] == [
        (EventType.STEP_SKIPPED, "b"),
        (EventType.WORKFLOW_COMPLETED, ""),
    ]


def test_required_failure_cancels_running_siblings_and_fails_the_run() -> None:
    template = make_template(
        StepSpec("a", "x"), StepSpec("b", "x"), StepSpec("c", "x", dependencies=("a",))
    )
    run = decide(started(template), T0, 8).run
    apply(run, Event(EventType.STEP_FAILED, T0, "a", details={"error": "boom"}))
    decision = decide(run, T0, 8)
    assert [(e.type, e.step_id) for e in decision.events] == [
        (EventType.STEP_CANCELLED, "b"),
        (EventType.STEP_SKIPPED, "c"),
        (EventType.WORKFLOW_FAILED, ""),
    ]
    assert decision.run.error == "step a failed: boom"


@pytest.mark.parametrize(
    ("action", "status"),
    [(GateAction.CONTINUE, RunStatus.RUNNING), (GateAction.PAUSE, RunStatus.PAUSED),
     (GateAction.ABORT, RunStatus.FAILED)],
)  # fmt: skip
def test_gate_actions(action: GateAction, status: RunStatus) -> None:
    template = make_template(
        StepSpec("a", "x"),
        StepSpec("b", "x", dependencies=("a",)),
        gates=(threshold("g", "a", action),),
    )
    run = decide(started(template), T0, 8).run
    complete(run, "a", {"score": 0.5})
    decision = decide(run, T0, 8)
    assert decision.run.status is status
    assert decision.run.gates["g"].status is GateStatus.FAILED
    assert decision.run.gates["g"].observed_value == 0.5
    started_b = any(e.type is EventType.STEP_STARTED for e in decision.events)
    assert started_b is (action is GateAction.CONTINUE)


def test_resume_approves_the_gate_the_run_was_paused_on() -> None:
    template = make_template(StepSpec("a", "x"), gates=(threshold("g", "a", GateAction.PAUSE),))
    run = decide(started(template), T0, 8).run
    complete(run, "a", {"score": 0.1})
    run = decide(run, T0, 8).run
    resumed = commands.resume(run, T0, None).run
    assert resumed.status is RunStatus.RUNNING
    assert resumed.gates["g"].status is GateStatus.APPROVED


def test_commands_refuse_illegal_calls_with_a_sentence() -> None:
    run = make_run(DIAMOND)
    with pytest.raises(FailedPrecondition, match="only a RUNNING workflow can be paused"):
        commands.pause(run, T0, "")
    done = commands.cancel(run, T0, "").run
    assert done.status is RunStatus.CANCELLED
    assert all(s.status is StepStatus.SKIPPED for s in done.steps.values())
    with pytest.raises(FailedPrecondition, match="cannot run again"):
        commands.start(done, T0, ExecutionOptions())
