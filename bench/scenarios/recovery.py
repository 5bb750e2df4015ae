"""Recovery: time from a restart to every interrupted run running again.

Starts its own server (fresh SQLite file in --workdir) with a `hold` step type that sleeps,
starts 1,000 runs and waits until each has its hold step in flight, SIGKILLs the server, and
starts a new one on the same database and port whose `hold` returns at once. Measured from
the new process's spawn: until it logs "serving on" (it recovers every run before), and until
the last run's STEP_STARTED event with details `recovered: true` (its server timestamp). A
client checks that every run got one.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from bench import common, workload
from bench.scenarios.memory import wait_all_holding
from bench.server import Server, free_port
from sluice.client import EventType, WorkflowClient

CONCURRENCY = 100
SETTINGS = {"max_active_runs_per_user": "100000", "max_concurrent_steps": "2000"}


async def main() -> None:
    p = common.parser(__doc__ or "", address=False)
    p.add_argument("--workdir", type=Path, default=None)
    args = p.parse_args()
    count = common.scaled(1000, args.scale, minimum=50)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sluice-bench-recovery-"))
    server = Server(workdir, listen=f"127.0.0.1:{free_port()}", **SETTINGS).start()
    try:
        ids = await start_holding_runs(server.address, count)
        server.kill()
        server.plugin = "bench.noop:register_fast_hold"
        server.start()
        async with WorkflowClient(server.address) as client:
            recovered_at = await asyncio.gather(*(recovered_time(client, i) for i in ids))
    finally:
        server.kill()
    missing = sum(t is None for t in recovered_at)
    if missing:
        common.fail(f"{missing} of {count} runs have no recovered STEP_STARTED")
    last = max(t for t in recovered_at if t is not None)
    common.emit(
        {
            "runs": count,
            "serving_after_s": server.ready_after,
            "all_running_after_s": last - server.started_at,
        }
    )


async def start_holding_runs(address: str, count: int) -> list[str]:
    async with WorkflowClient(address) as client:
        template = await workload.register(client, workload.holding(120))
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one() -> str:
            async with gate:
                run = await client.create_workflow(template)
                await client.execute_workflow(run.id)
                return run.id

        ids = list(await asyncio.gather(*(one() for _ in range(count))))
        await wait_all_holding(client, count)
        return ids


async def recovered_time(client: WorkflowClient, run_id: str) -> float | None:
    """Server time of the run's recovered STEP_STARTED event, if it has one."""
    async for event in client.watch(run_id):
        if (
            event.type == EventType.EVENT_TYPE_STEP_STARTED
            and event.details.fields.get("recovered") is not None
            and event.details["recovered"]
        ):
            return event.time.seconds + event.time.nanos / 1e9
    return None


if __name__ == "__main__":
    asyncio.run(main())
