"""A corpus of bad requests, each with the exact status and field paths a client gets back.

Requests go through the raw generated stub, so they can carry what a typed client would never
send (unknown enum numbers, UNSPECIFIED values, NaN, NUL characters, nesting past the limit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import grpc
import pytest
from google.protobuf import json_format, struct_pb2

from sluice.client.errors import from_rpc_error
from sluice.server import SluiceServer
from sluice.v1 import template_pb2, workflow_pb2
from sluice.v1 import workflow_service_pb2 as pb
from sluice.v1 import workflow_service_pb2_grpc as pb_grpc
from tests.support.templates import approval_gate, step, template, threshold_gate

INVALID = grpc.StatusCode.INVALID_ARGUMENT
MISSING_RUN = "00000000-0000-4000-8000-000000000000"


def tpl(**changes: Any) -> template_pb2.Template:
    """A valid two-step template with one gate, with `changes` applied to its JSON form."""
    base = template(
        "t", step("a", "sleep"), step("b", "sleep", "a"), gates=[threshold_gate("g", "a", "PAUSE")]
    )
    for path, value in changes.items():
        target: Any = base
        keys = path.split("__")
        for key in keys[:-1]:
            target = target[int(key)] if key.isdigit() else target[key]
        target[int(keys[-1]) if keys[-1].isdigit() else keys[-1]] = value
    return json_format.ParseDict(base, template_pb2.Template())


def params(**values: Any) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


@dataclass(frozen=True)
class Case:
    rpc: str
    request: Callable[[dict[str, str]], Any]  # given the ids of the fixture's runs
    code: grpc.StatusCode
    fields: tuple[str, ...] = ()


def create(**kw: Any) -> Callable[[dict[str, str]], Any]:
    return lambda ids: pb.CreateWorkflowRequest(**kw)


def inline(**changes: Any) -> Callable[[dict[str, str]], Any]:
    return lambda ids: pb.CreateWorkflowRequest(template=tpl(**changes))


def nested_param(depth: int, *, declared: bool = True) -> Callable[[dict[str, str]], Any]:
    """params = {"x": {"x": ... 1}}, `depth` levels deep, built in place (copying a message
    that deep would hit protobuf's own limit in the test, before the server sees it)."""

    def build(ids: dict[str, str]) -> pb.CreateWorkflowRequest:
        request = pb.CreateWorkflowRequest()
        if declared:
            request.template.CopyFrom(tpl(params=[{"name": "x"}]))
        else:
            request.template_id = "content-to-social"
        current = request.params
        for _ in range(depth - 1):
            current = current.fields["x"].struct_value
        current.fields["x"].number_value = 1
        return request

    return build


def many_steps(count: int) -> template_pb2.Template:
    return json_format.ParseDict(
        template("t", *(step(f"s{i}") for i in range(count))), template_pb2.Template()
    )


def with_config(message: template_pb2.Template, config: dict[str, Any]) -> template_pb2.Template:
    message.steps[0].config.Clear()
    message.steps[0].config.update(config)
    return message


def without_condition(message: template_pb2.Template) -> template_pb2.Template:
    message.quality_gates[0].ClearField("threshold")
    return message


def with_action(message: template_pb2.Template, action: int) -> template_pb2.Template:
    message.quality_gates[0].action = action  # type: ignore[assignment]
    return message


def validation(expression: str) -> dict[str, Any]:
    return {
        "id": "v",
        "stepId": "a",
        "action": "GATE_ACTION_ABORT",
        "validation": {"expression": expression},
    }


CASES: dict[str, Case] = {
    # ListTemplates / GetTemplate / CreateTemplate
    "list templates: negative page size": Case("ListTemplates", lambda ids: pb.ListTemplatesRequest(page_size=-1), INVALID, ("page_size",)),
    "list templates: page size too big": Case("ListTemplates", lambda ids: pb.ListTemplatesRequest(page_size=5000), INVALID, ("page_size",)),
    "list templates: forged page token": Case("ListTemplates", lambda ids: pb.ListTemplatesRequest(page_token="bm9wZQ=="), INVALID, ("page_token",)),
    "get template: no id": Case("GetTemplate", lambda ids: pb.GetTemplateRequest(), INVALID, ("template_id",)),
    "get template: malformed id": Case("GetTemplate", lambda ids: pb.GetTemplateRequest(template_id="Bad Id!"), INVALID, ("template_id",)),
    "get template: negative version": Case("GetTemplate", lambda ids: pb.GetTemplateRequest(template_id="x", version=-1), INVALID, ("version",)),
    "get template: unknown": Case("GetTemplate", lambda ids: pb.GetTemplateRequest(template_id="no-such"), grpc.StatusCode.NOT_FOUND),
    "get template: predefined version 2": Case("GetTemplate", lambda ids: pb.GetTemplateRequest(template_id="content-to-social", version=2), grpc.StatusCode.NOT_FOUND),
    "create template: none sent": Case("CreateTemplate", lambda ids: pb.CreateTemplateRequest(), INVALID, ("template",)),
    "create template: predefined id": Case("CreateTemplate", lambda ids: pb.CreateTemplateRequest(template=tpl(id="content-to-social")), grpc.StatusCode.ALREADY_EXISTS),
    "create template: no steps": Case("CreateTemplate", lambda ids: pb.CreateTemplateRequest(template=tpl(steps=[], qualityGates=[])), INVALID, ("template.steps",)),
    # CreateWorkflow: the request itself
    "create: no template": Case("CreateWorkflow", create(), INVALID, ("template_id",)),
    "create: malformed template id": Case("CreateWorkflow", create(template_id="../etc/passwd"), INVALID, ("template_id",)),
    "create: negative version": Case("CreateWorkflow", create(template_id="content-to-social", template_version=-1), INVALID, ("template_version",)),
    "create: request id too long": Case("CreateWorkflow", create(template_id="content-to-social", request_id="r" * 201), INVALID, ("request_id",)),
    "create: unknown template": Case("CreateWorkflow", create(template_id="no-such"), grpc.StatusCode.NOT_FOUND),
    # CreateWorkflow: params
    "params: required one missing": Case("CreateWorkflow", create(template_id="content-to-social"), INVALID, ("params.topic",)),
    "params: unknown one": Case("CreateWorkflow", create(template_id="content-to-social", params=params(topic="x", nope=1)), INVALID, ("params.nope",)),
    "params: NaN": Case("CreateWorkflow", create(template_id="content-to-social", params=params(topic=float("nan"))), INVALID, ("params.topic",)),
    "params: infinity": Case("CreateWorkflow", create(template_id="content-to-social", params=params(topic=float("inf"))), INVALID, ("params.topic",)),
    "params: NUL character": Case("CreateWorkflow", create(template_id="content-to-social", params=params(topic="a\x00b")), INVALID, ("params.topic",)),
    "params: too large": Case("CreateWorkflow", create(template_id="content-to-social", params=params(topic="x" * 70_000)), INVALID, ("params",)),
    "params: nested past the limit": Case("CreateWorkflow", nested_param(25), INVALID, ("params" + ".x" * 21,)),
    "params: nested past protobuf's limit": Case("CreateWorkflow", nested_param(40, declared=False), INVALID),
    # CreateWorkflow: inline templates
    "template: malformed id": Case("CreateWorkflow", inline(id="Bad Id"), INVALID, ("template.id",)),
    "template: id too long": Case("CreateWorkflow", inline(id="a" * 64), INVALID, ("template.id",)),
    "template: self dependency": Case("CreateWorkflow", inline(steps__0__dependencies=["a"]), INVALID, ("template.steps[0].dependencies[0]",)),
    "template: cycle": Case("CreateWorkflow", inline(steps__0__dependencies=["b"]), INVALID, ("template.steps[0].dependencies",)),
    "template: duplicate step ids": Case("CreateWorkflow", inline(steps__1__id="a", steps__1__dependencies=[]), INVALID, ("template.steps[1].id",)),
    "template: unknown dependency": Case("CreateWorkflow", inline(steps__1__dependencies=["ghost"]), INVALID, ("template.steps[1].dependencies[0]",)),
    "template: unknown step type": Case("CreateWorkflow", inline(steps__0__type="teleport"), INVALID, ("template.steps[0].type",)),
    "template: too many steps": Case("CreateWorkflow", lambda ids: pb.CreateWorkflowRequest(template=many_steps(101)), INVALID, ("template.steps",)),
    "template: retry attempts out of range": Case("CreateWorkflow", inline(steps__0__retry={"maxAttempts": 21}), INVALID, ("template.steps[0].retry.max_attempts",)),
    "template: retry multiplier below 1": Case("CreateWorkflow", inline(steps__0__retry={"maxAttempts": 2, "backoffMultiplier": 0.5}), INVALID, ("template.steps[0].retry.backoff_multiplier",)),
    "template: negative timeout": Case("CreateWorkflow", inline(steps__0__timeout="-1s"), INVALID, ("template.steps[0].timeout",)),
    "template: undeclared param referenced": Case("CreateWorkflow", inline(steps__0__config={"x": "{{ params.nope }}"}), INVALID, ("template.steps[0].config.x",)),
    "template: reference to a downstream step": Case("CreateWorkflow", inline(steps__0__config={"x": "{{ steps.b.out }}"}), INVALID, ("template.steps[0].config.x",)),
    "template: config with NaN": Case("CreateWorkflow", lambda ids: pb.CreateWorkflowRequest(template=with_config(tpl(), {"x": float("nan")})), INVALID, ("template.steps[0].config.x",)),
    "gate: unknown step": Case("CreateWorkflow", inline(qualityGates__0__stepId="ghost"), INVALID, ("template.quality_gates[0].step_id",)),
    "gate: no step": Case("CreateWorkflow", inline(qualityGates__0__stepId=""), INVALID, ("template.quality_gates[0].step_id",)),
    "gate: no condition": Case("CreateWorkflow", lambda ids: pb.CreateWorkflowRequest(template=without_condition(tpl())), INVALID, ("template.quality_gates[0].condition",)),
    "gate: operator unspecified": Case("CreateWorkflow", inline(qualityGates__0__threshold={"metric": "q", "threshold": 1}), INVALID, ("template.quality_gates[0].threshold.operator",)),
    "gate: metric not a path": Case("CreateWorkflow", inline(qualityGates__0__threshold={"metric": "a..b", "operator": "COMPARISON_OPERATOR_GT"}), INVALID, ("template.quality_gates[0].threshold.metric",)),
    "gate: threshold NaN": Case("CreateWorkflow", inline(qualityGates__0__threshold={"metric": "q", "operator": "COMPARISON_OPERATOR_GT", "threshold": "NaN"}), INVALID, ("template.quality_gates[0].threshold.threshold",)),
    "gate: unknown action number": Case("CreateWorkflow", lambda ids: pb.CreateWorkflowRequest(template=with_action(tpl(), 99)), INVALID, ("template.quality_gates[0].action",)),
    "gate: approval that aborts": Case("CreateWorkflow", inline(qualityGates=[{**approval_gate("ok", "a"), "action": "GATE_ACTION_ABORT"}]), INVALID, ("template.quality_gates[0].action",)),
    "gate: expression does not parse": Case("CreateWorkflow", inline(qualityGates=[validation("output.x >")]), INVALID, ("template.quality_gates[0].validation.expression",)),
    "gate: expression reaches an unknown variable": Case("CreateWorkflow", inline(qualityGates=[validation("os.environ == 1")]), INVALID, ("template.quality_gates[0].validation.expression",)),
    "gate: expression nests macros": Case("CreateWorkflow", inline(qualityGates=[validation("output.a.exists(x, output.b.exists(y, x == y))")]), INVALID, ("template.quality_gates[0].validation.expression",)),
    "gate: expression too long": Case("CreateWorkflow", inline(qualityGates=[validation("true && " * 300 + "true")]), INVALID, ("template.quality_gates[0].validation.expression",)),
    # Runs
    "execute: malformed id": Case("ExecuteWorkflow", lambda ids: pb.ExecuteWorkflowRequest(workflow_id="nope"), INVALID, ("workflow_id",)),
    "execute: unknown run": Case("ExecuteWorkflow", lambda ids: pb.ExecuteWorkflowRequest(workflow_id=MISSING_RUN), grpc.StatusCode.NOT_FOUND),
    "execute: NUL in request id": Case("ExecuteWorkflow", lambda ids: pb.ExecuteWorkflowRequest(workflow_id=ids["pending"], request_id="a\x00"), INVALID, ("request_id",)),
    "get: no id": Case("GetWorkflow", lambda ids: pb.GetWorkflowRequest(), INVALID, ("workflow_id",)),
    "list: UNSPECIFIED status": Case("ListWorkflows", lambda ids: pb.ListWorkflowsRequest(statuses=cast(Any, [0])), INVALID, ("statuses[0]",)),
    "list: unknown status number": Case("ListWorkflows", lambda ids: pb.ListWorkflowsRequest(statuses=cast(Any, [2, 99])), INVALID, ("statuses[1]",)),
    "list: token of other filters": Case("ListWorkflows", lambda ids: pb.ListWorkflowsRequest(page_token=ids["token"], template_id="other"), INVALID, ("page_token",)),
    "pause: reason too long": Case("PauseWorkflow", lambda ids: pb.PauseWorkflowRequest(workflow_id=ids["pending"], reason="r" * 1001), INVALID, ("reason",)),
    "pause: a PENDING run": Case("PauseWorkflow", lambda ids: pb.PauseWorkflowRequest(workflow_id=ids["pending"]), grpc.StatusCode.FAILED_PRECONDITION),
    "resume: a PENDING run": Case("ResumeWorkflow", lambda ids: pb.ResumeWorkflowRequest(workflow_id=ids["pending"]), grpc.StatusCode.FAILED_PRECONDITION),
    "cancel: unknown run": Case("CancelWorkflow", lambda ids: pb.CancelWorkflowRequest(workflow_id=MISSING_RUN), grpc.StatusCode.NOT_FOUND),
    "approve: malformed gate id": Case("ApproveGate", lambda ids: pb.ApproveGateRequest(workflow_id=ids["paused"], gate_id="Not A Gate"), INVALID, ("gate_id",)),
    "approve: unknown gate": Case("ApproveGate", lambda ids: pb.ApproveGateRequest(workflow_id=ids["paused"], gate_id="ghost"), grpc.StatusCode.NOT_FOUND),
    "approve: gate not waiting": Case("ApproveGate", lambda ids: pb.ApproveGateRequest(workflow_id=ids["pending"], gate_id="ok"), grpc.StatusCode.FAILED_PRECONDITION),
    "approve: comment too long": Case("ApproveGate", lambda ids: pb.ApproveGateRequest(workflow_id=ids["paused"], gate_id="ok", comment="c" * 1001), INVALID, ("comment",)),
    "watch: negative sequence": Case("WatchWorkflow", lambda ids: pb.WatchWorkflowRequest(workflow_id=ids["pending"], after_sequence=-1), INVALID, ("after_sequence",)),
    "watch: unknown run": Case("WatchWorkflow", lambda ids: pb.WatchWorkflowRequest(workflow_id=MISSING_RUN), grpc.StatusCode.NOT_FOUND),
    "events: UNSPECIFIED and unknown types": Case("ListWorkflowEvents", lambda ids: pb.ListWorkflowEventsRequest(workflow_id=ids["paused"], types=cast(Any, [10, 0, 99])), INVALID, ("types[1]", "types[2]")),
    "events: page size too large": Case("ListWorkflowEvents", lambda ids: pb.ListWorkflowEventsRequest(workflow_id=ids["paused"], page_size=1001), INVALID, ("page_size",)),
    "events: a list's token": Case("ListWorkflowEvents", lambda ids: pb.ListWorkflowEventsRequest(workflow_id=ids["paused"], page_token=ids["token"]), INVALID, ("page_token",)),
    "events: unknown step": Case("ListWorkflowEvents", lambda ids: pb.ListWorkflowEventsRequest(workflow_id=ids["paused"], step_ids=["a", "ghost"]), INVALID, ("step_ids[1]",)),
    "events: unknown run": Case("ListWorkflowEvents", lambda ids: pb.ListWorkflowEventsRequest(workflow_id=MISSING_RUN, step_ids=["a"]), grpc.StatusCode.NOT_FOUND),
}  # fmt: skip


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40


@pytest.fixture
async def ids(server: SluiceServer) -> dict[str, str]:
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = pb_grpc.WorkflowServiceStub(channel)
        gated = json_format.ParseDict(
            template("gated", step("a"), step("b", "sleep", "a"), gates=[approval_gate("ok", "a")]),
            template_pb2.Template(),
        )
        pending = (await stub.CreateWorkflow(pb.CreateWorkflowRequest(template=gated))).workflow
        paused = (await stub.CreateWorkflow(pb.CreateWorkflowRequest(template=gated))).workflow
        await stub.ExecuteWorkflow(pb.ExecuteWorkflowRequest(workflow_id=paused.id, wait=True))
        page = await stub.ListWorkflows(pb.ListWorkflowsRequest(page_size=1))
        return {"pending": pending.id, "paused": paused.id, "token": page.next_page_token}


async def _invoke(stub: pb_grpc.WorkflowServiceStub, rpc: str, request: Any) -> None:
    call = getattr(stub, rpc)(request)
    if rpc == "WatchWorkflow":
        async for _ in call:
            pass
    else:
        await call


@pytest.mark.parametrize("name", list(CASES))
async def test_bad_input(server: SluiceServer, ids: dict[str, str], name: str) -> None:
    case = CASES[name]
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = pb_grpc.WorkflowServiceStub(channel)
        before = await stub.GetWorkflow(pb.GetWorkflowRequest(workflow_id=ids["paused"]))
        runs_before = len((await stub.ListWorkflows(pb.ListWorkflowsRequest())).workflows)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _invoke(stub, case.rpc, case.request(ids))
        error = from_rpc_error(caught.value)
        assert caught.value.code() == case.code, f"{name}: {caught.value.code()} {error.message}"
        assert tuple(v.field for v in error.violations) == case.fields, error.violations
        assert all(v.description for v in error.violations)
        assert "Traceback" not in error.message
        # Nothing was written, and nothing else changed.
        after = await stub.GetWorkflow(pb.GetWorkflowRequest(workflow_id=ids["paused"]))
        assert after.workflow.last_sequence == before.workflow.last_sequence
        assert len((await stub.ListWorkflows(pb.ListWorkflowsRequest())).workflows) == runs_before
        assert workflow_pb2.WorkflowStatus.Name(after.workflow.status) == "WORKFLOW_STATUS_PAUSED"
