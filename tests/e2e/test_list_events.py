"""ListWorkflowEvents: a run's stored events page by page, the very events WatchWorkflow
streams, filtered by type and step; bad requests and strangers' runs refused."""

from __future__ import annotations

import asyncio
import os

import grpc
import pytest

from sluice.client import (
    EventType,
    InvalidArgumentError,
    NotFoundError,
    WorkflowClient,
    WorkflowEvent,
    WorkflowStatus,
)
from sluice.client.errors import from_rpc_error
from sluice.server import SluiceServer
from sluice.v1 import workflow_service_pb2 as pb
from sluice.v1 import workflow_service_pb2_grpc as pb_grpc
from tests.conftest import ServerFactory
from tests.support.crypto import SECRET, token
from tests.support.handlers import Calls
from tests.support.templates import approval_gate, step, template, threshold_gate

E = EventType
MISSING = "00000000-0000-4000-8000-000000000000"

# A log with a bit of everything: a retry, an optional step that fails, a threshold gate that
# pauses the run, an approval, outputs in the details.
LOGGED = template(
    "logged",
    step("a", config={"output": {"qualityScore": 0.5, "text": "first"}}),
    step("b", "flaky", "a", config={"failures": 1},
         retry={"maxAttempts": 2, "initialBackoff": "0.01s"}),
    step("c", "fail", "a", optional=True),
    step("d", "sleep", "b", config={"output": {"done": True}}),
    gates=[threshold_gate("q", "a", "PAUSE"), approval_gate("ok", "b")],
)  # fmt: skip


async def _finished_run(client: WorkflowClient) -> tuple[str, list[WorkflowEvent]]:
    """A LOGGED run taken to completion, and the events WatchWorkflow streams for it."""
    run = await client.create_workflow(LOGGED)
    await client.execute_workflow(run.id, wait=True, timeout=10)  # paused by gate q
    await client.resume_workflow(run.id, wait=True, timeout=10)  # waits for approval ok
    done = await client.approve_gate(run.id, "ok", wait=True, timeout=10)
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
    watched = [event async for event in client.watch(run.id)]
    assert len(watched) == done.last_sequence > 20
    return run.id, watched


async def _pages(client: WorkflowClient, workflow_id: str, **request: object) -> list[list[WorkflowEvent]]:  # fmt: skip
    """Every page, following next_page_token until it is empty."""
    pages: list[list[WorkflowEvent]] = []
    page_token = ""
    while True:
        page = await client.list_workflow_events(workflow_id, page_token=page_token, **request)  # type: ignore[arg-type]
        pages.append(list(page.events))
        page_token = page.next_page_token
        if not page_token:
            return pages


async def test_pages_put_together_are_exactly_the_watched_events(client: WorkflowClient) -> None:
    run_id, watched = await _finished_run(client)

    for size in (1, 3, 1000):
        pages = await _pages(client, run_id, page_size=size)
        # Whole messages compared: sequence, type, time, step, gate, attempt, status, details.
        assert [e for page in pages for e in page] == watched, size
        assert [len(p) for p in pages[:-1]] == [size] * (len(pages) - 1)
        assert 1 <= len(pages[-1]) <= size
    # 0 means 100, more than this run has: one page, no token.
    default = await client.list_workflow_events(run_id)
    assert list(default.events) == watched and default.next_page_token == ""
    # The iterator of the client, and after_sequence to read only what followed a sequence.
    assert [e async for e in client.iter_workflow_events(run_id, page_size=4)] == watched
    assert [e async for e in client.iter_workflow_events(run_id, after_sequence=7)] == watched[7:]
    assert [e async for e in client.iter_workflow_events(run_id, after_sequence=999)] == []
    # Past any sequence a database column holds: nothing, from the list and from the watch.
    assert [e async for e in client.iter_workflow_events(run_id, after_sequence=2**40)] == []
    assert [e async for e in client.watch(run_id, after_sequence=2**40)] == []


