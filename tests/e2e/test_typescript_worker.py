"""The TypeScript example worker (clients/typescript/examples/worker.ts) serving a run made from
Python: a worker in another language, over the wire, as a user runs it from the shell."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from google.protobuf import json_format

from sluice.client import EventType, StepStatus, WorkflowClient, WorkflowStatus
from tests.conftest import ServerFactory

REPO = Path(__file__).resolve().parents[2]
WORKER_JS = REPO / "clients" / "typescript" / "dist" / "examples" / "worker.js"

TEMPLATE = {
    "id": "shout",
    "name": "shout",
    "params": [{"name": "text", "required": True}],
    "steps": [
        {
            "id": "shout",
            "type": "task",
            "taskType": "upper",
            "config": {"text": "{{ params.text }}"},
        },
        {
            "id": "show",
            "type": "transform",
            "dependencies": ["shout"],
            "config": {
                "transformation": "format",
                "format": "text",
                "inputData": "{{ steps.shout.text }}",
            },
        },
    ],
}


@pytest.fixture
def node() -> str:
    if not WORKER_JS.exists():
        pytest.skip(
            f"{WORKER_JS.relative_to(REPO)} is not built: run `npm run build` in "
            "clients/typescript (`make test` does)"
        )
    found = shutil.which("node")
    if found is None:
        pytest.skip("node is not on PATH")
    return found


def _text(log: Path) -> str:
    return log.read_text()


@contextlib.asynccontextmanager
async def typescript_worker(
    node: str, address: str, log: Path, *task_types: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """The example worker serving `task_types`, ready; stopped with SIGTERM after, cleanly."""
    flags = [f for t in task_types for f in ("--task-type", t)]
    with log.open("wb") as stderr:
        # The server named as for the CLI and the Python example (no --base-url).
        worker = await asyncio.create_subprocess_exec(
            node, str(WORKER_JS), *flags, stdout=asyncio.subprocess.PIPE, stderr=stderr,
            env={**os.environ, "SLUICE_ADDRESS": address},
        )  # fmt: skip
    assert worker.stdout is not None
    try:
        line = await asyncio.wait_for(worker.stdout.readline(), 20)
        assert line == b"worker ready\n", f"{line!r}; worker log:\n{_text(log)}"
        yield worker
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.wait(), 15) == 0, _text(log)
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()


async def test_typescript_worker_serves_a_task_step(
    start_server: ServerFactory, node: str, tmp_path: Path
) -> None:
    server = await start_server()
    log = tmp_path / "worker.log"
    async with (
        typescript_worker(node, server.address, log, "upper"),
        WorkflowClient(server.address) as client,
    ):
        run = await client.create_workflow(TEMPLATE, {"text": "quiet words"})
        done = await client.execute_workflow(run.id, wait=True, timeout=30)
        assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, (
            f"{done.error}; worker log:\n{_text(log)}"
        )
        steps = {step.step_id: step for step in done.steps}
        assert steps["shout"].status == StepStatus.STEP_STATUS_COMPLETED
        assert dict(steps["shout"].output) == {"text": "QUIET WORDS"}
        assert "QUIET WORDS" in str(steps["show"].output["result"])

        events = [e async for e in client.watch(run.id)]
        shout = [e for e in events if e.step_id == "shout"]
        assert [e.type for e in shout] == [
            EventType.EVENT_TYPE_STEP_STARTED,
            EventType.EVENT_TYPE_STEP_COMPLETED,
        ]
        assert {e.attempt for e in shout} == {1}


async def test_typescript_worker_serves_the_readme_demo(
    start_server: ServerFactory, node: str, tmp_path: Path
) -> None:
    # The README's demo (examples/workers.json), with the TypeScript worker in place of
    # examples/worker.py: the same outputs.
    server = await start_server()
    template = json.loads((REPO / "examples" / "workers.json").read_text(encoding="utf-8"))
    async with (
        typescript_worker(node, server.address, tmp_path / "worker.log"),
        WorkflowClient(server.address) as client,
    ):
        run = await client.create_workflow(template, {"text": "hi"})
        done = await client.execute_workflow(run.id, wait=True, timeout=30)
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error
    outputs = {step.step_id: json_format.MessageToDict(step.output) for step in done.steps}
    assert outputs["echo"] == {"echo": {"text": "hi"}, "inputs": {}, "attempt": 1}
    assert outputs["shout"] == {"text": "HI"}
    assert outputs["format"]["result"] == "HI"
