"""The `http` step against a real receiver on 127.0.0.1; its config schema and checks."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from sluice.engine.handlers import PermanentStepError, StepContext
from sluice.steps import StepError, builtin_registry
from sluice.steps.http import HttpStep
from sluice.steps.http_client import HttpClient
from sluice.steps.webhook import WebhookAllowList
from tests.support.receiver import Receiver
from tests.unit.steps.conftest import run_step

MakeCtx = Callable[..., StepContext]
MakeClient = Callable[..., HttpClient]


async def test_get_with_query_and_headers(
    make_ctx: MakeCtx, receiver: Receiver, client: MakeClient
) -> None:
    receiver.headers = {"Content-Type": "application/json", "X-Request-Id": "abc", "X-Other": "1"}
    receiver.body = b'{"items": [{"id": 7}], "next": null}'
    config = {
        "url": receiver.url("/items?sort=new"),
        "query": {"page": 2.0, "tag": ["a", "b"], "all": True},
        "headers": {"Authorization": "Bearer t0ken", "X-Count": 3.0},
        "responseHeaders": ["X-Request-Id"],
    }
    result = await run_step(HttpStep(client()), make_ctx("http", config, step_id="fetch"))

    assert result.output == {
        "status": 200,
        "headers": {"content-type": "application/json", "x-request-id": "abc"},
        "body": {"items": [{"id": 7}], "next": None},
        "truncated": False,
    }
    (request,) = receiver.requests
    assert request.method == "GET"
    # The URL's own query is kept; Struct numbers are written as people wrote them.
    assert request.path == "/items?sort=new&page=2&tag=a&tag=b&all=true"
    assert request.headers["Authorization"] == "Bearer t0ken"
    assert request.headers["X-Count"] == "3"
    assert request.headers["Idempotency-Key"] == "run-1/fetch"
    assert request.headers["User-Agent"] == "sluice-http/1"


async def test_a_json_body_is_sent_as_json(
    make_ctx: MakeCtx, receiver: Receiver, client: MakeClient
) -> None:
    receiver.status = 201
    body = {"order": "A-1", "quantity": 3.0, "price": 9.5, "tags": ["x"], "gift": False}
    config = {"method": "POST", "url": receiver.url("/orders"), "body": body}
    result = await run_step(HttpStep(client()), make_ctx("http", config))

    assert result.output["status"] == 201
    (request,) = receiver.requests
    assert request.method == "POST"
    assert request.headers["Content-Type"] == "application/json"
    # Whole numbers go out as integers: config holds 3 as 3.0, and some receivers refuse 3.0.
    assert request.body == b'{"order":"A-1","quantity":3,"price":9.5,"tags":["x"],"gift":false}'


async def test_a_text_body_keeps_the_given_content_type(
    make_ctx: MakeCtx, receiver: Receiver, client: MakeClient
) -> None:
    config = {
        "method": "PUT",
        "url": receiver.url("/doc"),
        "bodyText": "<doc>é</doc>",
        "headers": {"content-type": "application/xml"},
    }
    await run_step(HttpStep(client()), make_ctx("http", config))
    (request,) = receiver.requests
    assert request.headers["Content-Type"] == "application/xml"
    assert request.body == "<doc>é</doc>".encode()


@pytest.mark.parametrize("method", ["PATCH", "DELETE", "HEAD"])
async def test_other_methods(
    make_ctx: MakeCtx, receiver: Receiver, client: MakeClient, method: str
) -> None:
    result = await run_step(
        HttpStep(client()), make_ctx("http", {"method": method, "url": receiver.url()})
    )
    assert receiver.requests[0].method == method
    assert result.output["body"] == (None if method == "HEAD" else {"ok": True})


@pytest.mark.parametrize(
    ("status", "expected"),
    [(404, [404]), (404, ["4xx"]), (204, None), (302, ["3xx"]), (500, [200, "5xx"])],
)
async def test_expected_statuses_complete_the_step(
    make_ctx: MakeCtx, receiver: Receiver, client: MakeClient, status: int, expected: Any
) -> None:
    receiver.status = status
    config: dict[str, Any] = {"url": receiver.url()}
    if expected is not None:
        config["expectedStatuses"] = [float(s) if isinstance(s, int) else s for s in expected]
    result = await run_step(HttpStep(client()), make_ctx("http", config))
    assert result.output["status"] == status


@pytest.mark.parametrize("status", [500, 502, 408, 429])
async def test_unexpected_statuses_the_receiver_may_outgrow_are_retried(
    make_ctx: MakeCtx, receiver: Receiver, client: MakeClient, status: int
) -> None:
    receiver.status = status
    with pytest.raises(StepError, match=f"answered {status}, expected 2xx") as caught:
        await run_step(HttpStep(client()), make_ctx("http", {"url": receiver.url()}))
    assert not isinstance(caught.value, PermanentStepError)


@pytest.mark.parametrize(
    ("status", "expected", "match"),
    [
        (404, None, "answered 404, expected 2xx"),
        (200, [201], "answered 200, expected 201"),
        (400, [200, "3xx"], "answered 400, expected 200 or 3xx"),
        (301, None, "redirects are not followed"),
    ],
)
async def test_other_unexpected_statuses_fail_the_step_at_once(
    make_ctx: MakeCtx,
    receiver: Receiver,
    client: MakeClient,
    status: int,
    expected: Any,
    match: str,
) -> None:
    receiver.status = status
    receiver.body = b'{"error": "nope"}'
    config: dict[str, Any] = {"url": receiver.url()}
    if expected is not None:
        config["expectedStatuses"] = expected
    with pytest.raises(PermanentStepError, match=match) as caught:
        await run_step(HttpStep(client()), make_ctx("http", config))
    assert "nope" in str(caught.value)
    assert len(receiver.requests) == 1


async def test_a_step_timeout_bounds_the_request(
    make_ctx: MakeCtx, receiver: Receiver, client: MakeClient
) -> None:
    receiver.delay = 2.0
    config = {"url": receiver.url(), "timeoutSeconds": 0.2}
    with pytest.raises(StepError, match=r"timed out after 0\.2s"):
        await run_step(HttpStep(client()), make_ctx("http", config))


async def test_the_answer_is_cut_at_the_servers_limit(
    make_ctx: MakeCtx, receiver: Receiver, client: MakeClient
) -> None:
    receiver.headers = {"Content-Type": "text/plain"}
    receiver.body = b"x" * 5000
    result = await run_step(
        HttpStep(client(max_response_bytes=1024)), make_ctx("http", {"url": receiver.url()})
    )
    assert result.output["truncated"] is True
    assert result.output["body"] == "x" * 1024


async def test_a_url_the_allow_list_refuses_makes_no_request(
    make_ctx: MakeCtx, receiver: Receiver
) -> None:
    step = HttpStep(HttpClient(WebhookAllowList.parse("api.example.com")))
    with pytest.raises(PermanentStepError, match=r"config\.url: .*SLUICE_WEBHOOK_ALLOW"):
        await run_step(step, make_ctx("http", {"url": receiver.url()}))
    # The built-in registry's step has no allow-list at all.
    default = builtin_registry().get("http")
    with pytest.raises(PermanentStepError, match="SLUICE_WEBHOOK_ALLOW"):
        await run_step(default, make_ctx("http", {"url": receiver.url()}))
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({}, r"config\.url: is required"),
        ({"url": "http://api.example.com/", "method": "get"}, r"config\.method: must be one of"),
        (
            {"url": "http://api.example.com/", "header": {}},
            r"config\.header: is not a known key; did you mean 'headers'",
        ),
        ({"url": "http://api.example.com/", "timeoutSeconds": 120}, r"config\.timeoutSeconds"),
        ({"url": "http://api.example.com/", "expectedStatuses": ["6xx"]}, r"expectedStatuses\[0\]"),
        ({"url": "http://api.example.com/", "headers": {"Host": "x"}}, r"config\.headers\.Host"),
        ({"url": "http://api.example.com/", "headers": {"X": "a\nb"}}, r"config\.headers\.X"),
        (
            {"url": "http://api.example.com/", "headers": {"a b": "1"}},
            r"config\.headers: must be a header name .*got 'a b'",
        ),
        ({"url": "http://api.example.com/", "query": {"q": {"a": 1}}}, r"config\.query\.q"),
        ({"url": "http://api.example.com/", "body": {}, "bodyText": "x"}, r"config\.bodyText"),
        ({"url": "ftp://api.example.com/"}, r"config\.url: .*http or https"),
    ],
)
async def test_bad_config_fails_the_step_naming_the_field(
    make_ctx: MakeCtx, config: dict[str, Any], match: str
) -> None:
    step = HttpStep(HttpClient(WebhookAllowList.parse("api.example.com")))
    with pytest.raises(PermanentStepError, match=match):
        await run_step(step, make_ctx("http", config))


# --- the schema and the checks a template's validation will use --------------------------


def test_the_config_schema_is_valid_draft_2020_12() -> None:
    Draft202012Validator.check_schema(HttpStep.config_schema)


@pytest.mark.parametrize(
    "config",
    [
        {"url": "https://api.example.com/x"},
        {"url": "{{ params.endpoint }}", "method": "DELETE"},
        {
            "url": "https://api.example.com/orders/{{ params.id }}",
            "method": "POST",
            "headers": {"Authorization": "Bearer {{ params.token }}", "X-Try": 2},
            "query": {"verbose": True, "fields": ["a", "b"], "limit": 10},
            "body": {"note": "{{ steps.fetch.body.id }}", "items": [1, 2]},
            "expectedStatuses": [200, 201.0, "4xx"],
            "timeoutSeconds": 12.5,
            "responseHeaders": ["X-Request-Id"],
        },
        {"url": "https://api.example.com/", "bodyText": "plain"},
        {"url": "https://api.example.com/", "body": None},
    ],
)
def test_configs_the_schema_accepts(config: dict[str, Any]) -> None:
    errors = list(Draft202012Validator(HttpStep.config_schema).iter_errors(config))
    assert errors == []


@pytest.mark.parametrize(
    ("config", "where"),
    [
        ({"method": "GET"}, []),  # no url
        ({"url": ""}, ["url"]),
        ({"url": "https://a/", "method": "TRACE"}, ["method"]),
        ({"url": "https://a/", "headers": {"X": ["a"]}}, ["headers", "X"]),
        ({"url": "https://a/", "headers": {"X": "\u00e9"}}, ["headers", "X"]),
        ({"url": "https://a/", "query": {"q": None}}, ["query", "q"]),
        ({"url": "https://a/", "expectedStatuses": []}, ["expectedStatuses"]),
        ({"url": "https://a/", "expectedStatuses": [99]}, ["expectedStatuses", 0]),
        ({"url": "https://a/", "expectedStatuses": ["2XX"]}, ["expectedStatuses", 0]),
        ({"url": "https://a/", "timeoutSeconds": 0}, ["timeoutSeconds"]),
        ({"url": "https://a/", "timeoutSeconds": 61}, ["timeoutSeconds"]),
        ({"url": "https://a/", "bodyText": {"a": 1}}, ["bodyText"]),
        ({"url": "https://a/", "retries": 3}, []),  # unknown key
    ],
)
def test_configs_the_schema_refuses(config: dict[str, Any], where: list[Any]) -> None:
    errors = list(Draft202012Validator(HttpStep.config_schema).iter_errors(config))
    assert [list(e.absolute_path) for e in errors] == [where]


def test_check_config_checks_a_literal_url_against_the_allow_list() -> None:
    step = HttpStep(HttpClient(WebhookAllowList.parse("api.example.com")))
    assert list(step.check_config({"url": "https://api.example.com/x"})) == []
    ((where, problem),) = step.check_config({"url": "https://evil.example.org/x"})
    assert where == "url"
    assert "evil.example.org" in problem and "SLUICE_WEBHOOK_ALLOW" in problem
    ((where, problem),) = step.check_config({"url": "http://127.0.0.1:8080/x"})
    assert "loopback" in problem


def test_check_config_checks_the_host_when_only_the_path_is_substituted() -> None:
    step = HttpStep(HttpClient(WebhookAllowList.parse("api.example.com")))
    assert list(step.check_config({"url": "https://api.example.com/o/{{ params.id }}"})) == []
    ((where, _),) = step.check_config({"url": "https://other.example.com/o/{{ params.id }}"})
    assert where == "url"
    # A substituted host is only known at run time: checked there.
    assert list(step.check_config({"url": "{{ params.url }}"})) == []
    assert list(step.check_config({"url": "https://{{ params.host }}/x"})) == []


def test_check_config_reports_server_headers_and_two_bodies() -> None:
    step = HttpStep(HttpClient(WebhookAllowList.parse("a.example.com")))
    config = {
        "url": "https://a.example.com/",
        "headers": {"Idempotency-Key": "mine", "content-length": "3", "X-Fine": "1"},
        "body": {"a": 1},
        "bodyText": "a",
    }
    assert sorted(where for where, _ in step.check_config(config)) == [
        "bodyText",
        "headers.Idempotency-Key",
        "headers.content-length",
    ]


def test_check_config_ignores_what_the_schema_reports() -> None:
    # Wrongly typed values are the schema's to report; the checks must not trip over them.
    step = HttpStep()
    assert list(step.check_config({"url": 3, "headers": ["Host"]})) == []


async def test_the_output_can_be_stored_as_json(
    make_ctx: MakeCtx, receiver: Receiver, client: MakeClient
) -> None:
    receiver.body = json.dumps({"deep": {"list": [1, 2.5, "x", None, True]}}).encode()
    result = await run_step(HttpStep(client()), make_ctx("http", {"url": receiver.url()}))
    assert json.loads(json.dumps(result.output, allow_nan=False)) == result.output
