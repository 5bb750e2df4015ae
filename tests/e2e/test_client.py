"""The Python client: the blocking flavour, typed errors, connection defaults, the newer verbs."""

from __future__ import annotations

import ast
import asyncio
import inspect
import threading
from datetime import UTC
from pathlib import Path

import pytest

from sluice.client import (
    EventType,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    StatusLike,
    SyncWorkflowClient,
    UnauthenticatedError,
    WorkflowClient,
    WorkflowEvent,
    WorkflowStatus,
)
from sluice.server import SluiceServer
from tests.conftest import ServerFactory
from tests.support.crypto import SECRET, make_pki, token
from tests.support.templates import step, template


def drive(address: str) -> tuple[int, list[int], list[str]]:
    with SyncWorkflowClient(address) as client:
        run = client.create_workflow(
            "market-analysis-report", {"location": "Denver, CO"}, request_id="sync-1"
        )
        again = client.create_workflow(
            "market-analysis-report", {"location": "Denver, CO"}, request_id="sync-1"
        )
        assert again.id == run.id, "the same request_id returns the same run"
        done = client.execute_workflow(run.id, auto_approve=True, wait=True)
        sequences = [e.sequence for e in client.watch(run.id)]
        errors = []
        for bad_id in ("00000000-0000-4000-8000-000000000000", "not-a-uuid"):
            try:
                client.get_workflow(bad_id)
            except (NotFoundError, InvalidArgumentError) as error:
                errors.append(type(error).__name__)
        return done.status, sequences, errors


async def test_sync_client_runs_a_workflow_and_raises_typed_errors(server: SluiceServer) -> None:
    # The blocking client must not run on the loop that serves it: give it a thread.
    status, sequences, errors = await asyncio.to_thread(drive, server.address)
    assert status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
    assert sequences == list(range(1, len(sequences) + 1))
    assert errors == ["NotFoundError", "InvalidArgumentError"]


async def test_invalid_argument_carries_field_violations(server: SluiceServer) -> None:
    async with WorkflowClient(server.address) as client:
        with pytest.raises(InvalidArgumentError) as caught:
            await client.list_workflows(page_size=5000, page_token="garbage")
    assert {v.field for v in caught.value.violations} == {"page_size", "page_token"}


def _verbs(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(cls).items()
        if callable(member) and not name.startswith("_")
    }


def test_the_sync_client_has_every_verb_with_the_same_parameters_and_docstring() -> None:
    blocking, asynchronous = _verbs(SyncWorkflowClient), _verbs(WorkflowClient)

    assert sorted(blocking) == sorted(asynchronous)
    for name, signature in asynchronous.items():
        assert list(blocking[name].parameters.values()) == list(signature.parameters.values()), name
        assert inspect.getdoc(getattr(SyncWorkflowClient, name)) == inspect.getdoc(
            getattr(WorkflowClient, name)
        ), name
    # A ready grpc.aio channel belongs to a loop the blocking client does not expose.
    constructor = dict(inspect.signature(WorkflowClient.__init__).parameters)
    del constructor["channel"]
    assert dict(inspect.signature(SyncWorkflowClient.__init__).parameters) == constructor
    assert "__getattr__" not in vars(SyncWorkflowClient)


