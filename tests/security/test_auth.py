"""Bearer JWTs: every RPC but health needs a valid one; the token never leaks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from structlog.testing import capture_logs

from sluice.client import UnauthenticatedError, WorkflowClient
from sluice.server import SluiceServer
from sluice.v1 import workflow_service_pb2 as pb
from sluice.v1 import workflow_service_pb2_grpc as pb_grpc
from tests.conftest import ServerFactory
from tests.support.crypto import SECRET, rsa_key_pair, token

RUN_ID = "00000000-0000-4000-8000-000000000000"

# One minimal request per RPC; with a valid token none of them would be UNAUTHENTICATED.
CALLS: dict[str, Callable[[pb_grpc.WorkflowServiceStub], Any]] = {
    "ListTemplates": lambda s: s.ListTemplates(pb.ListTemplatesRequest()),
    "GetTemplate": lambda s: s.GetTemplate(pb.GetTemplateRequest(template_id="content-to-social")),
    "CreateTemplate": lambda s: s.CreateTemplate(pb.CreateTemplateRequest()),
    "ValidateTemplate": lambda s: s.ValidateTemplate(pb.ValidateTemplateRequest()),
    "ListStepTypes": lambda s: s.ListStepTypes(pb.ListStepTypesRequest()),
    "CreateWorkflow": lambda s: s.CreateWorkflow(pb.CreateWorkflowRequest(template_id="content-to-social")),
    "ExecuteWorkflow": lambda s: s.ExecuteWorkflow(pb.ExecuteWorkflowRequest(workflow_id=RUN_ID)),
    "GetWorkflow": lambda s: s.GetWorkflow(pb.GetWorkflowRequest(workflow_id=RUN_ID)),
    "ListWorkflows": lambda s: s.ListWorkflows(pb.ListWorkflowsRequest()),
    "PauseWorkflow": lambda s: s.PauseWorkflow(pb.PauseWorkflowRequest(workflow_id=RUN_ID)),
    "ResumeWorkflow": lambda s: s.ResumeWorkflow(pb.ResumeWorkflowRequest(workflow_id=RUN_ID)),
    "CancelWorkflow": lambda s: s.CancelWorkflow(pb.CancelWorkflowRequest(workflow_id=RUN_ID)),
    "ApproveGate": lambda s: s.ApproveGate(pb.ApproveGateRequest(workflow_id=RUN_ID, gate_id="g")),
    "WatchWorkflow": lambda s: _first(s.WatchWorkflow(pb.WatchWorkflowRequest(workflow_id=RUN_ID))),
    "DeleteWorkflow": lambda s: s.DeleteWorkflow(pb.DeleteWorkflowRequest(workflow_id=RUN_ID)),
    "DeleteTemplate": lambda s: s.DeleteTemplate(pb.DeleteTemplateRequest(template_id="mine")),
    "ListWorkflowEvents": lambda s: s.ListWorkflowEvents(pb.ListWorkflowEventsRequest(workflow_id=RUN_ID)),
    "RerunWorkflow": lambda s: s.RerunWorkflow(pb.RerunWorkflowRequest(workflow_id=RUN_ID)),
    "RetryStep": lambda s: s.RetryStep(pb.RetryStepRequest(workflow_id=RUN_ID, step_id="a")),
    "GetAnalytics": lambda s: s.GetAnalytics(pb.GetAnalyticsRequest()),
}  # fmt: skip


async def _first(stream: Any) -> Any:
    async for item in stream:
        return item
    return None


def test_every_rpc_is_covered() -> None:
    service = pb.DESCRIPTOR.services_by_name["WorkflowService"]
    assert set(CALLS) == {m.name for m in service.methods}


BAD_CREDENTIALS: dict[str, str | None] = {
    "no token": None,
    "wrong signature": "Bearer " + token("alice", key="another-secret-of-enough-length!!"),
    "expired": "Bearer " + token("alice", expires_in=-120),
    "not a JWT": "Bearer not.a.jwt",
    "wrong scheme": "Basic " + token("alice"),
    "no sub": "Bearer " + jwt.encode({"exp": 4102444800}, SECRET, algorithm="HS256"),
    "no exp": "Bearer " + jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256"),
    "alg none": "Bearer " + jwt.encode({"sub": "alice", "exp": 4102444800}, "", algorithm="none"),
}


@pytest.mark.parametrize("case", list(BAD_CREDENTIALS))
async def test_bad_credentials_are_unauthenticated_on_every_rpc(
    auth_server: SluiceServer, case: str
) -> None:
    header = BAD_CREDENTIALS[case]
    metadata = (("authorization", header),) if header else ()
    async with grpc.aio.insecure_channel(auth_server.address) as channel:
        stub = pb_grpc.WorkflowServiceStub(channel)
        for name, call in CALLS.items():
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await _with_metadata(call, stub, metadata)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, (case, name)
            if header:
                assert header.split(" ", 1)[1] not in (caught.value.details() or "")

        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def _with_metadata(call: Callable[[Any], Any], stub: Any, metadata: Any) -> Any:
    """Call with metadata by wrapping the stub's methods."""

    class WithMetadata:
        def __getattr__(self, name: str) -> Any:
            method = getattr(stub, name)
            return lambda request: method(request, metadata=metadata)

    result = call(WithMetadata())
    return await result if isinstance(result, Awaitable) else result


