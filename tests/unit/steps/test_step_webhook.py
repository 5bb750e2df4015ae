from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable

import pytest

from sluice.engine.handlers import PermanentStepError, StepContext
from sluice.steps import StepError
from sluice.steps.http_client import HttpClient
from sluice.steps.notify import NotifyStep
from sluice.steps.post import PostStep
from sluice.steps.webhook import WebhookAllowList
from tests.support.receiver import Receiver
from tests.unit.steps.conftest import run_step

MakeCtx = Callable[..., StepContext]
MakeClient = Callable[..., HttpClient]


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


async def test_post_sends_json_with_idempotency_key(receiver: Receiver, client: MakeClient) -> None:
    receiver.status = 201
    payload = {"postId": "post_1", "content": "Hello, world", "n": 2}
    hooks = client()
    reply = await hooks.post_json(receiver.url(), payload, idempotency_key="run-1/post")
    assert reply.status == 201
    (request,) = receiver.requests
    assert (request.method, request.path) == ("POST", "/hook")
    assert json.loads(request.body) == payload
    assert request.headers["Idempotency-Key"] == "run-1/post"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == "sluice-webhook/1"


@pytest.mark.parametrize("status", [500, 503, 408, 429])
async def test_retryable_answers_raise_step_error(
    receiver: Receiver, status: int, client: MakeClient
) -> None:
    receiver.status = status
    with pytest.raises(StepError, match=str(status)) as caught:
        await client().post_json(receiver.url(), {}, idempotency_key="k")
    assert not isinstance(caught.value, PermanentStepError)


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_client_errors_are_permanent(
    receiver: Receiver, status: int, client: MakeClient
) -> None:
    receiver.status = status
    receiver.body = b'{"error": "no such list"}'
    with pytest.raises(PermanentStepError, match=str(status)) as caught:
        await client().post_json(receiver.url(), {}, idempotency_key="k")
    # The receiver's own explanation is in the message.
    assert "no such list" in str(caught.value)


async def test_redirects_are_not_followed(receiver: Receiver, client: MakeClient) -> None:
    receiver.status = 302
    with pytest.raises(PermanentStepError, match="redirects are not followed"):
        await client().post_json(receiver.url(), {}, idempotency_key="k")
    assert len(receiver.requests) == 1


async def test_timeout_is_retryable(receiver: Receiver, client: MakeClient) -> None:
    receiver.delay = 2.0
    with pytest.raises(StepError, match="timed out"):
        await client(timeout=0.2).post_json(receiver.url(), {}, idempotency_key="k")


async def test_connection_refused_is_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    hooks = HttpClient(WebhookAllowList.parse(f"127.0.0.1:{port}"), timeout_seconds=2.0)
    try:
        with pytest.raises(StepError, match="failed"):
            await hooks.post_json(f"http://127.0.0.1:{port}/", {}, idempotency_key="k")
    finally:
        await hooks.aclose()


async def test_refused_url_makes_no_request(receiver: Receiver) -> None:
    hooks = HttpClient(WebhookAllowList.parse("example.com"))
    with pytest.raises(PermanentStepError, match="loopback"):
        await hooks.post_json(receiver.url(), {}, idempotency_key="k")
    assert receiver.requests == []


async def test_proxies_from_the_environment_are_ignored(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, client: MakeClient
) -> None:
    # A proxy would see (and could redirect) every request; the allow-list names the receiver.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    reply = await client().post_json(receiver.url(), {}, idempotency_key="k")
    assert reply.status == 200
    assert len(receiver.requests) == 1


async def test_the_event_loop_keeps_running_during_a_post(
    receiver: Receiver, client: MakeClient
) -> None:
    receiver.delay = 0.3
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        await client().post_json(receiver.url(), {}, idempotency_key="k")
    finally:
        ticker.cancel()
    assert ticks >= 10


# --- many at once ---------------------------------------------------------------------------


async def test_twenty_webhooks_are_in_flight_at_once(
    receiver: Receiver, client: MakeClient
) -> None:
    """The receiver answers nobody until 20 requests wait on it together: a client that runs
    requests on a small thread pool (6 threads on 2 cores) never gets there and times out."""
    receiver.answer_when_in_flight = 20
    hooks = client()
    replies = await asyncio.gather(
        *(hooks.post_json(receiver.url(), {"n": n}, idempotency_key=f"r/{n}") for n in range(20))
    )
    assert [r.status for r in replies] == [200] * 20
    assert receiver.max_in_flight == 20


async def test_the_pool_size_bounds_requests_in_flight(
    receiver: Receiver, client: MakeClient
) -> None:
    receiver.hold = True
    hooks = client(max_connections=3)
    sent = asyncio.gather(
        *(hooks.post_json(receiver.url(), {}, idempotency_key=f"r/{n}") for n in range(6))
    )
    await receiver.replace_one_then_release_all(held=3)
    replies = await sent
    assert [r.status for r in replies] == [200] * 6
    assert receiver.max_in_flight == 3


async def test_waiting_for_a_connection_does_not_count_against_the_timeout(
    receiver: Receiver, client: MakeClient
) -> None:
    # One connection, eight requests of 0.2 s each: the last waits 1.4 s for the connection,
    # longer than the 1 s timeout, and still succeeds.
    receiver.delay = 0.2
    hooks = client(timeout=1.0, max_connections=1)
    replies = await asyncio.gather(
        *(hooks.post_json(receiver.url(), {}, idempotency_key=f"r/{n}") for n in range(8))
    )
    assert [r.status for r in replies] == [200] * 8
    assert receiver.max_in_flight == 1