async def test_filters_by_type_and_by_step_give_those_events_in_order(
    client: WorkflowClient,
) -> None:
    run_id, watched = await _finished_run(client)

    async def listed(**request: object) -> list[WorkflowEvent]:
        return [e for page in await _pages(client, run_id, page_size=2, **request) for e in page]

    kinds = [E.EVENT_TYPE_STEP_COMPLETED, E.EVENT_TYPE_STEP_RETRYING]
    by_type = await listed(types=kinds)
    assert by_type == [e for e in watched if e.type in kinds]
    assert {e.type for e in by_type} == set(kinds)
    assert [e.step_id for e in by_type if e.type == E.EVENT_TYPE_STEP_COMPLETED] == [
        "a", "b", "d"
    ]  # fmt: skip
    # Names as the CLI and README write them do as well.
    assert await listed(types=["STEP_COMPLETED", "step_retrying"]) == by_type

    by_step = await listed(step_ids=["b"])
    assert by_step == [e for e in watched if e.step_id == "b"]
    assert {e.type for e in by_step} >= {
        E.EVENT_TYPE_STEP_STARTED, E.EVENT_TYPE_STEP_RETRYING, E.EVENT_TYPE_STEP_COMPLETED,
        E.EVENT_TYPE_GATE_AWAITING_APPROVAL, E.EVENT_TYPE_GATE_APPROVED,
    }, "a step's events include those of the gate on it"  # fmt: skip

    both = await listed(types=[E.EVENT_TYPE_STEP_STARTED], step_ids=["b", "c", "b"])
    assert both == [
        e for e in watched if e.type == E.EVENT_TYPE_STEP_STARTED and e.step_id in ("b", "c")
    ]
    assert sorted((e.step_id, e.attempt) for e in both) == [("b", 1), ("b", 2), ("c", 1)]
    failed = await listed(types=[E.EVENT_TYPE_STEP_FAILED, E.EVENT_TYPE_WORKFLOW_COMPLETED])
    assert [(e.type, e.step_id) for e in failed] == [
        (E.EVENT_TYPE_STEP_FAILED, "c"), (E.EVENT_TYPE_WORKFLOW_COMPLETED, "")
    ]  # fmt: skip
    assert failed[0].details["error"] == "RuntimeError: always fails"
    # A filter no event matches: an empty page, no token.
    empty = await client.list_workflow_events(run_id, types=[E.EVENT_TYPE_WORKFLOW_CANCELLED])
    assert list(empty.events) == [] and empty.next_page_token == ""
    # Filters and after_sequence together.
    late = await listed(step_ids=["b"], after_sequence=by_step[2].sequence)
    assert late == by_step[3:]


async def test_a_run_still_going_lists_what_it_logged_so_far(
    client: WorkflowClient, calls: Calls
) -> None:
    run = await client.create_workflow(
        template("going", step("a"), step("hold", "latch", "a", config={"latch": "go"}))
    )
    await client.execute_workflow(run.id)
    await asyncio.wait_for(calls.started[f"{run.id}/hold"].wait(), 10)

    so_far = await client.list_workflow_events(run.id, page_size=100)
    types = [e.type for e in so_far.events]
    assert types[-1] == E.EVENT_TYPE_STEP_STARTED and so_far.events[-1].step_id == "hold"
    assert E.EVENT_TYPE_WORKFLOW_COMPLETED not in types
    assert so_far.next_page_token == "", "the stored events are all read"

    calls.latches["go"].set()
    watched = [e async for e in client.watch(run.id)]
    last = so_far.events[-1].sequence
    rest = [e async for e in client.iter_workflow_events(run.id, after_sequence=last)]
    assert list(so_far.events) + rest == watched
    assert rest[-1].type == E.EVENT_TYPE_WORKFLOW_COMPLETED


async def test_bad_requests_name_every_bad_field(server: SluiceServer, client: WorkflowClient) -> None:  # fmt: skip
    run_id, _ = await _finished_run(client)
    async with grpc.aio.insecure_channel(server.address) as channel:
        api = pb_grpc.WorkflowServiceStub(channel)

        async def refused(request: pb.ListWorkflowEventsRequest) -> dict[str, str]:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await api.ListWorkflowEvents(request, timeout=10)
            error = from_rpc_error(caught.value)
            assert isinstance(error, InvalidArgumentError), error
            return {v.field: v.description for v in error.violations}

        # Every problem at once, each naming its field.
        found = await refused(
            pb.ListWorkflowEventsRequest(
                workflow_id=run_id, page_size=1001, page_token="garbage", after_sequence=-1,
                types=[E.EVENT_TYPE_STEP_COMPLETED, 0, 999],  # type: ignore[list-item]
            )
        )  # fmt: skip
        assert set(found) == {"page_size", "page_token", "after_sequence", "types[1]", "types[2]"}
        assert "EVENT_TYPE_STEP_COMPLETED" in found["types[1]"]
        assert "between 0 and 1000" in found["page_size"]
        assert set(await refused(pb.ListWorkflowEventsRequest(workflow_id=run_id, page_size=-1)))\
            == {"page_size"}  # fmt: skip
        assert set(await refused(pb.ListWorkflowEventsRequest(workflow_id="nope"))) == {
            "workflow_id"
        }

        # A step the run's template does not have (known only once the run is read).
        unknown = await refused(
            pb.ListWorkflowEventsRequest(workflow_id=run_id, step_ids=["a", "zz", "b", "q"])
        )
        assert set(unknown) == {"step_ids[1]", "step_ids[3]"}, "a gate is not a step"
        assert "'zz'" in unknown["step_ids[1]"]

        # A token carries its run, filters and after_sequence: other ones are refused.
        first = await client.list_workflow_events(run_id, page_size=2, types=["STEP_STARTED"])
        assert first.next_page_token
        for other in (
            {"types": [E.EVENT_TYPE_STEP_COMPLETED]},
            {"types": [E.EVENT_TYPE_STEP_STARTED], "step_ids": ["a"]},
            {"types": [E.EVENT_TYPE_STEP_STARTED], "after_sequence": 1},
            {},
        ):
            request = pb.ListWorkflowEventsRequest(
                workflow_id=run_id, page_size=2, page_token=first.next_page_token, **other
            )
            assert "other filters" in (await refused(request))["page_token"], other
        other_run, _ = await _finished_run(client)
        request = pb.ListWorkflowEventsRequest(
            workflow_id=other_run, page_token=first.next_page_token,
            types=[E.EVENT_TYPE_STEP_STARTED],
        )  # fmt: skip
        assert set(await refused(request)) == {"page_token"}
        # The same filters in another order are the same filters.
        again = await client.list_workflow_events(
            run_id, page_size=2, types=["STEP_STARTED", "STEP_STARTED"],
            page_token=first.next_page_token,
        )  # fmt: skip
        assert again.events[0].sequence > first.events[-1].sequence

    # Unknown and deleted runs are NOT_FOUND.
    with pytest.raises(NotFoundError):
        await client.list_workflow_events(MISSING)
    await client.delete_workflow(run_id)
    with pytest.raises(NotFoundError):
        await client.list_workflow_events(run_id)


