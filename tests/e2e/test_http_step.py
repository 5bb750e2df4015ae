"""Outgoing HTTP over real gRPC: `http` steps and webhooks against a receiver on 127.0.0.1,
their answers used by later steps, the server's connection pool and its shutdown."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf import json_format

from sluice.client import InvalidArgumentError, StepStatus, Workflow, WorkflowClient, WorkflowStatus
from tests.conftest import ServerFactory
from tests.support.receiver import Receiver, running_receiver
from tests.support.templates import step, template


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as state:
        yield state


def outputs(run: Workflow) -> dict[str, Any]:
    return {s.step_id: json_format.MessageToDict(s.output) for s in run.steps}


async def test_a_later_step_uses_the_answer_of_an_http_step(
    start_server: ServerFactory, receiver: Receiver
) -> None:
    server = await start_server(webhook_allow=receiver.allow)
    receiver.body = b'{"order": {"id": "A-17", "items": 3}}'
    tpl = template(
        "fetch-and-confirm",
        step("fetch", "http", config={"url": receiver.url("/orders/{{ params.order }}")}),
        step(
            "confirm",
            "http",
            "fetch",
            config={
                "method": "POST",
                "url": receiver.url("/confirmations"),
                "body": {
                    "order": "{{ steps.fetch.body.order.id }}",
                    "items": "{{ steps.fetch.body.order.items }}",
                },
            },
        ),
        params=[{"name": "order", "required": True}],
    )
    async with WorkflowClient(server.address) as client:
        run = await client.create_workflow(tpl, {"order": "A-17"})
        done = await client.execute_workflow(run.id, wait=True, timeout=10)

    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error
    fetched, confirmed = receiver.requests
    assert (fetched.method, fetched.path) == ("GET", "/orders/A-17")
    assert (confirmed.method, confirmed.path) == ("POST", "/confirmations")
    assert json.loads(confirmed.body) == {"order": "A-17", "items": 3}
    assert fetched.headers["Idempotency-Key"] == f"{run.id}/fetch"
    assert confirmed.headers["Idempotency-Key"] == f"{run.id}/confirm"
    assert outputs(done)["fetch"] == {
        "status": 200,
        "headers": {"content-type": "application/json"},
        "body": {"order": {"id": "A-17", "items": 3}},
        "truncated": False,
    }


async def test_a_later_step_uses_the_answer_to_a_notify_webhook(
    start_server: ServerFactory, receiver: Receiver
) -> None:
    server = await start_server(webhook_allow=receiver.allow)
    receiver.body = b'{"ticket": "T-9"}'
    tpl = template(
        "notify-then-link",
        step("tell", "notify", config={"message": "Done", "webhookUrl": receiver.url("/chat")}),
        step(
            "link",
            "http",
            "tell",
            config={
                "method": "PUT",
                "url": receiver.url("/tickets/{{ steps.tell.webhookResponse.body.ticket }}"),
                "bodyText": "status {{ steps.tell.webhookStatus }}",
            },
        ),
    )
    async with WorkflowClient(server.address) as client:
        run = await client.create_workflow(tpl)
        done = await client.execute_workflow(run.id, wait=True, timeout=10)

    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error
    assert [(r.method, r.path, r.body) for r in receiver.requests][1] == (
        "PUT",
        "/tickets/T-9",
        b"status 200",
    )
    assert outputs(done)["tell"]["webhookResponse"]["body"] == {"ticket": "T-9"}


async def test_a_retryable_answer_is_retried_with_the_same_idempotency_key(
    start_server: ServerFactory, receiver: Receiver
) -> None:
    server = await start_server(webhook_allow=receiver.allow)
    receiver.status = 503
    retry = {"maxAttempts": 2, "initialBackoff": "0.05s"}
    tpl = template("unavailable", step("call", "http", config={"url": receiver.url()}, retry=retry))
    async with WorkflowClient(server.address) as client:
        run = await client.create_workflow(tpl)
        done = await client.execute_workflow(run.id, wait=True, timeout=10)

    assert done.status == WorkflowStatus.WORKFLOW_STATUS_FAILED
    assert done.steps[0].attempt == 2
    assert "answered 503, expected 2xx" in done.steps[0].error
    assert [r.headers["Idempotency-Key"] for r in receiver.requests] == [f"{run.id}/call"] * 2


async def test_an_unlisted_url_is_refused_before_any_request(
    start_server: ServerFactory, receiver: Receiver
) -> None:
    server = await start_server()  # no SLUICE_WEBHOOK_ALLOW
    written = template("refused", step("call", "http", config={"url": receiver.url()}))
    # A URL written in the template is refused when the template is validated...
    substituted = template(
        "refused-later",
        step("call", "http", config={"url": "{{ params.url }}"}),
        params=[{"name": "url", "required": True}],
    )
    async with WorkflowClient(server.address) as client:
        with pytest.raises(InvalidArgumentError) as refused:
            await client.create_workflow(written)
        [violation] = refused.value.violations
        assert violation.field == "template.steps[0].config.url"
        assert "SLUICE_WEBHOOK_ALLOW" in violation.description

        # ... and one a substitution gives, when the step resolves it: failed for good.
        run = await client.create_workflow(substituted, {"url": receiver.url()})
        done = await client.execute_workflow(run.id, wait=True, timeout=10)

    assert done.steps[0].status == StepStatus.STEP_STATUS_FAILED
    assert "SLUICE_WEBHOOK_ALLOW" in done.steps[0].error
    assert done.steps[0].attempt == 1  # refused for good: no retry
    assert receiver.requests == []


async def test_the_servers_pool_size_bounds_requests_in_flight(
    start_server: ServerFactory, receiver: Receiver
) -> None:
    server = await start_server(webhook_allow=receiver.allow, http_max_connections=2)
    receiver.hold = True
    tpl = template("held", step("call", "http", config={"url": receiver.url()}))
    async with WorkflowClient(server.address) as client:
        runs = [await client.create_workflow(tpl) for _ in range(4)]
        finished = asyncio.gather(
            *(client.execute_workflow(r.id, wait=True, timeout=20) for r in runs)
        )
        await receiver.replace_one_then_release_all(held=2)
        done = await finished

    assert [d.status for d in done] == [WorkflowStatus.WORKFLOW_STATUS_COMPLETED] * 4
    assert receiver.max_in_flight == 2


async def test_stopping_the_server_closes_its_connections(
    start_server: ServerFactory, receiver: Receiver
) -> None:
    server = await start_server(webhook_allow=receiver.allow)
    tpl = template("once", step("call", "http", config={"url": receiver.url()}))
    async with WorkflowClient(server.address) as client:
        run = await client.create_workflow(tpl)
        await client.execute_workflow(run.id, wait=True, timeout=10)
    assert receiver.open_connections == 1  # kept alive for the next request
    await server.stop()
    await receiver.wait_for(lambda r: r.open_connections == 0)
