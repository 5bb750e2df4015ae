"""The Python client's blocking flavour and its typed errors."""

from __future__ import annotations

import asyncio

import pytest

from sluice.client import (
    InvalidArgumentError,
    NotFoundError,
    SyncWorkflowClient,
    WorkflowClient,
    WorkflowStatus,
)
from sluice.server import SluiceServer


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
