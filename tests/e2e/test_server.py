"""What grpcurl / buf curl users rely on: reflection and health."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sluice.server import SluiceServer

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / "node_modules" / ".bin" / "buf"

RPCS = {
    "ListTemplates", "GetTemplate", "CreateTemplate", "ValidateTemplate", "CreateWorkflow",
    "ExecuteWorkflow", "GetWorkflow", "ListWorkflows", "PauseWorkflow", "ResumeWorkflow",
    "CancelWorkflow", "ApproveGate", "WatchWorkflow", "DeleteWorkflow", "DeleteTemplate",
    "ListWorkflowEvents",
    "RerunWorkflow", "RetryStep", "ListStepTypes", "GetAnalytics",
}  # fmt: skip


async def test_health_reports_serving(server: SluiceServer) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "sluice.v1.WorkflowService"):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.skipif(not BUF.exists() and shutil.which("buf") is None, reason="run `npm ci` for buf")
async def test_buf_curl_lists_every_rpc_through_reflection(server: SluiceServer) -> None:
    process = await asyncio.create_subprocess_exec(
        str(BUF if BUF.exists() else "buf"), "curl", "--protocol", "grpc", "--http2-prior-knowledge",
        f"http://{server.address}", "--list-methods",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()
    methods = {
        line.rsplit("/", 1)[-1] for line in stdout.decode().split() if "WorkflowService/" in line
    }
    assert methods == RPCS
