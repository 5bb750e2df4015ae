"""A worker killed with SIGKILL mid-task: its stream breaks, the server hands the task to the
next worker at once (long before its lease would run out), the run completes, and the dead
worker's late report is refused and changes nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from datetime import timedelta

import pytest

from sluice.client import EventType, WorkflowClient, WorkflowStatus
from sluice.client.errors import FailedPreconditionError
from tests.conftest import ServerFactory
from tests.support.process import _clean_environment
from tests.support.workers import RawWorker, finished, task_template


async def test_a_killed_workers_task_goes_to_the_next_worker_at_once(
    start_server: ServerFactory,
) -> None:
    # Leases far longer than the test: the task must move because the stream broke.
    server = await start_server(task_ack_timeout=timedelta(minutes=5))
    template = task_template(task_type="hold", timeout="600s")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.holding_worker", server.address,
        stdout=asyncio.subprocess.PIPE, env=_clean_environment(),
    )  # fmt: skip
    try:
        async with WorkflowClient(server.address) as client, RawWorker(server.address) as other:
            run = await client.create_workflow(template, {"text": "hi"})
            await client.execute_workflow(run.id)
            assert process.stdout is not None
            async with asyncio.timeout(30):  # (the worker logs on stdout too)
                while not (line := (await process.stdout.readline()).decode()).startswith("hold"):
                    assert line, "the worker exited"
            _, workflow_id, dead_token = line.split()
            assert workflow_id == run.id

            os.kill(process.pid, signal.SIGKILL)
            killed = time.monotonic()
            task = await other.poll_one("hold", wait=30)
            moved_after = time.monotonic() - killed
            assert (task.workflow_id, task.attempt) == (run.id, 1)  # the same attempt, re-leased
            assert moved_after < 10, f"the task moved {moved_after:.1f}s after the kill"

            with pytest.raises(FailedPreconditionError, match="handed to another worker"):
                await other.complete(dead_token, {"shout": "from the dead"})
            await other.complete(task.task_token, {"shout": "HI"})
            done = await finished(client, run.id)
            events = [e async for e in client.watch(run.id)]
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
    work = {s.step_id: s for s in done.steps}["work"]
    assert dict(work.output) == {"shout": "HI"} and work.attempt == 1
    assert [e.type for e in events if e.step_id == "work"] == [
        EventType.EVENT_TYPE_STEP_STARTED, EventType.EVENT_TYPE_STEP_COMPLETED,
    ]  # fmt: skip
