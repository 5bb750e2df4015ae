"""The gRPC-Web adapter of SLUICE_HTTP_LISTEN, spoken with aiohttp's client in gRPC-Web's own
framing (5-byte frame headers, a trailer frame): unary calls, errors with their details as
trailers, WatchWorkflow streamed message by message, authentication, deadlines, a browser
that goes away, and what is not served."""

from __future__ import annotations

import asyncio
import base64
import ssl
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from structlog.testing import capture_logs
from yarl import URL

from sluice.client import EventType, ResourceExhaustedError, WorkflowClient
from sluice.server import SluiceServer
from sluice.v1 import workflow_service_pb2 as pb
from sluice.v1 import workflow_service_pb2_grpc as pb_grpc
from sluice.v1.template_pb2 import Template
from sluice.web import assets
from tests.conftest import ServerFactory
from tests.support.crypto import SECRET, make_pki, tls_settings, token
from tests.support.eventually import eventually
from tests.support.handlers import Calls
from tests.support.templates import step, template

SERVICE = "/sluice.v1.WorkflowService"
HEADERS = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1"}


@dataclass
class Answer:
    http_status: int
    messages: list[bytes] = field(default_factory=list)
    trailers: dict[str, str] = field(default_factory=dict)

    @property
    def code(self) -> int:
        return int(self.trailers["grpc-status"])


def frame(message: Message) -> bytes:
    body = message.SerializeToString()
    return struct.pack(">BI", 0, len(body)) + body


async def frames(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[int, bytes]]:
    """The response's frames as they arrive: (flags, payload)."""
    while True:
        try:
            head = await response.content.readexactly(5)
        except asyncio.IncompleteReadError as end:
            if end.partial:
                raise AssertionError("a frame was cut short") from None
            return
        flags, length = struct.unpack(">BI", head)
        yield flags, await response.content.readexactly(length)


def parse_trailers(payload: bytes) -> dict[str, str]:
    lines = payload.decode("ascii").split("\r\n")
    return dict(line.split(": ", 1) for line in lines if line)


async def call(
    session: aiohttp.ClientSession,
    server: SluiceServer,
    method: str,
    request: Message,
    headers: dict[str, str] | None = None,
) -> Answer:
    async with session.post(
        f"http://{server.http_address}{method}",
        data=frame(request),
        headers={**HEADERS, **(headers or {})},
    ) as response:
        answer = Answer(response.status)
        async for flags, payload in frames(response):
            if flags & 0x80:
                answer.trailers = parse_trailers(payload)
            else:
                answer.messages.append(payload)
        return answer


@pytest.fixture
async def web(start_server: ServerFactory) -> SluiceServer:
    return await start_server(http_listen="127.0.0.1:0")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


def latched(name: str) -> Template:
    return json_format.ParseDict(
        template(
            "web-latched", step("a", "latch", config={"latch": name}), step("b", "sleep", "a")
        ),
        Template(),
    )


async def test_a_unary_call_answers_as_over_grpc(
    web: SluiceServer, session: aiohttp.ClientSession
) -> None:
    answer = await call(
        session,
        web,
        f"{SERVICE}/GetTemplate",
        pb.GetTemplateRequest(template_id="content-to-social"),
    )
    assert answer.http_status == 200
    assert answer.code == 0, answer.trailers
    assert len(answer.messages) == 1
    got = pb.GetTemplateResponse.FromString(answer.messages[0])
    assert got.template.id == "content-to-social"
    async with WorkflowClient(web.address) as client:
        assert got.template == await client.get_template("content-to-social")


