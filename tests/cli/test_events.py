"""`sluice events` against a real server: every page of a run's log, filtered, as lines or
JSON, and what a bad flag or an unknown run answers."""

from __future__ import annotations

import json

from google.protobuf import json_format

from sluice.cli.render import event_line
from sluice.client import EventType, WorkflowClient, WorkflowEvent
from tests.cli.conftest import Sluice
from tests.support.templates import step, template

MISSING = "00000000-0000-4000-8000-000000000000"
RETRIED = template(
    "retried",
    step("a", config={"output": {"n": 1}}),
    step("b", "flaky", "a", config={"failures": 2},
         retry={"maxAttempts": 3, "initialBackoff": "0.01s"}),
    step("c", "sleep", "b"),
)  # fmt: skip


async def _finished(client: WorkflowClient) -> tuple[str, list[WorkflowEvent]]:
    run = await client.create_workflow(RETRIED)
    await client.execute_workflow(run.id, wait=True, timeout=10)
    return run.id, [event async for event in client.watch(run.id)]


async def test_events_prints_every_page_of_the_log_and_filters_it(
    sluice: Sluice, client: WorkflowClient
) -> None:
    run_id, watched = await _finished(client)

    every = await sluice("events", run_id, "--page-size", "2")  # 2 per call: many pages
    assert every.code == 0, every.err
    assert every.lines == [event_line(e) for e in watched]
    assert every.lines[0] == "#1 workflow created" and every.lines[-1].endswith("completed")
    assert "#6 step retrying b attempt 1: ConnectionError: transient failure on attempt 1" in (
        every.lines
    )

    retries = await sluice("events", run_id, "--type", "step_retrying", "--type", "STEP_FAILED")
    assert retries.lines == [
        event_line(e) for e in watched if e.type == EventType.EVENT_TYPE_STEP_RETRYING
    ]
    assert len(retries.lines) == 2
    of_b = await sluice("events", run_id, "--step", "b", "--type", "EVENT_TYPE_STEP_STARTED")
    assert of_b.lines == ["#5 step started b attempt 1", "#7 step started b attempt 2",
                          "#9 step started b attempt 3"]  # fmt: skip
    later = await sluice("events", run_id, "--after", str(len(watched) - 2))
    assert later.lines == [event_line(e) for e in watched[-2:]]

    as_json = await sluice("events", run_id, "--step", "c", "--page-size", "1", "--json")
    assert as_json.code == 0, as_json.err
    assert json.loads(as_json.out) == {
        "events": [json_format.MessageToDict(e) for e in watched if e.step_id == "c"]
    }
    none = await sluice("events", run_id, "--type", "WORKFLOW_CANCELLED", "--json")
    assert json.loads(none.out) == {"events": []}


async def test_a_bad_type_or_step_is_a_usage_error_and_an_unknown_run_not_found(
    sluice: Sluice, client: WorkflowClient
) -> None:
    run_id, _ = await _finished(client)

    bad_type = await sluice("events", run_id, "--type", "STEP_DONE")
    assert bad_type.code == 2 and bad_type.out == ""
    assert "--type 'STEP_DONE': expected one of WORKFLOW_CREATED," in bad_type.err
    assert "STEP_COMPLETED" in bad_type.err

    bad_step = await sluice("events", run_id, "--step", "b", "--step", "zz")
    assert bad_step.code == 2 and bad_step.out == ""
    assert "step_ids[1]" in bad_step.err and "zz" in bad_step.err

    missing = await sluice("events", MISSING)
    assert missing.code == 3
    assert f"workflow {MISSING} not found" in missing.err
