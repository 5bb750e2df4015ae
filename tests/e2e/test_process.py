"""The `sluice-server` process itself: configured by environment, serving, clean on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

from sluice.client import WorkflowClient, WorkflowStatus

SERVING = re.compile(rb"serving on (127\.0\.0\.1:\d+)")


async def test_server_process_serves_and_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SLUICE_LISTEN": "127.0.0.1:0",
        "SLUICE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'proc' / 'sluice.db'}",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sluice.server", env=env, stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    try:
        address = None
        while address is None:
            line = await asyncio.wait_for(process.stderr.readline(), 20)
            assert line, "server exited before serving"
            if match := SERVING.search(line):
                address = match.group(1).decode()

        async with WorkflowClient(address) as client:
            run = await client.create_workflow("market-analysis-report", {"location": "Austin, TX"})
            done = await client.execute_workflow(run.id, auto_approve=True, wait=True, timeout=20)
            assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED

        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 15) == 0
        assert (tmp_path / "proc" / "sluice.db").exists(), "the SQLite file is created on start"
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
