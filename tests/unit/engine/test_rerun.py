"""Rerun (which steps a new run takes over, and its first events) and "retry now", without I/O."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sluice.engine import commands
from sluice.engine.errors import FailedPrecondition, IllegalTransition, InvalidArgument
from sluice.engine.model import (
    DependencyRule,
    Event,
    EventType,
    ExecutionOptions,
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
from sluice.engine.rerun import rerun, reused_steps
from sluice.engine.scheduler import attempt_failed, decide, wake_timer
from sluice.engine.transitions import apply, apply_all
from tests.unit.engine.conftest import T0, make_run, make_template, threshold

LATER = T0 + timedelta(hours=1)
CHAIN = make_template(
    StepSpec("s1", "x"),
    StepSpec("s2", "x", dependencies=("s1",)),
    StepSpec("s3", "x", dependencies=("s2",)),
    StepSpec("s4", "x", dependencies=("s3",)),
    StepSpec("s5", "x", dependencies=("s4",)),
)
DIAMOND = make_template(
    StepSpec("a", "x"),
    StepSpec("b", "x", dependencies=("a",)),
    StepSpec("c", "x", dependencies=("a",)),
    StepSpec("d", "x", dependencies=("b", "c")),
)


def drive(
    template: Template,
    outcomes: dict[str, bool],
    *,
    cancel_at: str = "",
    params: dict[str, object] | None = None,
) -> Run:
    """A run of `template` taken through the scheduler: each step started succeeds (output
    {"from": step}) or fails as `outcomes` says (missing: succeeds); with `cancel_at`, the run
    is cancelled as that step starts."""
    run = make_run(template)
    run.params = dict(params or {})
    apply(run, Event(EventType.WORKFLOW_CREATED, T0))
    run = commands.start(run, T0, ExecutionOptions()).run
    while run.status is RunStatus.RUNNING:
        decision = decide(run, T0, free_slots=8)
        run = decision.run
        for event in decision.events:
            if event.type is not EventType.STEP_STARTED:
                continue
            if event.step_id == cancel_at:
                return commands.cancel(run, T0, "stop").run
            if outcomes.get(event.step_id, True):
                output = {"from": event.step_id}
                apply(
                    run,
                    Event(
                        EventType.STEP_COMPLETED,
                        T0,
                        event.step_id,
                        attempt=1,
                        details={"output": output},
                    ),
                )
            else:
                apply(
                    run,
                    Event(
                        EventType.STEP_FAILED,
                        T0,
                        event.step_id,
                        attempt=1,
                        details={"error": "boom"},
                    ),
                )
    return run


def test_a_chain_that_failed_at_step_4_reuses_steps_1_to_3() -> None:
    original = drive(CHAIN, {"s4": False})
    assert original.status is RunStatus.FAILED

    assert reused_steps(original) == ("s1", "s2", "s3")


def test_from_a_completed_step_it_and_everything_downstream_run_again() -> None:
    original = drive(CHAIN, {"s4": False})

    assert reused_steps(original, "s2") == ("s1",)
    assert reused_steps(original, "s1") == ()
    assert reused_steps(original, "s5") == ("s1", "s2", "s3")  # s4 did not complete anyway


def test_a_parallel_branch_that_completed_is_reused_and_the_failed_one_runs() -> None:
    original = drive(DIAMOND, {"c": False})
    assert (original.steps["b"].status, original.steps["d"].status) == (
        StepStatus.COMPLETED,
        StepStatus.SKIPPED,
    )

    assert reused_steps(original) == ("a", "b")
    assert reused_steps(original, "b") == ("a",)  # c and d did not complete; b is rerun


# A branch taken or not by a condition, joined again: p fails after the join.
BRANCHES = make_template(
    StepSpec("a", "x"),
    StepSpec("fast", "x", dependencies=("a",), when="params.fast == true"),
    StepSpec("slow", "x", dependencies=("a",), optional=True),
    StepSpec("join", "x", dependencies=("fast", "slow"),
             dependency_rule=DependencyRule.ANY_COMPLETED),
    StepSpec("p", "x", dependencies=("join",)),
)  # fmt: skip


def test_a_join_after_a_branch_not_taken_is_reused_and_the_branch_skipped_again() -> None:
    original = drive(BRANCHES, {"p": False}, params={"fast": False})
    assert [s.status for s in original.steps.values()] == [
        StepStatus.COMPLETED, StepStatus.SKIPPED, StepStatus.COMPLETED, StepStatus.COMPLETED,
        StepStatus.FAILED,
    ]  # fmt: skip

    assert reused_steps(original) == ("a", "slow", "join")
    run = rerun(original, id="r2", now=LATER).run
    started = commands.start(run, LATER, ExecutionOptions()).run
    decision = decide(started, LATER, free_slots=8)
    assert [(e.type, e.step_id) for e in decision.events] == [
        (EventType.STEP_SKIPPED, "fast"),  # its condition, on the same params, again
        (EventType.STEP_STARTED, "p"),
    ]


def test_a_join_after_a_failed_branch_runs_again() -> None:
    original = drive(BRANCHES, {"slow": False, "p": False}, params={"fast": True})
    assert original.steps["join"].status is StepStatus.COMPLETED  # slow was optional

    # slow runs again and may complete this time: the join must see it.
    assert reused_steps(original) == ("a", "fast")


def test_a_cancelled_run_reuses_what_completed_before_the_cancel() -> None:
    original = drive(CHAIN, {}, cancel_at="s3")
    assert original.status is RunStatus.CANCELLED

    assert reused_steps(original) == ("s1", "s2")


def test_the_new_run_records_its_origin_and_takes_over_the_outputs() -> None:
    original = drive(CHAIN, {"s4": False})

    decision = rerun(original, id="r2", now=LATER)

    run = decision.run
    assert (run.id, run.status, run.rerun_of, run.rerun_from_step) == (
        "r2", RunStatus.PENDING, "r", "",
    )  # fmt: skip
    assert (run.params, run.template) == (original.params, original.template)
    assert [(e.type, e.step_id, dict(e.details)) for e in decision.events] == [
        (EventType.WORKFLOW_CREATED, "", {"templateId": "t", "rerunOf": "r"}),
        *[
            (EventType.STEP_COMPLETED, s, {"output": {"from": s}, "reusedFrom": "r"})
            for s in ("s1", "s2", "s3")
        ],
    ]
    assert [s.step_id for s in run.steps.values() if s.reused] == ["s1", "s2", "s3"]
    assert {s: run.steps[s].output for s in ("s1", "s2", "s3")} == {
        s: original.steps[s].output for s in ("s1", "s2", "s3")
    }
    assert (run.steps["s4"].status, run.steps["s5"].status) == (StepStatus.PENDING,) * 2


def test_once_started_only_the_steps_not_taken_over_run() -> None:
    original = drive(CHAIN, {"s4": False})
    run = rerun(original, id="r2", now=LATER).run

    started = commands.start(run, LATER, ExecutionOptions()).run
    decision = decide(started, LATER, free_slots=8)

    assert [(e.type, e.step_id, e.attempt) for e in decision.events] == [
        (EventType.STEP_STARTED, "s4", 1)
    ]
    assert [s.attempt for s in decision.run.steps.values()] == [0, 0, 0, 1, 0]


def test_a_rerun_from_a_step_names_it_and_leaves_it_pending() -> None:
    original = drive(CHAIN, {"s4": False})

    decision = rerun(original, id="r2", now=LATER, from_step="s2")

    assert decision.run.rerun_from_step == "s2"
    assert dict(decision.events[0].details)["fromStep"] == "s2"
    assert [s for s, step in decision.run.steps.items() if step.reused] == ["s1"]
    assert decision.run.steps["s2"].status is StepStatus.PENDING


def test_replaying_a_reruns_log_gives_its_state() -> None:
    original = drive(CHAIN, {"s4": False})
    decision = rerun(original, id="r2", now=LATER, from_step="s3")

    replayed = Run.new(id="r2", owner="u", template=CHAIN, params={}, now=LATER)
    apply_all(replayed, decision.events)

    assert (replayed.rerun_of, replayed.rerun_from_step) == ("r", "s3")
    assert replayed.steps == decision.run.steps


def test_a_rerun_of_a_rerun_reuses_what_the_first_rerun_reused() -> None:
    original = drive(CHAIN, {"s4": False})
    first = rerun(original, id="r2", now=LATER).run
    first = commands.cancel(first, LATER, "again").run

    assert reused_steps(first) == ("s1", "s2", "s3")
    second = rerun(first, id="r3", now=LATER).run
    assert second.steps["s2"].output == {"from": "s2"}
    assert second.rerun_of == "r2"


@pytest.mark.parametrize("status", [RunStatus.PENDING, RunStatus.RUNNING, RunStatus.COMPLETED])
def test_only_a_failed_or_cancelled_run_can_be_rerun(status: RunStatus) -> None:
    original = drive(CHAIN, {})
    original.status = status
    with pytest.raises(FailedPrecondition, match="only a FAILED or CANCELLED workflow"):
        rerun(original, id="r2", now=LATER)


def test_an_unknown_from_step_is_a_field_violation() -> None:
    original = drive(CHAIN, {"s4": False})
    with pytest.raises(InvalidArgument) as refused:
        rerun(original, id="r2", now=LATER, from_step="nope")
    [violation] = refused.value.violations
    assert violation.field == "from_step_id"
    assert "s1, s2, s3, s4, s5" in violation.description


# --- gates ------------------------------------------------------------------------------------

GATED = make_template(
    StepSpec("a", "x"),
    StepSpec("b", "x", dependencies=("a",)),
    StepSpec("c", "x", dependencies=("b",)),
    gates=(
        threshold("passed", "a", GateAction.PAUSE, value=0),
        threshold("overridden", "a", GateAction.CONTINUE, value=1),
        GateSpec("ok", GateType.APPROVAL, "a", None),
    ),
)


def gated_original() -> Run:
    """a completed with its gates: one passed, one failed with CONTINUE, one approved; then b
    failed."""
    run = make_run(GATED)
    apply(run, Event(EventType.WORKFLOW_CREATED, T0))
    run = commands.start(run, T0, ExecutionOptions(auto_approve=True)).run
    run = decide(run, T0, 8).run
    apply(
        run, Event(EventType.STEP_COMPLETED, T0, "a", attempt=1, details={"output": {"score": 0.5}})
    )
    run = decide(run, T0, 8).run
    apply(run, Event(EventType.STEP_FAILED, T0, "b", attempt=1, details={"error": "boom"}))
    return decide(run, T0, 8).run


def test_gates_that_let_the_run_go_on_keep_their_original_results() -> None:
    original = gated_original()
    assert original.status is RunStatus.FAILED
    assert [g.status for g in original.gates.values()] == [
        GateStatus.PASSED, GateStatus.FAILED, GateStatus.APPROVED,
    ]  # fmt: skip

    decision = rerun(original, id="r2", now=LATER)

    gates = decision.run.gates
    for gate_id in ("passed", "overridden", "ok"):
        assert (gates[gate_id].status, gates[gate_id].observed_value, gates[gate_id].message) == (
            original.gates[gate_id].status,
            original.gates[gate_id].observed_value,
            original.gates[gate_id].message,
        )
    assert all(dict(e.details)["reusedFrom"] == "r" for e in decision.events[1:])
    # Started without auto-approve, b runs at once: nobody is asked to approve a again.
    started = commands.start(decision.run, LATER, ExecutionOptions()).run
    assert [(e.type, e.step_id) for e in decide(started, LATER, 8).events] == [
        (EventType.STEP_STARTED, "b")
    ]


def test_a_gate_that_stopped_the_run_is_decided_again() -> None:
    template = make_template(
        StepSpec("a", "x"),
        StepSpec("b", "x", dependencies=("a",)),
        gates=(GateSpec("ok", GateType.APPROVAL, "a", None),),
    )
    run = make_run(template)
    apply(run, Event(EventType.WORKFLOW_CREATED, T0))
    run = commands.start(run, T0, ExecutionOptions()).run
    run = decide(run, T0, 8).run
    apply(run, Event(EventType.STEP_COMPLETED, T0, "a", attempt=1, details={"output": {}}))
    run = decide(run, T0, 8).run
    assert run.gates["ok"].status is GateStatus.AWAITING_APPROVAL
    original = commands.decide_gate(run, T0, "ok", False, "no").run

    decision = rerun(original, id="r2", now=LATER)

    assert decision.run.gates["ok"].status is GateStatus.PENDING
    started = commands.start(decision.run, LATER, ExecutionOptions()).run
    again = decide(started, LATER, 8)
    assert [e.type for e in again.events] == [
        EventType.GATE_AWAITING_APPROVAL, EventType.WORKFLOW_PAUSED,
    ]  # fmt: skip


# --- the transition table's rules for reused results ------------------------------------------


def test_reused_results_are_only_accepted_while_the_run_is_pending() -> None:
    run = make_run(CHAIN)
    apply(run, Event(EventType.WORKFLOW_CREATED, T0))
    apply(run, Event(EventType.WORKFLOW_STARTED, T0))
    with pytest.raises(IllegalTransition):
        apply(run, Event(EventType.STEP_COMPLETED, T0, "s1", details={"reusedFrom": "x"}))
    assert run.steps["s1"].status is StepStatus.PENDING


def test_only_completions_and_gate_results_can_be_reused() -> None:
    run = make_run(GATED)
    apply(run, Event(EventType.WORKFLOW_CREATED, T0))
    with pytest.raises(IllegalTransition):
        apply(run, Event(EventType.STEP_STARTED, T0, "a", attempt=1, details={"reusedFrom": "x"}))
    with pytest.raises(IllegalTransition, match="whose step was not reused"):
        apply(run, Event(EventType.GATE_PASSED, T0, "a", "passed", details={"reusedFrom": "x"}))
    with pytest.raises(IllegalTransition):  # not reused: a PENDING run's step cannot complete
        apply(run, Event(EventType.STEP_COMPLETED, T0, "a", details={"output": {}}))


# --- retry now --------------------------------------------------------------------------------

SLOW_RETRY = make_template(
    StepSpec(
        "a",
        "x",
        retry=RetryPolicy(
            max_attempts=3, initial_backoff=timedelta(hours=1), max_backoff=timedelta(hours=1)
        ),
    )
)


def retrying() -> Run:
    run = make_run(SLOW_RETRY)
    apply(run, Event(EventType.WORKFLOW_CREATED, T0))
    run = commands.start(run, T0, ExecutionOptions()).run
    decision = decide(run, T0, 8)
    attempt_failed(decision, T0, "a", "boom", retryable=True)
    assert decision.timers == {wake_timer("a"): T0 + timedelta(hours=1)}
    return decision.run


def test_retry_now_starts_the_next_attempt_at_once_and_clears_the_timer() -> None:
    run = retrying()

    decision = commands.build("retry_step", {"stepId": "a"})(run, T0 + timedelta(seconds=5))

    [event] = decision.events
    assert (event.type, event.step_id, event.attempt, dict(event.details)) == (
        EventType.STEP_STARTED, "a", 2, {"retryNow": True},
    )  # fmt: skip
    assert decision.timers == {wake_timer("a"): None}
    assert (decision.run.steps["a"].status, decision.run.steps["a"].wake_at) == (
        StepStatus.RUNNING, None,
    )  # fmt: skip


def test_retry_now_of_a_step_not_waiting_is_refused() -> None:
    run = retrying()
    running = commands.retry_now(run, T0, "a").run
    with pytest.raises(FailedPrecondition, match="step a is RUNNING"):
        commands.retry_now(running, T0, "a")
    paused = commands.pause(run, T0, "hold").run
    with pytest.raises(FailedPrecondition, match="is PAUSED"):
        commands.retry_now(paused, T0, "a")


def test_retry_now_of_an_unknown_step_is_a_field_violation() -> None:
    with pytest.raises(InvalidArgument) as refused:
        commands.retry_now(retrying(), T0, "zz")
    assert [v.field for v in refused.value.violations] == ["step_id"]
