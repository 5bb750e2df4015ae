"""The CLI's pure parts: argument parsing, the DAG text and the live view's model."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.protobuf import json_format
from rich.console import Console

from sluice.cli import dag, follow, inputs
from sluice.cli.outcome import InputError
from sluice.cli.state import RunView
from sluice.client import (
    EventType,
    GateStatus,
    StepStatus,
    Template,
    UnavailableError,
    Workflow,
    WorkflowEvent,
    WorkflowStatus,
)
from tests.support.templates import approval_gate, step, template


def test_params_file_then_pairs_with_json_values(tmp_path: Path) -> None:
    path = tmp_path / "params.json"
    path.write_text(json.dumps({"topic": "from file", "tone": "casual"}))

    params = inputs.parse_params(
        ["topic=Spring", "price=500000", 'tags=["a"]', "ok=true", "note=a=b", "empty="], path
    )

    assert params == {
        "topic": "Spring", "tone": "casual", "price": 500000, "tags": ["a"], "ok": True,
        "note": "a=b", "empty": "",
    }  # fmt: skip


@pytest.mark.parametrize("pair", ["topic", "=value", " =x"])
def test_a_param_without_a_name_is_refused(pair: str) -> None:
    with pytest.raises(InputError, match="NAME=VALUE"):
        inputs.parse_params([pair])


def test_statuses_accept_short_and_full_names() -> None:
    assert inputs.parse_statuses(["completed", "WORKFLOW_STATUS_PAUSED"]) == [
        WorkflowStatus.WORKFLOW_STATUS_COMPLETED,
        WorkflowStatus.WORKFLOW_STATUS_PAUSED,
    ]
    with pytest.raises(InputError):
        inputs.parse_statuses(["unspecified"])


def test_a_template_file_is_parsed_and_an_id_is_not(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps(template("t", step("a"))))
    assert inputs.template_file("content-to-social") is None
    parsed = inputs.template_file(str(path))
    assert parsed is not None and parsed.steps[0].id == "a"

    path.write_text('{"steps": [{"idd": "a"}]}')
    with pytest.raises(InputError, match=r"t\.json"):
        inputs.template_file(str(path))


def _template(body: dict[str, object]) -> Template:
    return json_format.ParseDict(body, Template())


def test_mermaid_ids_survive_keywords_arrows_and_collisions() -> None:
    graph = dag.Dag.of_template(
        _template(
            template(
                "odd", step("end"), step("a--b", "sleep", "end"), step("a__b", "sleep", "end"),
                gates=[approval_gate("last", "a--b")],
            )
        )
    )  # fmt: skip

    text = dag.render(graph, "mermaid")

    assert 'step_end["end<br/>sleep"]' in text
    assert "step_end --> step_a__b\n" in text and "step_end --> step_a__b_2" in text
    assert 'gate_last{{"gate last (approval)"}}' in text
    assert "step_a__b -.-> gate_last" in text


def test_dot_quotes_ids_and_hangs_a_final_gate_off_its_step() -> None:
    graph = dag.Dag.of_template(
        _template(
            template('q"t', step("a"), step("b", "sleep", "a"), gates=[approval_gate("g", "b")])
        )
    )

    text = dag.render(graph, "dot")

    assert text.startswith('digraph "q\\"t" {')
    assert '"a" -> "b";' in text
    assert '"gate:g" [shape=diamond, label="gate g (approval)"];' in text
    assert '"b" -> "gate:g" [style=dotted];' in text
    assert json.loads(dag.to_json(graph))["edges"] == [{"from": "a", "to": "b"}]


def _event(sequence: int, kind: EventType.ValueType, **fields: object) -> WorkflowEvent:
    event = WorkflowEvent(sequence=sequence, type=kind)
    details = fields.pop("details", None)
    json_format.ParseDict(fields, event)
    if isinstance(details, dict):
        event.details.update(details)
    event.time.FromSeconds(1_700_000_000 + sequence)
    return event


def test_the_view_follows_steps_gates_and_pauses() -> None:
    workflow = Workflow(id="r", template=_template(
        template("t", step("a"), step("b", "sleep", "a"), gates=[approval_gate("g", "a")])
    ))  # fmt: skip
    view = RunView.blank(workflow)
    E = EventType
    for event in (
        _event(1, E.EVENT_TYPE_WORKFLOW_STARTED, workflowStatus="WORKFLOW_STATUS_RUNNING"),
        _event(2, E.EVENT_TYPE_STEP_STARTED, stepId="a", attempt=1),
        _event(4, E.EVENT_TYPE_STEP_COMPLETED, stepId="a", attempt=1),
        _event(5, E.EVENT_TYPE_GATE_AWAITING_APPROVAL, stepId="a", gateId="g"),
        _event(6, E.EVENT_TYPE_WORKFLOW_PAUSED, gateId="g", workflowStatus="WORKFLOW_STATUS_PAUSED",
               details={"reason": "waiting"}),
    ):  # fmt: skip
        view.apply(event)

    a = view.steps["a"]
    assert (a.status, a.attempt) == (StepStatus.STEP_STATUS_COMPLETED, 1)
    assert a.started is not None and a.duration(a.started) == timedelta(seconds=2)
    assert view.steps["b"].status == StepStatus.STEP_STATUS_PENDING
    assert view.gates["g"].status == GateStatus.GATE_STATUS_AWAITING_APPROVAL
    assert (view.status, view.paused_gate_id, view.pause_reason) == (
        WorkflowStatus.WORKFLOW_STATUS_PAUSED, "g", "waiting",
    )  # fmt: skip
    assert view.settled_steps == 1 and not view.active


def test_a_retried_step_is_timed_from_its_first_attempt_as_the_server_does() -> None:
    workflow = Workflow(id="r", template=_template(template("t", step("a"))))
    view = RunView.blank(workflow)
    E = EventType
    for event in (
        _event(1, E.EVENT_TYPE_STEP_STARTED, stepId="a", attempt=1),
        _event(2, E.EVENT_TYPE_STEP_RETRYING, stepId="a", attempt=1),
        _event(4, E.EVENT_TYPE_STEP_STARTED, stepId="a", attempt=2),
        _event(5, E.EVENT_TYPE_STEP_COMPLETED, stepId="a", attempt=2),
    ):
        view.apply(event)

    a = view.steps["a"]
    assert (a.status, a.attempt) == (StepStatus.STEP_STATUS_COMPLETED, 2)
    assert a.ended is not None and a.duration(a.ended) == timedelta(seconds=4)


def test_the_live_view_shows_a_reconnecting_notice_until_events_flow_again() -> None:
    workflow = Workflow(id="r", template=_template(template("t", step("a"))))
    screen = Console(file=io.StringIO(), force_terminal=True, width=200)

    def frame(sink: follow.LiveSink) -> str:
        with screen.capture() as captured:
            screen.print(sink)
        return captured.get()

    with follow.LiveSink(workflow, Console(file=io.StringIO(), force_terminal=True)) as sink:
        sink.reconnecting(UnavailableError("Socket closed"), 0.4)
        assert (
            "Reconnecting to the server (UNAVAILABLE: Socket closed); next try in 0.4s."
            in frame(sink)
        )
        view = RunView.blank(workflow)
        event = _event(1, EventType.EVENT_TYPE_STEP_STARTED, stepId="a", attempt=1)
        view.apply(event)
        sink.event(event, view)
        assert "Reconnecting" not in frame(sink) and "RUNNING" in frame(sink)


def test_times_are_iso_8601_or_an_age() -> None:
    now = datetime(2025, 3, 1, 12, tzinfo=UTC)
    assert inputs.parse_time("24h", "--x", now) == datetime(2025, 2, 28, 12, tzinfo=UTC)
    assert inputs.parse_time("1.5d", "--x", now) == datetime(2025, 2, 28, 0, tzinfo=UTC)
    assert inputs.parse_time("2025-03-01T09:30:00Z", "--x") == datetime(
        2025, 3, 1, 9, 30, tzinfo=UTC
    )
    local = inputs.parse_time("2025-03-01", "--x")
    assert local is not None and local.utcoffset() is not None, "local time, with its zone"
    assert inputs.parse_time(None, "--x") is None
    with pytest.raises(InputError, match="--x 'last week'"):
        inputs.parse_time("last week", "--x")


def test_event_lines_and_show_details_give_waits_and_deadlines() -> None:
    from sluice.cli import render

    started = WorkflowEvent(sequence=11, type=EventType.EVENT_TYPE_STEP_STARTED,
                            step_id="wait-for-slot", attempt=1)  # fmt: skip
    started.details.update({"wakeAt": "2026-12-24T09:00:00-05:00"})
    assert render.event_line(started) == (
        "#11 step started wait-for-slot attempt 1: waits until 2026-12-24T09:00:00-05:00"
    )

    run = Workflow(id="r", status=WorkflowStatus.WORKFLOW_STATUS_PAUSED, paused_gate_id="ok",
                   pause_reason="waiting for approval of gate ok")  # fmt: skip
    waiting = run.steps.add(step_id="nap", status=StepStatus.STEP_STATUS_RUNNING)
    waiting.wake_time.FromDatetime(datetime(2026, 12, 24, 14, 0, tzinfo=UTC))
    retrying = run.steps.add(step_id="post", status=StepStatus.STEP_STATUS_RETRYING, error="503")
    retrying.wake_time.FromDatetime(datetime(2026, 12, 24, 14, 0, 5, tzinfo=UTC))
    gate = run.gate_results.add(gate_id="ok", status=GateStatus.GATE_STATUS_AWAITING_APPROVAL)
    gate.deadline.FromDatetime(datetime(2026, 12, 25, 14, 0, tzinfo=UTC))

    details = render.step_details(run)
    assert "nap waits until 2026-12-24T14:00:00+00:00" in details
    assert "post next attempt at 2026-12-24T14:00:05+00:00" in details
    hint = render.next_step_hint(run)
    assert "Its timeout acts at 2026-12-25T14:00:00+00:00." in hint