async def test_a_valid_token_is_accepted_and_names_the_owner(auth_server: SluiceServer) -> None:
    async with WorkflowClient(auth_server.address, token=token("alice")) as client:
        run = await client.create_workflow("market-analysis-report", {"location": "Austin"})
    assert run.owner == "alice"


async def test_the_client_raises_a_typed_error(auth_server: SluiceServer) -> None:
    async with WorkflowClient(auth_server.address) as client:
        with pytest.raises(UnauthenticatedError, match="missing bearer token"):
            await client.list_templates()


async def test_rs256_public_key(start_server: ServerFactory, tmp_path: Path) -> None:
    private_key, public_pem = rsa_key_pair(tmp_path)
    server = await start_server(auth_jwt_public_key_file=str(public_pem))
    good = token("carol", key=private_key, algorithm="RS256")
    async with WorkflowClient(server.address, token=good) as client:
        assert len(await client.list_templates()) >= 3
    # Algorithm confusion: an HS256 token "signed" with the public key must not pass.
    forged = jwt.encode({"sub": "carol", "exp": 4102444800}, "x" * 32, algorithm="HS256")
    async with WorkflowClient(server.address, token=forged) as client:
        with pytest.raises(UnauthenticatedError):
            await client.list_templates()


async def test_tokens_never_reach_the_log(
    auth_server: SluiceServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good, bad = token("alice"), token("alice", key="wrong-secret-wrong-secret-wrong!!")
    with capture_logs() as logged:  # Sluice's own lines (structlog); caplog has the libraries'
        async with WorkflowClient(auth_server.address, token=good) as client:
            run = await client.create_workflow("market-analysis-report", {"location": "Austin"})
            await client.execute_workflow(run.id, auto_approve=True, wait=True, timeout=20)
        async with WorkflowClient(auth_server.address, token=bad) as client:
            with pytest.raises(UnauthenticatedError) as caught:
                await client.get_workflow(run.id)
        # The server logs the refusal after answering it: give its task the turn it needs.
        for _ in range(500):  # 5 s at most
            if any(line["event"] == "call refused" for line in logged):
                break
            await asyncio.sleep(0.01)
    assert bad not in str(caught.value)
    assert any(line["event"] == "call refused" for line in logged)
    for secret in (good, bad, SECRET):
        assert secret not in caplog.text
        assert secret not in str(logged)


async def test_the_expiry_leeway_is_a_setting(start_server: ServerFactory, tmp_path: Path) -> None:
    lenient = await start_server(auth_jwt_secret=SECRET)  # 30 s, the default
    strict = await start_server(  # its own database: SQLite serves one server
        auth_jwt_secret=SECRET, auth_jwt_leeway=timedelta(0),
        database_url=f"sqlite:///{tmp_path / 'strict.db'}",
    )  # fmt: skip
    expired = token("alice", expires_in=-10)
    async with WorkflowClient(lenient.address, token=expired) as client:
        assert len(await client.list_templates()) >= 3
    async with WorkflowClient(strict.address, token=expired) as client:
        with pytest.raises(UnauthenticatedError, match="expired"):
            await client.list_templates()