async def test_both_clients_connect_from_the_environment_and_arguments_win(
    start_server: ServerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pki = make_pki(tmp_path)
    server = await start_server(
        auth_jwt_secret=SECRET,
        tls_cert_file=str(pki.server_cert),
        tls_key_file=str(pki.server_key),
    )
    monkeypatch.setenv("SLUICE_ADDRESS", server.address)
    monkeypatch.setenv("SLUICE_TOKEN", token("alice"))
    monkeypatch.setenv("SLUICE_CA_FILE", str(pki.ca))

    async with WorkflowClient() as client:
        assert await client.list_templates()
    async with WorkflowClient(token="") as client:
        with pytest.raises(UnauthenticatedError):
            await client.list_templates()

    def blocking() -> int:
        with SyncWorkflowClient() as client:
            return len(client.list_templates())

    assert await asyncio.to_thread(blocking) > 0

    monkeypatch.setenv("SLUICE_ADDRESS", "127.0.0.1:1")  # nothing listens there
    async with WorkflowClient(server.address) as client:
        assert await client.list_templates()


async def test_statuses_by_name_and_an_unknown_one_is_a_typed_error(client: WorkflowClient) -> None:
    failed = await client.create_workflow(
        template("breaks", step("explode", "fail", config={"permanent": True}))
    )
    await client.execute_workflow(failed.id, wait=True, timeout=10)
    pending = await client.create_workflow(template("waits", step("a")))

    for names in (["FAILED"], ["workflow_status_failed"], "FAILED"):
        page = await client.list_workflows(statuses=names)
        assert [w.id for w in page.workflows] == [failed.id], names
    mixed: list[StatusLike] = [WorkflowStatus.WORKFLOW_STATUS_PENDING, "FAILED"]
    assert {w.id async for w in client.iter_workflows(statuses=mixed)} == {failed.id, pending.id}

    async with WorkflowClient("127.0.0.1:1") as unreachable:  # raised before any call
        with pytest.raises(InvalidArgumentError) as caught:
            await unreachable.list_workflows(statuses=["FAILED", "DONE"])
    [violation] = caught.value.violations
    assert violation.field == "statuses[1]"
    assert (
        "'DONE' is not a run status" in violation.description
        and "CANCELLED" in violation.description
    )


async def test_list_views_and_create_time_range(client: WorkflowClient) -> None:
    first = await client.create_workflow("content-to-social", {"topic": "A"})
    await client.execute_workflow(first.id, auto_approve=True, wait=True, timeout=10)
    second = await client.create_workflow("content-to-social", {"topic": "B"})

    basic = (await client.list_workflows()).workflows
    assert [w.id for w in basic] == [second.id, first.id]
    assert not basic[1].HasField("template") and not basic[1].steps[0].HasField("output")
    assert basic[1].metrics.completed_steps == 5
    full = (await client.list_workflows(view="FULL")).workflows
    assert full[1].template.id == "content-to-social" and full[1].steps[0].HasField("output")

    split = second.create_time.ToDatetime(tzinfo=UTC)
    after = client.iter_workflows(create_time_start=split)
    assert [w.id async for w in after] == [second.id]
    before = await client.list_workflows(create_time_end=split)
    assert [w.id for w in before.workflows] == [first.id]
    with pytest.raises(InvalidArgumentError) as caught:
        await client.list_workflows(create_time_start=split.replace(tzinfo=None), view="everything")
    assert {v.field for v in caught.value.violations} <= {"create_time_start", "view"}


async def test_delete_a_finished_run_and_registered_templates(client: WorkflowClient) -> None:
    run = await client.create_workflow(template("gone", step("a")))
    await client.execute_workflow(run.id, wait=True, timeout=10)
    pending = await client.create_workflow(template("stays", step("a")))

    await client.delete_workflow(run.id)
    with pytest.raises(NotFoundError):
        await client.get_workflow(run.id)
    with pytest.raises(FailedPreconditionError):
        await client.delete_workflow(pending.id)

    for _ in range(3):
        await client.create_template(template("mine", step("a")))
    assert await client.delete_template("mine", version=2) == 1
    assert (await client.get_template("mine")).version == 3
    assert await client.delete_template("mine") == 2
    with pytest.raises(NotFoundError):
        await client.get_template("mine")
    with pytest.raises(FailedPreconditionError):
        await client.delete_template("content-to-social")


async def test_the_sync_watch_reconnects_across_a_restart_and_reports_it(
    start_server: ServerFactory, database_url: str
) -> None:
    first = await start_server()
    async with WorkflowClient(first.address) as client:
        run = await client.create_workflow("content-to-social", {"topic": "A"})
        await client.execute_workflow(run.id, wait=True, timeout=10)  # pauses for approval
    paused = threading.Event()
    breaks: list[tuple[str, float]] = []

    def watch() -> list[WorkflowEvent]:
        events = []
        with SyncWorkflowClient(first.address) as client:
            for event in client.watch(
                run.id,
                reconnect=True,
                initial_backoff=0.05,
                on_reconnect=lambda error, delay: breaks.append((error.code.name, delay)),
            ):
                events.append(event)
                if event.type == EventType.EVENT_TYPE_WORKFLOW_PAUSED:
                    paused.set()
        return events

    watcher = asyncio.create_task(asyncio.to_thread(watch))
    assert await asyncio.to_thread(paused.wait, 10)
    await first.stop()
    second = await start_server(listen=f"127.0.0.1:{first.port}")
    async with WorkflowClient(second.address) as client:
        await client.approve_gate(run.id, "publish-approval")
    events = await asyncio.wait_for(watcher, 20)

    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert events[-1].type == EventType.EVENT_TYPE_WORKFLOW_COMPLETED
    assert breaks and breaks[0][0] in ("UNAVAILABLE", "CANCELLED") and breaks[0][1] == 0.05


def test_the_client_readme_shows_every_verb_in_code_that_compiles() -> None:
    readme = (Path(__file__).resolve().parents[2] / "clients/python/README.md").read_text()
    blocks = [block.split("```", 1)[0] for block in readme.split("```python\n")[1:]]
    for block in blocks:
        compile(block, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    code = "\n".join(blocks)
    missing = [verb for verb in _verbs(WorkflowClient) if f".{verb}(" not in code]
    assert missing == []
