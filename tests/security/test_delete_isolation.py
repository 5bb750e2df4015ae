"""Deletion obeys isolation: another user's run or template answers NOT_FOUND and stays."""

from __future__ import annotations

import grpc
import pytest

from sluice.client import WorkflowClient
from sluice.server import SluiceServer
from sluice.v1 import workflow_service_pb2 as pb
from sluice.v1 import workflow_service_pb2_grpc as pb_grpc
from tests.support.crypto import token
from tests.support.templates import step, template


async def test_only_the_owner_deletes(auth_server: SluiceServer) -> None:
    async with (
        WorkflowClient(auth_server.address, token=token("alice")) as alice,
        grpc.aio.insecure_channel(auth_server.address) as channel,
    ):
        run = await alice.create_workflow("market-analysis-report", {"location": "Denver, CO"})
        await alice.cancel_workflow(run.id)
        await alice.create_template(
            template("alices", step("a", "generate", config={"contentType": "email"}))
        )
        bob = pb_grpc.WorkflowServiceStub(channel)
        as_bob = (("authorization", f"Bearer {token('bob')}"),)
        for call in (
            bob.DeleteWorkflow(pb.DeleteWorkflowRequest(workflow_id=run.id), metadata=as_bob),
            bob.DeleteTemplate(pb.DeleteTemplateRequest(template_id="alices"), metadata=as_bob),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        assert (await alice.get_workflow(run.id)).id == run.id
        assert (await alice.get_template("alices")).version == 1