async def test_field_violations_arrive_as_trailers_with_their_details(
    web: SluiceServer, session: aiohttp.ClientSession
) -> None:
    answer = await call(
        session, web, f"{SERVICE}/CreateWorkflow",
        pb.CreateWorkflowRequest(template_id="content-to-social"),  # topic is required
    )  # fmt: skip
    assert answer.http_status == 200 and answer.messages == []
    assert answer.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    details = answer.trailers["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(base64.b64decode(details + "=" * (-len(details) % 4)))
    assert status.code == answer.code
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    assert [v.field for v in bad.field_violations] == ["params.topic"]
    # grpc-message is percent-encoded text saying what is wrong.
    assert "topic" in answer.trailers["grpc-message"]


async def test_watch_streams_each_event_as_it_is_committed(
    web: SluiceServer, session: aiohttp.ClientSession, calls: Calls
) -> None:
    async with WorkflowClient(web.address) as client:
        run = await client.create_workflow(latched("stream"))
        await client.execute_workflow(run.id)
        request = pb.WatchWorkflowRequest(workflow_id=run.id)
        async with session.post(
            f"http://{web.http_address}{SERVICE}/WatchWorkflow",
            data=frame(request),
            headers=HEADERS,
        ) as response:
            assert response.status == 200
            stream = frames(response)
            seen: list[pb.WatchWorkflowResponse] = []
            # The step waits on its latch: these events arrive while the run is still going,
            # so each was flushed as it came, not when the stream ended.
            while not seen or seen[-1].event.type != EventType.EVENT_TYPE_STEP_STARTED:
                flags, payload = await anext(stream)
                assert flags == 0
                seen.append(pb.WatchWorkflowResponse.FromString(payload))
            calls.open("stream")
            trailers: dict[str, str] = {}
            async for flags, payload in stream:
                if flags & 0x80:
                    trailers = parse_trailers(payload)
                else:
                    seen.append(pb.WatchWorkflowResponse.FromString(payload))
        assert trailers["grpc-status"] == "0"
        stored = [e async for e in client.watch(run.id)]
    assert [r.event for r in seen] == stored
    assert [r.event.sequence for r in seen] == list(range(1, len(seen) + 1))
    assert seen[-1].event.type == EventType.EVENT_TYPE_WORKFLOW_COMPLETED


async def test_a_browser_that_goes_away_ends_its_watch(
    start_server: ServerFactory, session: aiohttp.ClientSession
) -> None:
    web = await start_server(http_listen="127.0.0.1:0", max_watchers_per_run=1)
    async with WorkflowClient(web.address) as client:
        run = await client.create_workflow(latched("never"))
        await client.execute_workflow(run.id)
        request = pb.WatchWorkflowRequest(workflow_id=run.id, follow=True)
        response = await session.post(
            f"http://{web.http_address}{SERVICE}/WatchWorkflow",
            data=frame(request),
            headers=HEADERS,
        )
        await anext(frames(response))  # the stream is open: the run's one watcher slot is taken
        with pytest.raises(ResourceExhaustedError):
            await first_event(client, run.id)
        response.close()  # the browser goes away

        async def admitted() -> bool:
            try:
                await first_event(client, run.id)
            except ResourceExhaustedError:
                return False
            return True  # the slot is free again: the upstream call was cancelled

        assert await eventually(admitted, timeout=10)


async def first_event(client: WorkflowClient, run_id: str) -> None:
    async for _ in client.watch(run_id, follow=True):
        return


async def test_a_stopping_server_ends_open_watches_with_unavailable(
    web: SluiceServer, session: aiohttp.ClientSession
) -> None:
    async with WorkflowClient(web.address) as client:
        run = await client.create_workflow(latched("stopping"))
        await client.execute_workflow(run.id)
    request = pb.WatchWorkflowRequest(workflow_id=run.id, follow=True)
    async with session.post(
        f"http://{web.http_address}{SERVICE}/WatchWorkflow", data=frame(request), headers=HEADERS
    ) as response:
        stream = frames(response)
        assert (await anext(stream))[0] == 0  # open, an event read
        # The watch would wait for ever; stopping the server ends it at once, saying why.
        stopping = asyncio.ensure_future(web.stop())
        last = [payload async for flags, payload in stream if flags & 0x80]
        await asyncio.wait_for(stopping, 10)
    assert parse_trailers(last[-1])["grpc-status"] == str(grpc.StatusCode.UNAVAILABLE.value[0])


async def test_grpc_timeout_becomes_the_calls_deadline(
    web: SluiceServer, session: aiohttp.ClientSession
) -> None:
    async with WorkflowClient(web.address) as client:
        run = await client.create_workflow(latched("deadline"))
    answer = await call(
        session, web, f"{SERVICE}/ExecuteWorkflow",
        pb.ExecuteWorkflowRequest(workflow_id=run.id, wait=True),
        headers={"grpc-timeout": "300m"},
    )  # fmt: skip
    assert answer.code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]


async def test_the_same_authentication_as_grpc(
    start_server: ServerFactory, session: aiohttp.ClientSession
) -> None:
    web = await start_server(http_listen="127.0.0.1:0", auth_jwt_secret=SECRET)
    request = pb.ListWorkflowsRequest()
    with capture_logs() as logs:
        refused = await call(session, web, f"{SERVICE}/ListWorkflows", request)
    assert refused.code == grpc.StatusCode.UNAUTHENTICATED.value[0]
    assert refused.messages == []
    # The refusal is logged with the browser's address, not only the adapter's socket.
    (logged,) = [e for e in logs if e["event"] == "call refused"]
    assert logged["peer"].startswith("unix:") and logged["forwarded_for"] == "127.0.0.1"
    # A gRPC caller cannot claim an address: the header counts only on the adapter's socket.
    async with grpc.aio.insecure_channel(web.address) as channel:
        stub = pb_grpc.WorkflowServiceStub(channel)
        with capture_logs() as logs, pytest.raises(grpc.aio.AioRpcError):
            await stub.ListWorkflows(request, metadata=(("x-forwarded-for", "10.9.8.7"),))
    (logged,) = [e for e in logs if e["event"] == "call refused"]
    assert logged["peer"].startswith("ipv") and "forwarded_for" not in logged
    forged = await call(
        session, web, f"{SERVICE}/ListWorkflows", request,
        headers={"authorization": f"Bearer {token('alice', key='another-secret-of-32-bytes-or-more')}"},
    )  # fmt: skip
    assert forged.code == grpc.StatusCode.UNAUTHENTICATED.value[0]

    async with WorkflowClient(web.address, token=token("alice")) as alice:
        run = await alice.create_workflow("content-to-social", params={"topic": "t"})
    listed = await call(
        session, web, f"{SERVICE}/ListWorkflows", request,
        headers={"authorization": f"Bearer {token('alice')}"},
    )  # fmt: skip
    assert listed.code == 0
    assert [w.id for w in pb.ListWorkflowsResponse.FromString(listed.messages[0]).workflows] == [
        run.id
    ]
    # Isolation holds: another user sees none of alice's runs.
    other = await call(
        session, web, f"{SERVICE}/ListWorkflows", request,
        headers={"authorization": f"Bearer {token('bob')}"},
    )  # fmt: skip
    assert pb.ListWorkflowsResponse.FromString(other.messages[0]).workflows == []


