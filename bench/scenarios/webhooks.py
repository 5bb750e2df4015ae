"""Webhooks: 200 notify steps at once (one per run), each POSTing to a receiver on loopback
that answers after 200 ms; seconds from the 200 ExecuteWorkflow calls to the last run at
rest. The same server runs it with its current client (`notify`) and with the client Sluice
had until 2f9f03d (`legacy-notify`, bench/legacy_webhook.py), in alternating rounds."""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from typing import Any

from bench import common, workload
from sluice.client import WorkflowClient, WorkflowStatus

# variant name -> step type
VARIANTS = {"new": "notify", "old": "legacy-notify"}


async def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--steps", type=int, default=200, help="webhook steps started at once")
    p.add_argument("--delay", type=float, default=0.2, help="seconds the receiver takes")
    args = p.parse_args()
    rounds = common.scaled(3, args.scale)
    receiver = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.receiver", "--delay", str(args.delay),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert receiver.stdout is not None and receiver.stdin is not None
    url = f"http://127.0.0.1:{int(await receiver.stdout.readline())}/hook"
    found: dict[str, list[dict[str, Any]]] = {name: [] for name in VARIANTS}
    try:
        async with WorkflowClient(args.address) as client:
            templates = {
                name: await workload.register(client, workload.webhook(step_type, url))
                for name, step_type in VARIANTS.items()
            }
            for name in VARIANTS:  # warm-up: connections, code paths
                await burst(client, templates[name], 5)
            for index in range(rounds):
                order = list(VARIANTS) if index % 2 == 0 else list(reversed(VARIANTS))
                for name in order:
                    found[name].append(await burst(client, templates[name], args.steps))
    finally:
        receiver.stdin.close()
        await asyncio.wait_for(receiver.wait(), 10)
    result: dict[str, Any] = {"steps": args.steps, "delay_ms": 1000 * args.delay, "rounds": rounds}
    for name, bursts in found.items():
        step_ms = [ms for b in bursts for ms in b["step_ms"]]
        result |= {
            f"{name}_seconds": [b["seconds"] for b in bursts],
            f"{name}_seconds_median": statistics.median(b["seconds"] for b in bursts),
            f"{name}_failed": [b["failed"] for b in bursts],
            f"{name}_error": next((b["error"] for b in bursts if b["error"]), ""),
            f"{name}_step_ms_p50": common.percentile(step_ms, 50),
            f"{name}_step_ms_p99": common.percentile(step_ms, 99),
        }
    result["ratio"] = result["old_seconds_median"] / result["new_seconds_median"]
    common.emit(result)


async def burst(client: WorkflowClient, template: str, count: int) -> dict[str, Any]:
    """Create `count` runs, then execute them all at once and wait until every one rests."""
    runs = await asyncio.gather(*(client.create_workflow(template) for _ in range(count)))
    begin = time.perf_counter()
    done = await asyncio.gather(
        *(client.execute_workflow(run.id, wait=True, timeout=120) for run in runs)
    )
    seconds = time.perf_counter() - begin
    failed = [d for d in done if d.status != WorkflowStatus.WORKFLOW_STATUS_COMPLETED]
    return {
        "seconds": seconds,
        "failed": len(failed),
        "error": failed[0].error if failed else "",
        "step_ms": [
            (s.end_time.ToDatetime() - s.start_time.ToDatetime()).total_seconds() * 1000
            for d in done
            for s in d.steps
        ],
    }


if __name__ == "__main__":
    asyncio.run(main())