async def test_another_users_run_is_not_found(start_server: ServerFactory) -> None:
    server = await start_server(auth_jwt_secret=SECRET)
    async with (
        WorkflowClient(server.address, token=token("alice")) as alice,
        WorkflowClient(server.address, token=token("bob")) as bob,
    ):
        run_id, watched = await _finished_run(alice)
        assert [e async for e in alice.iter_workflow_events(run_id)] == watched
        with pytest.raises(NotFoundError) as theirs:
            await bob.list_workflow_events(run_id, step_ids=["zz"])
        with pytest.raises(NotFoundError) as nobodys:
            await bob.list_workflow_events(MISSING)
        # No existence oracle, and no hint of the template's steps.
        assert theirs.value.message.replace(run_id, "ID") == nobodys.value.message.replace(
            MISSING, "ID"
        )


async def test_a_page_of_large_events_fits_one_message(start_server: ServerFactory) -> None:
    server = await start_server(max_message_bytes=64 * 1024)
    # Each step outputs the 12 KB param: 12 KB in the details of each STEP_COMPLETED.
    steps = [step(f"s{i}", config={"output": {"text": "{{ params.text }}"}}) for i in range(12)]
    bulky = template("bulky-log", *steps, params=[{"name": "text", "required": True}])
    async with WorkflowClient(server.address) as client:
        run = await client.create_workflow(bulky, {"text": "lorem ipsum " * 1000})
        await client.execute_workflow(run.id)  # a reply with the whole run would not fit
        watched = [e async for e in client.watch(run.id)]
        assert watched[-1].type == E.EVENT_TYPE_WORKFLOW_COMPLETED
        pages = await _pages(client, run.id, page_size=1000)
    assert len(pages) > 1
    assert all(sum(e.ByteSize() + 6 for e in page) <= 63 * 1024 for page in pages)
    assert [e for page in pages for e in page] == watched


@pytest.mark.skipif(
    not os.environ.get("SLUICE_TEST_DATABASE_URL", "").startswith("postgresql"),
    reason="several servers need PostgreSQL (make test-postgres)",
)
async def test_any_server_lists_a_run_another_one_drives(
    start_server: ServerFactory, calls: Calls
) -> None:
    a, b = await start_server(), await start_server()
    async with WorkflowClient(a.address) as on_a, WorkflowClient(b.address) as on_b:
        run = await on_a.create_workflow(
            template("elsewhere", step("a"), step("hold", "latch", "a", config={"latch": "go"}))
        )
        await on_a.execute_workflow(run.id)
        await asyncio.wait_for(calls.started[f"{run.id}/hold"].wait(), 10)
        so_far = [e async for e in on_b.iter_workflow_events(run.id, page_size=2)]
        assert so_far[-1].type == E.EVENT_TYPE_STEP_STARTED and so_far[-1].step_id == "hold"
        calls.latches["go"].set()
        watched = [e async for e in on_a.watch(run.id)]
        assert [e async for e in on_b.iter_workflow_events(run.id, page_size=2)] == watched
        assert so_far == watched[: len(so_far)]