@pytest.mark.parametrize(
    "method",
    [
        "/grpc.health.v1.Health/Check",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        # Bidirectional: a browser's fetch cannot stream requests.
        "/sluice.v1.WorkerService/StreamTasks",
        "/sluice.v1.WorkflowService/NoSuchMethod",
    ],
)
async def test_only_sluice_methods_a_browser_can_call_are_served(
    web: SluiceServer, session: aiohttp.ClientSession, method: str
) -> None:
    answer = await call(session, web, method, pb.GetTemplateRequest())
    assert answer.code == grpc.StatusCode.UNIMPLEMENTED.value[0]
    assert answer.messages == []


async def test_not_grpc_web_is_refused_at_the_http_layer(
    web: SluiceServer, session: aiohttp.ClientSession
) -> None:
    async with session.post(
        f"http://{web.http_address}{SERVICE}/ListTemplates",
        data=b"{}",
        headers={"content-type": "application/json"},
    ) as response:
        assert response.status == 415
    body = b"\x00\x00\x00\x00\x09" + b"short"  # the frame says 9 bytes, 5 follow
    async with session.post(
        f"http://{web.http_address}{SERVICE}/ListTemplates", data=body, headers=HEADERS
    ) as response:
        trailers = parse_trailers((await response.read())[5:])
        assert trailers["grpc-status"] == str(grpc.StatusCode.INVALID_ARGUMENT.value[0])


async def test_the_app_is_served_with_its_routes(
    web: SluiceServer, session: aiohttp.ClientSession
) -> None:
    if not assets.built():
        pytest.skip("the web view is not built (make web)")
    for path in ("/", "/runs/some-id", "/templates/content-to-social"):
        async with session.get(f"http://{web.http_address}{path}") as response:
            assert response.status == 200
            assert response.content_type == "text/html"
            assert '<div id="root">' in await response.text()
            assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    # A path out of the app's folder (to server/sluice/web/assets.py) gets the app, not the file.
    outside = URL(f"http://{web.http_address}/%2E%2E/assets.py", encoded=True)
    async with session.get(outside) as response:
        assert "def built" not in await response.text()


async def test_without_built_assets_the_server_says_so_and_serves_the_api(
    start_server: ServerFactory,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(assets, "STATIC", tmp_path / "not-built")
    with capture_logs() as logged:
        web = await start_server(http_listen="127.0.0.1:0")
    assert any(line["log_level"] == "warning" and "make web" in line["event"] for line in logged)
    async with session.get(f"http://{web.http_address}/") as response:
        assert response.status == 503
        assert "make web" in await response.text()
    answer = await call(session, web, f"{SERVICE}/ListTemplates", pb.ListTemplatesRequest())
    assert answer.code == 0


async def test_with_tls_the_web_view_is_https_with_the_servers_certificate(
    start_server: ServerFactory, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    pki = make_pki(tmp_path)
    web = await start_server(http_listen="127.0.0.1:0", **tls_settings(pki, mutual=True))
    url = f"https://{web.http_address}{SERVICE}/GetTemplate"
    body = frame(pb.GetTemplateRequest(template_id="content-to-social"))
    trusting = ssl.create_default_context(cafile=str(pki.ca))
    # Mutual TLS: without a client certificate the handshake fails.
    with pytest.raises(aiohttp.ClientError):
        async with session.post(url, data=body, headers=HEADERS, ssl=trusting) as response:
            await response.read()
    trusting.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    async with session.post(url, data=body, headers=HEADERS, ssl=trusting) as response:
        assert response.status == 200
        payload = await response.read()
    assert pb.GetTemplateResponse.FromString(payload[5 : 5 + struct.unpack(">I", payload[1:5])[0]])
    # Plain HTTP is not spoken there.
    with pytest.raises(aiohttp.ClientError):
        await session.post(url.replace("https:", "http:"), data=body, headers=HEADERS)