async def test_closing_the_client_closes_its_connections(
    receiver: Receiver, client: MakeClient
) -> None:
    hooks = client()
    await hooks.post_json(receiver.url(), {}, idempotency_key="k")
    assert receiver.open_connections == 1  # kept alive for the next request
    await hooks.aclose()
    await receiver.wait_for(lambda r: r.open_connections == 0)


# --- the receiver's answer ------------------------------------------------------------------


async def test_a_json_answer_is_parsed(receiver: Receiver, client: MakeClient) -> None:
    receiver.status = 201
    receiver.headers = {"Content-Type": "application/json; charset=utf-8", "ETag": '"v1"'}
    receiver.body = b'{"id": "msg-7", "queued": true, "n": 3}'
    reply = await client().post_json(receiver.url(), {}, idempotency_key="k")
    assert reply.output() == {
        "status": 201,
        "headers": {"content-type": "application/json; charset=utf-8", "etag": '"v1"'},
        "body": {"id": "msg-7", "queued": True, "n": 3},
        "truncated": False,
    }


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("text/plain", b"accepted", "accepted"),
        ("application/problem+json", b'{"title": "ok"}', {"title": "ok"}),
        ("text/plain; charset=latin-1", "caf\u00e9".encode("latin-1"), "caf\u00e9"),
        ("application/json", b"not json", "not json"),  # a wrong label: the text is kept
        ("application/json", b'{"x": NaN}', '{"x": NaN}'),  # no NaN in step output
        ("application/json", b'{"a": "\\u0000"}', '{"a": "\\u0000"}'),  # nor NUL characters
        ("application/json", b"[" * 30 + b"]" * 30, "[" * 30 + "]" * 30),  # too deep for outputs
        ("text/plain", b"nul \x00 here", "nul \ufffd here"),
        ("application/json", b"", None),
    ],
)
async def test_answers_become_json_text_or_null(
    receiver: Receiver, content_type: str, body: bytes, expected: object, client: MakeClient
) -> None:
    receiver.headers = {"Content-Type": content_type}
    receiver.body = body
    reply = await client().post_json(receiver.url(), {}, idempotency_key="k")
    assert reply.body == expected
    assert not reply.truncated


async def test_a_long_answer_is_cut_at_the_limit(receiver: Receiver, client: MakeClient) -> None:
    receiver.body = json.dumps({"items": ["x" * 100] * 100}).encode()  # about 10 KB of JSON
    reply = await client(max_response_bytes=1000).post_json(receiver.url(), {}, idempotency_key="k")
    assert reply.truncated
    # Half a JSON document does not parse: the first 1,000 bytes are kept as text.
    assert reply.body == receiver.body[:1000].decode()


async def test_a_cut_never_splits_a_character(receiver: Receiver, client: MakeClient) -> None:
    receiver.headers = {"Content-Type": "text/plain; charset=utf-8"}
    receiver.body = "\u00e9".encode() * 10  # two bytes each
    reply = await client(max_response_bytes=5).post_json(receiver.url(), {}, idempotency_key="k")
    assert (reply.body, reply.truncated) == ("\u00e9\u00e9", True)


async def test_post_step_delivers_to_the_webhook_and_keeps_the_answer(
    make_ctx: MakeCtx, receiver: Receiver, client: MakeClient
) -> None:
    receiver.body = b'{"id": "fb-123"}'
    ctx = make_ctx(
        "post",
        {"platform": "facebook", "webhookUrl": receiver.url("/posts")},
        upstream={"g": {"contentType": "social-post", "content": "Hello. #News"}},
        step_id="post-content",
    )
    result = await run_step(PostStep(client()), ctx)
    assert result.output["webhookStatus"] == 200
    assert result.output["webhookResponse"]["body"] == {"id": "fb-123"}
    (request,) = receiver.requests
    assert request.path == "/posts"
    assert request.headers["Idempotency-Key"] == "run-1/post-content"
    assert json.loads(request.body)["postId"] == result.output["postId"]


async def test_notify_step_keeps_the_answer(
    make_ctx: MakeCtx, receiver: Receiver, client: MakeClient
) -> None:
    receiver.body = b'{"ticket": 42}'
    ctx = make_ctx("notify", {"message": "Done", "webhookUrl": receiver.url("/n")})
    result = await NotifyStep(client()).run(ctx)
    assert result.output["webhookResponse"]["body"] == {"ticket": 42}


async def test_a_connection_dropped_before_any_answer_is_tried_again_within_the_attempt() -> None:
    """A kept-alive connection the receiver closed, or one it dropped before answering, is
    the classic transient error: the request goes again at once (same Idempotency-Key) rather
    than failing the attempt and waiting out the step's backoff."""
    requests: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )  # fmt: skip
        await reader.readexactly(length)
        requests.append(head)
        if len(requests) > 1:  # the first is dropped unanswered
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    hooks = HttpClient(WebhookAllowList.parse(f"127.0.0.1:{port}"), timeout_seconds=5.0)
    try:
        reply = await hooks.post_json(f"http://127.0.0.1:{port}/", {}, idempotency_key="r/s")
    finally:
        await hooks.aclose()
        server.close()

    assert reply.status == 200
    assert len(requests) == 2
    assert all(b"Idempotency-Key: r/s" in head for head in requests)


async def test_a_receiver_that_keeps_refusing_fails_the_attempt_after_a_few_tries() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    hooks = HttpClient(WebhookAllowList.parse(f"127.0.0.1:{port}"), timeout_seconds=5.0)
    try:
        with pytest.raises(StepError, match=r"failed \(3 tries\)"):
            await hooks.post_json(f"http://127.0.0.1:{port}/", {}, idempotency_key="k")
    finally:
        await hooks.aclose()
