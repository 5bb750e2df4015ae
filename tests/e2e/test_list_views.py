"""ListWorkflows: the BASIC view, pages that fit one message, the create-time range."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest

from sluice.client import Workflow, WorkflowClient
from sluice.v1 import workflow_service_pb2 as pb
from sluice.v1 import workflow_service_pb2_grpc as pb_grpc
from tests.conftest import ServerFactory
from tests.support.templates import step, template

# A template whose runs are large: the text is in the template snapshot and in the output.
BULKY = template(
    "bulky", step("a", "generate", config={"contentType": "report", "text": "lorem ipsum " * 400})
)


async def _runs(client: WorkflowClient, count: int) -> list[Workflow]:
    await client.create_template(BULKY)
    made = []
    for _ in range(count):
        run = await client.create_workflow("bulky")
        made.append(await client.execute_workflow(run.id, wait=True, timeout=10))
    return made[::-1]  # newest first, as lists are


async def test_a_large_page_fits_one_message(start_server: ServerFactory) -> None:
    server = await start_server(max_message_bytes=64 * 1024)
    async with (
        WorkflowClient(server.address) as client,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        made = await _runs(client, 30)  # about 10 KB each with template and output
        api = pb_grpc.WorkflowServiceStub(channel)

        basic = await api.ListWorkflows(pb.ListWorkflowsRequest(page_size=1000))
        assert [w.id for w in basic.workflows] == [w.id for w in made]
        assert basic.next_page_token == ""
        first = basic.workflows[0]
        assert not first.HasField("template"), "BASIC leaves out the template snapshot"
        assert not first.steps[0].HasField("output"), "... and step outputs"
        assert first.metrics.completed_steps == 1 and first.steps[0].type == "generate"

        # FULL: every page is under the limit; following the tokens gives every run once.
        seen: list[str] = []
        token = ""
        pages = 0
        while True:
            full = await api.ListWorkflows(
                pb.ListWorkflowsRequest(
                    page_size=1000, page_token=token, view=pb.WORKFLOW_VIEW_FULL
                )
            )
            pages += 1
            assert full.ByteSize() <= 64 * 1024
            assert all(w.template.id == "bulky" and w.steps[0].output for w in full.workflows)
            seen += [w.id for w in full.workflows]
            token = full.next_page_token
            if not token:
                break
        assert seen == [w.id for w in made]
        assert pages > 1

        # A token carries its view: reusing it with another is refused, naming the field.
        mixed = pb.ListWorkflowsRequest(page_size=5, view=pb.WORKFLOW_VIEW_FULL)
        token = (await api.ListWorkflows(mixed)).next_page_token
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await api.ListWorkflows(pb.ListWorkflowsRequest(page_size=5, page_token=token))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "page_token" in (refused.value.details() or "")


async def test_create_time_range_and_filters_combine(client: WorkflowClient) -> None:
    made = await _runs(client, 5)  # newest first
    oldest_first = made[::-1]
    start = oldest_first[1].create_time.ToDatetime()
    end = oldest_first[3].create_time.ToDatetime()

    async def ids(**filters: object) -> list[str]:
        found = client.iter_workflows(page_size=2, **filters)  # type: ignore[arg-type]
        return [w.id async for w in found]

    request = pb.ListWorkflowsRequest(page_size=2)
    request.create_time_start.FromDatetime(start)
    request.create_time_end.FromDatetime(end)
    stub = pb_grpc.WorkflowServiceStub(client._channel)
    page = await stub.ListWorkflows(request)
    assert [w.id for w in page.workflows] == [oldest_first[2].id, oldest_first[1].id]
    assert page.next_page_token == "", "start is inclusive, end exclusive"

    request.template_id = "content-to-social"
    assert (await stub.ListWorkflows(request)).workflows == []

    backwards = pb.ListWorkflowsRequest()
    backwards.create_time_start.FromDatetime(end)
    backwards.create_time_end.FromDatetime(end - timedelta(seconds=1))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ListWorkflows(backwards)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "create_time_end: must be later than create_time_start" in (
        refused.value.details() or ""
    )
    assert await ids() == [w.id for w in made]
