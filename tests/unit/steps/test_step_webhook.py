from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sluice.engine.handlers import PermanentStepError, StepContext
from sluice.steps import StepError
from sluice.steps.post import PostStep
from sluice.steps.webhook import WebhookAllowList, WebhookClient
from tests.unit.steps.conftest import run_step

MakeCtx = Callable[..., StepContext]


# --- the allow-list ------------------------------------------------------------------------


def test_an_empty_list_refuses_everything() -> None:
    with pytest.raises(PermanentStepError, match=r"example\.com.*SLUICE_WEBHOOK_ALLOW"):
        WebhookAllowList.parse("").check("https://example.com/hook")


def test_unlisted_host_is_refused() -> None:
    allow = WebhookAllowList.parse("hooks.example.com")
    with pytest.raises(PermanentStepError, match=r"evil\.example\.org.*SLUICE_WEBHOOK_ALLOW"):
        allow.check("https://evil.example.org/hook")
    # No suffix or prefix matching.
    with pytest.raises(PermanentStepError):
        allow.check("https://hooks.example.com.evil.org/")
    with pytest.raises(PermanentStepError):
        allow.check("https://example.com/")


def test_host_and_host_port_entries() -> None:
    allow = WebhookAllowList.parse(" Hooks.Example.com , api.example.com:8443,")
    allow.check("https://hooks.example.com/a")  # any port of a bare host
    allow.check("http://hooks.example.com:8080/a")
    allow.check("https://HOOKS.example.com./a")
    allow.check("https://api.example.com:8443/a")
    with pytest.raises(PermanentStepError, match=r"api\.example\.com:443"):
        allow.check("https://api.example.com/a")
    with pytest.raises(PermanentStepError):
        allow.check("https://api.example.com:8444/a")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://127.9.9.9:8080/hook",
        "http://localhost:8080/hook",
        "http://[::1]/hook",
        "http://app.localhost/hook",
    ],
)
def test_loopback_is_refused_unless_listed(url: str) -> None:
    with pytest.raises(PermanentStepError, match="loopback"):
        WebhookAllowList.parse("example.com").check(url)


def test_listed_loopback_is_allowed() -> None:
    allow = WebhookAllowList.parse("127.0.0.1:9000, localhost, [::1]:8080")
    allow.check("http://127.0.0.1:9000/hook")
    allow.check("http://LOCALHOST:1234/hook")
    allow.check("http://[0:0:0:0:0:0:0:1]:8080/hook")
    for url in ("http://127.0.0.1:9001/", "http://127.0.0.2:9000/", "http://[::1]:8081/"):
        with pytest.raises(PermanentStepError):
            allow.check(url)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("ftp://example.com/x", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("example.com/hook", "http or https"),
        ("https://user:secret@example.com/", "credentials"),
        ("http:///no-host", "no host"),
        ("http://example.com:99999/", "malformed"),
    ],
)
def test_bad_urls_are_refused(url: str, match: str) -> None:
    with pytest.raises(PermanentStepError, match=match):
        WebhookAllowList.parse("example.com").check(url)


@pytest.mark.parametrize(
    "spec", ["example.com:99999", "example.com:http", "https://example.com", "[::1]x", ":80"]
)
def test_malformed_allow_list_is_a_value_error(spec: str) -> None:
    with pytest.raises(ValueError, match="SLUICE_WEBHOOK_ALLOW"):
        WebhookAllowList.parse(spec)


# --- real POSTs to a server on 127.0.0.1 -------------------------------------------------------


@dataclass
class Receiver:
    port: int = 0
    status: int = 200
    delay: float = 0.0
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.requests.append((self.path, dict(self.headers.items()), body))
            if state.delay:
                state.release.wait(state.delay)
            try:
                self.send_response(state.status)
                if 300 <= state.status < 400:
                    self.send_header("Location", "http://127.0.0.1:1/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:
                pass  # the client gave up (timeout tests)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join()


def client(receiver: Receiver, timeout: float = 5.0) -> WebhookClient:
    return WebhookClient(WebhookAllowList.parse(f"127.0.0.1:{receiver.port}"), timeout)


async def test_post_sends_json_with_idempotency_key(receiver: Receiver) -> None:
    receiver.status = 201
    payload = {"postId": "post_1", "content": "Hello, world", "n": 2}
    status = await client(receiver).post_json(receiver.url(), payload, idempotency_key="run-1/post")
    assert status == 201
    ((path, headers, body),) = receiver.requests
    assert path == "/hook"
    assert json.loads(body) == payload
    assert headers["Idempotency-Key"] == "run-1/post"
    assert headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("status", [500, 503, 408, 429])
async def test_retryable_answers_raise_step_error(receiver: Receiver, status: int) -> None:
    receiver.status = status
    with pytest.raises(StepError, match=str(status)) as caught:
        await client(receiver).post_json(receiver.url(), {}, idempotency_key="k")
    assert not isinstance(caught.value, PermanentStepError)


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_client_errors_are_permanent(receiver: Receiver, status: int) -> None:
    receiver.status = status
    with pytest.raises(PermanentStepError, match=str(status)):
        await client(receiver).post_json(receiver.url(), {}, idempotency_key="k")


async def test_redirects_are_not_followed(receiver: Receiver) -> None:
    receiver.status = 302
    with pytest.raises(PermanentStepError, match="redirects are not followed"):
        await client(receiver).post_json(receiver.url(), {}, idempotency_key="k")
    assert len(receiver.requests) == 1


async def test_timeout_is_retryable(receiver: Receiver) -> None:
    receiver.delay = 2.0
    with pytest.raises(StepError, match="timed out"):
        await client(receiver, timeout=0.2).post_json(receiver.url(), {}, idempotency_key="k")


async def test_connection_refused_is_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    hooks = WebhookClient(WebhookAllowList.parse(f"127.0.0.1:{port}"), 2.0)
    with pytest.raises(StepError, match="failed"):
        await hooks.post_json(f"http://127.0.0.1:{port}/", {}, idempotency_key="k")


async def test_refused_url_makes_no_request(receiver: Receiver) -> None:
    hooks = WebhookClient(WebhookAllowList.parse("example.com"))
    with pytest.raises(PermanentStepError, match="loopback"):
        await hooks.post_json(receiver.url(), {}, idempotency_key="k")
    assert receiver.requests == []


async def test_the_event_loop_keeps_running_during_a_post(receiver: Receiver) -> None:
    receiver.delay = 0.3
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        await client(receiver).post_json(receiver.url(), {}, idempotency_key="k")
    finally:
        ticker.cancel()
    assert ticks >= 10


async def test_post_step_delivers_to_the_webhook(make_ctx: MakeCtx, receiver: Receiver) -> None:
    ctx = make_ctx(
        "post",
        {"platform": "facebook", "webhookUrl": receiver.url("/posts")},
        upstream={"g": {"contentType": "social-post", "content": "Hello. #News"}},
        step_id="post-content",
    )
    result = await run_step(PostStep(client(receiver)), ctx)
    assert result.output["webhookStatus"] == 200
    ((path, headers, body),) = receiver.requests
    assert path == "/posts"
    assert headers["Idempotency-Key"] == "run-1/post-content"
    assert json.loads(body)["postId"] == result.output["postId"]
