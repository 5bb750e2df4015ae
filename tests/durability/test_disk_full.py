"""A full disk under SQLite: calls get UNAVAILABLE and the server stays up; once space is freed,
writes go on by themselves, also for longer than the freed space would hold without a
checkpoint of the write-ahead log, and a run that was RUNNING completes.

The disk is real: a 4 MB tmpfs, filled by a file as large as the room left on it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.client import UnavailableError, WorkflowClient, WorkflowStatus
from tests.conftest import ServerFactory
from tests.support.disks import tmpfs
from tests.support.handlers import Calls
from tests.support.templates import step, template

pytestmark = pytest.mark.skipif(
    os.environ.get("SLUICE_TEST_DATABASE_URL", "").startswith("postgresql"),
    reason="SQLite's write-ahead log: runs in `make test`",
)

SMALL = template("small", step("a"))
# A create adds about 40 KB to the log: this many need more than the whole disk unless the
# log is checkpointed on the way.
CREATES_AFTER_FREEING = 150


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "disk", "4m") as mount_point:
        yield mount_point


def free_bytes(path: Path) -> int:
    disk = os.statvfs(path)
    return disk.f_bavail * disk.f_frsize


def fill(path: Path) -> None:
    """Write `path` with all the room left on its disk."""
    path.write_bytes(b"\0" * free_bytes(path.parent))
    assert free_bytes(path.parent) == 0


async def test_freeing_space_is_enough_for_writes_to_resume(
    start_server: ServerFactory, small_disk: Path, calls: Calls
) -> None:
    server = await start_server(database_url=f"sqlite+aiosqlite:///{small_disk / 'sluice.db'}")
    async with WorkflowClient(server.address) as client:
        running = await client.create_workflow(
            template("t", step("a", "latch", config={"latch": "a"}), step("b", "sleep", "a"))
        )
        await client.execute_workflow(running.id)
        await asyncio.wait_for(calls.started[f"{running.id}/a"].wait(), 5)

        filler = small_disk / "filler"
        fill(filler)
        refused: list[UnavailableError] = []
        for _ in range(50):  # the log may give back some room first: a few creates may fit
            try:
                await client.create_workflow(SMALL)
            except UnavailableError as error:
                refused.append(error)
                break
        assert refused, "creates on a full disk get UNAVAILABLE"
        assert "disk is full" in str(refused[0])
        calls.open("a")  # the step finishes while its result cannot be stored

        filler.unlink()
        for _ in range(CREATES_AFTER_FREEING):
            await client.create_workflow(SMALL)

        async def finished() -> None:
            async for _ in client.watch(running.id):
                pass

        # The engine stores the step's result again with backoff, at most 5 s apart.
        await asyncio.wait_for(finished(), 15)
        done = await client.get_workflow(running.id)
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
    assert len(calls.of(running.id, "a")) == 1, "the result was kept, not recomputed"
