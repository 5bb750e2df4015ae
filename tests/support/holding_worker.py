"""A worker process for tests (the Python SDK's `Worker`): its `hold` handler prints the task it
holds ("holding <workflow id> <token>") and never returns, so a test can kill the process
mid-task. Usage: python -m tests.support.holding_worker ADDRESS"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from sluice.client import Task, Worker


async def hold(task: Task) -> dict[str, Any]:
    print(f"holding {task.workflow_id} {task.token}", flush=True)
    await asyncio.Event().wait()
    return {}


async def main(address: str) -> None:
    worker = Worker(address, heartbeat_interval=0.5)
    worker.register("hold", hold)
    await worker.run(handle_signals=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
