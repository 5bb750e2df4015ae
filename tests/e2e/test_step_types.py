"""ListStepTypes: the step types a server runs, with the config schemas ValidateTemplate checks
(what the web view's template builder offers)."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from sluice.client import WorkflowClient
from sluice.server import SluiceServer
from sluice.steps import BUILTIN_STEP_TYPES
from sluice.v1 import workflow_service_pb2 as pb
from sluice.v1 import workflow_service_pb2_grpc as pb_grpc
from tests.support.templates import step, template

# The test-only types tests/support/handlers.py registers, as a plugin would.
TEST_TYPES = {"sleep", "flaky", "fail", "latch"}


async def _list(server: SluiceServer, **request: object) -> pb.ListStepTypesResponse:
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = pb_grpc.WorkflowServiceStub(channel)
        reply: pb.ListStepTypesResponse = await stub.ListStepTypes(
            pb.ListStepTypesRequest(**request)  # type: ignore[arg-type]
        )
        return reply


async def test_every_registered_type_is_listed_by_name(server: SluiceServer) -> None:
    reply = await _list(server)
    names = [t.name for t in reply.step_types]
    assert names == sorted(names)
    assert set(names) == {*BUILTIN_STEP_TYPES, "task", *TEST_TYPES}
    assert reply.next_page_token == ""
    remote = {t.name for t in reply.step_types if t.remote}
    assert remote == {"task"}


async def test_a_type_s_schema_is_the_one_its_configs_are_checked_against(
    server: SluiceServer, client: WorkflowClient
) -> None:
    types = {t.name: t for t in (await _list(server)).step_types}
    generate = json_format.MessageToDict(types["generate"].config_schema)
    assert generate["type"] == "object"
    assert "contentType" in generate["required"]
    choices = generate["properties"]["contentType"]["enum"]
    assert "social-post" in choices
    assert generate["properties"]["topic"]["description"]
    # A type that declares no schema has none: any config object is accepted.
    assert not types["sleep"].HasField("config_schema")

    # What the schema says is what validation holds a template to.
    bad = template("typed", step("a", "generate", config={"contentType": "limerick"}))
    report = await client.validate_template(bad)
    assert [v.field for v in report.violations] == ["steps[0].config.contentType"]
    good = template("typed", step("a", "generate", config={"contentType": choices[0]}))
    assert (await client.validate_template(good)).valid


async def test_pages_follow_each_other(server: SluiceServer) -> None:
    everything = [t.name for t in (await _list(server)).step_types]
    seen: list[str] = []
    token = ""
    while True:
        page = await _list(server, page_size=3, page_token=token)
        assert len(page.step_types) <= 3
        seen += [t.name for t in page.step_types]
        token = page.next_page_token
        if not token:
            break
    assert seen == everything


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [({"page_size": -1}, "page_size"), ({"page_token": "not a token"}, "page_token")],
)
async def test_a_bad_page_request_names_its_field(
    server: SluiceServer, request_fields: dict[str, object], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _list(server, **request_fields)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(caught.value)
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    assert [v.field for v in bad_request.field_violations] == [field]
