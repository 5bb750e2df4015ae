"""DeleteWorkflow, DeleteTemplate, PENDING expiry and retention."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import pytest

from sluice.client import (
    EventType,
    NotFoundError,
    ResourceExhaustedError,
    WorkflowClient,
    WorkflowStatus,
)
from sluice.runtime.janitor import Housekeeping, Janitor
from sluice.server import SluiceServer
from sluice.v1 import workflow_service_pb2 as pb
from sluice.v1 import workflow_service_pb2_grpc as pb_grpc
from tests.conftest import ServerFactory
from tests.support.clock import ManualClock
from tests.support.templates import step, template

PARAMS = {"location": "Denver, CO"}


def stub(client: WorkflowClient) -> pb_grpc.WorkflowServiceAsyncStub:
    return pb_grpc.WorkflowServiceStub(client._channel)


async def code_of(call: object) -> grpc.StatusCode:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return error.code()
    raise AssertionError("the call succeeded")


async def test_delete_workflow_removes_an_ended_run_and_its_log(client: WorkflowClient) -> None:
    api = stub(client)
    run = await client.create_workflow("market-analysis-report", PARAMS)
    delete = pb.DeleteWorkflowRequest(workflow_id=run.id)

    refused = await code_of(api.DeleteWorkflow(delete))
    assert refused == grpc.StatusCode.FAILED_PRECONDITION, "a PENDING run must be cancelled first"

    await client.execute_workflow(run.id, wait=True, timeout=10)
    await api.DeleteWorkflow(delete)

    with pytest.raises(NotFoundError):
        await client.get_workflow(run.id)
    with pytest.raises(NotFoundError):
        async for _ in client.watch(run.id):
            pass
    assert (await client.list_workflows()).workflows == []
    assert await code_of(api.DeleteWorkflow(delete)) == grpc.StatusCode.NOT_FOUND


async def test_delete_template_keeps_runs_and_never_reuses_a_version(
    client: WorkflowClient,
) -> None:
    api = stub(client)
    mine = template("mine", step("a", "sleep"))
    await client.create_template(mine)
    await client.create_template(mine)  # version 2
    run = await client.create_workflow("mine", version=1)

    one = await api.DeleteTemplate(pb.DeleteTemplateRequest(template_id="mine", version=1))
    assert one.deleted_versions == 1
    with pytest.raises(NotFoundError):
        await client.get_template("mine", version=1)
    assert (await client.get_template("mine")).version == 2
    with pytest.raises(NotFoundError):
        await client.create_workflow("mine", version=1)

    every = await api.DeleteTemplate(pb.DeleteTemplateRequest(template_id="mine"))
    assert every.deleted_versions == 1
    assert "mine" not in {t.id for t in await client.list_templates()}
    with pytest.raises(NotFoundError):
        await client.create_workflow("mine")

    kept = await client.get_workflow(run.id)
    assert kept.template.id == "mine" and kept.template_version == 1, "runs keep their copy"
    done = await client.execute_workflow(run.id, wait=True, timeout=10)
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED

    again = await client.create_template(mine)
    assert again.version == 3, "a version number never names two templates"

    missing = pb.DeleteTemplateRequest(template_id="mine", version=1)
    assert await code_of(api.DeleteTemplate(missing)) == grpc.StatusCode.NOT_FOUND
    predefined = pb.DeleteTemplateRequest(template_id="content-to-social")
    assert await code_of(api.DeleteTemplate(predefined)) == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_run_left_pending_expires_and_frees_its_slot(start_server: ServerFactory) -> None:
    clock = ManualClock()
    server = await start_server(
        clock=clock,
        max_active_runs_per_user=1,
        pending_expiry=timedelta(hours=24),
        housekeeping_interval=timedelta(seconds=0.05),
    )
    async with WorkflowClient(server.address) as client:
        left = await client.create_workflow("market-analysis-report", PARAMS)
        with pytest.raises(ResourceExhaustedError):
            await client.create_workflow("market-analysis-report", PARAMS)

        events = client.watch(left.id)
        clock.advance(timedelta(hours=25))  # the background sweep sees it on its next pass
        async with asyncio.timeout(10):
            async for event in events:
                last = event
        assert last.type == EventType.EVENT_TYPE_WORKFLOW_CANCELLED
        assert "expired: still PENDING 24 hours" in str(last.details["reason"])

        expired = await client.get_workflow(left.id)
        assert expired.status == WorkflowStatus.WORKFLOW_STATUS_CANCELLED
        fresh = await client.create_workflow("market-analysis-report", PARAMS)
        assert fresh.status == WorkflowStatus.WORKFLOW_STATUS_PENDING


async def test_retention_deletes_ended_runs_in_batches_and_keeps_the_rest(
    start_server: ServerFactory,
) -> None:
    clock = ManualClock()
    server = await start_server(clock=clock)
    async with WorkflowClient(server.address) as client:
        old = []
        for _ in range(5):
            run = await client.create_workflow("market-analysis-report", PARAMS)
            old.append(await client.execute_workflow(run.id, wait=True, timeout=10))
        unfinished = await client.create_workflow("market-analysis-report", PARAMS)
        clock.advance(timedelta(days=31))
        recent = await client.create_workflow("market-analysis-report", PARAMS)
        recent = await client.execute_workflow(recent.id, wait=True, timeout=10)

        janitor = _janitor(server, clock, Housekeeping(retention=timedelta(days=30), batch=2,
                                                       pending_expiry=timedelta(0)))  # fmt: skip
        swept = await janitor.sweep()
        assert (swept.deleted, swept.expired) == (5, 0)

        for run in old:
            with pytest.raises(NotFoundError):
                await client.get_workflow(run.id)
        left = {w.id for w in (await client.list_workflows()).workflows}
        assert left == {unfinished.id, recent.id}, "unended and recent runs stay"


def _janitor(server: SluiceServer, clock: ManualClock, settings: Housekeeping) -> Janitor:
    assert server.store is not None and server.engine is not None
    return Janitor(server.store, server.engine, clock, settings)
