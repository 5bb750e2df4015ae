"""Failover: kill -9 one of several servers on one PostgreSQL database under a steady stream of
runs, and time until every run it was driving is running again on another server.

The servers (`--address`, `--pid`, started by the orchestrator with the lease settings the
scenario names) share one fresh database. A steady stream of runs (`--rate` a second, dealt
round-robin: each created and executed on one server, which then holds its lease) of a chain
of `hold` steps (`--step-seconds` each, +/- 50 %) runs for `--warmup` seconds; then the
first server is sent SIGKILL and the stream goes on over the others for `--after` seconds (by
default the lease TTL plus two renewals plus 3 s, so the takeover happens under load).

Measured, once every run has ended: for each run the killed server created that was still
running at the kill, the time from the kill (this process's clock just after the signal) to
its first STEP_STARTED with details `recovered: true` (the event's `time`: the clock of the
server that took it over, just before its commit; same machine). The last of them is "all
its runs running again". Also: runs of the other servers that were taken over (a recovered
STEP_STARTED on a run whose server did not die: a lease lost under load), the survivors'
"dropped a workflow" log lines, and which survivor took how many runs ("took over" lines).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import common, leaselog, workload
from sluice.client import EventType, WorkflowClient

RECOVERED = "recovered"


def _csv(text: str) -> list[str]:
    return [part for part in text.split(",") if part]


class Stream:
    """Runs started at a steady rate over the live servers, each noted with its server."""

    def __init__(self, clients: list[WorkflowClient], template: str, rate: float) -> None:
        self.clients = clients
        self.template = template
        self.rate = rate
        self.live = list(range(len(clients)))
        self.created: list[tuple[str, int, float]] = []  # run id, server, time executed
        self.failed: dict[int, int] = {}  # server -> calls that failed
        self._calls: set[asyncio.Task[None]] = set()

    async def run_for(self, seconds: float) -> None:
        begin = time.perf_counter()
        k = 0
        while (due := k / self.rate) < seconds:
            await asyncio.sleep(max(0.0, begin + due - time.perf_counter()))
            server = self.live[k % len(self.live)]
            task = asyncio.create_task(self._one(server))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)
            k += 1

    async def _one(self, server: int) -> None:
        client = self.clients[server]
        try:
            run = await client.create_workflow(self.template, timeout=30)
            await client.execute_workflow(run.id, timeout=30)
        except Exception:  # a call to the server being killed: it is not one of its runs
            self.failed[server] = self.failed.get(server, 0) + 1
            return
        self.created.append((run.id, server, time.time()))

    async def settle(self) -> None:
        if self._calls:
            await asyncio.gather(*self._calls, return_exceptions=True)


async def history(client: WorkflowClient, run_id: str) -> dict[str, Any]:
    """When the run ended, and its first recovered STEP_STARTED (server times, epoch s)."""
    recovered: float | None = None
    ended: float | None = None
    status = ""
    async for event in client.watch(run_id):
        at = event.time.seconds + event.time.nanos / 1e9
        if (
            recovered is None
            and event.type == EventType.EVENT_TYPE_STEP_STARTED
            and RECOVERED in event.details.fields
            and event.details[RECOVERED]
        ):
            recovered = at
        if event.type in (
            EventType.EVENT_TYPE_WORKFLOW_COMPLETED,
            EventType.EVENT_TYPE_WORKFLOW_FAILED,
            EventType.EVENT_TYPE_WORKFLOW_CANCELLED,
        ):
            ended = at
            status = EventType.Name(event.type)
    return {"recovered": recovered, "ended": ended, "status": status}


def _log_lines(path: str) -> list[dict[str, Any]]:
    lines = []
    for text in Path(path).read_text(errors="replace").splitlines():
        try:
            lines.append(json.loads(text))
        except ValueError:
            continue
    return lines


async def main() -> None:
    p = common.parser(__doc__ or "", address=False)
    p.add_argument("--address", required=True, help="host:port of each server, comma-separated")
    p.add_argument("--pid", required=True, help="each server's process id, comma-separated")
    p.add_argument("--logs", default="", help="each server's log file, comma-separated")
    p.add_argument("--lease-ttl", type=float, required=True, help="the servers' lease TTL, s")
    p.add_argument("--lease-renew", type=float, required=True, help="their renewal interval, s")
    p.add_argument("--rate", type=float, default=12.0, help="runs started per second")
    p.add_argument("--steps", type=int, default=8, help="hold steps per run, in a chain")
    p.add_argument("--step-seconds", type=float, default=0.5, help="each step's mean duration")
    p.add_argument("--warmup", type=float, default=8.0, help="seconds of stream before the kill")
    p.add_argument("--after", type=float, default=0.0, help="seconds of stream after it")
    args = p.parse_args()
    addresses, pids = _csv(args.address), [int(pid) for pid in _csv(args.pid)]
    logs = _csv(args.logs)
    if len(addresses) < 2:
        common.fail("failover needs at least two servers")
    rate = max(5.0, args.rate * min(1.0, args.scale * 4))  # --quick: a quarter of the rate
    warmup = max(3.0, args.warmup * min(1.0, args.scale * 4))
    after = args.after or args.lease_ttl + 2 * args.lease_renew + 3
    victim = 0
    clients = [WorkflowClient(address) for address in addresses]
    try:
        template = await workload.register(
            clients[0], workload.chain(args.steps, args.step_seconds)
        )

        # Warm-up: each server has seen the template and opened its connections (and its
        # run has ended before the kill: it is not counted).
        async def warm(client: WorkflowClient) -> None:
            run = await client.create_workflow(template, timeout=30)
            await client.execute_workflow(run.id, wait=True, timeout=120)

        await asyncio.gather(*(warm(client) for client in clients))
        stream = Stream(clients, template, rate)
        await stream.run_for(warmup)
        os.kill(pids[victim], signal.SIGKILL)
        killed_at = time.time()
        stream.live.remove(victim)
        await stream.run_for(after)
        await stream.settle()
        survivors = [clients[i] for i in stream.live]
        # Every run to its end, read through the survivors.
        limit = args.lease_ttl * 2 + args.steps * args.step_seconds * 3 + 120
        runs = [run_id for run_id, _, _ in stream.created]
        histories = await asyncio.wait_for(
            asyncio.gather(
                *(history(survivors[i % len(survivors)], r) for i, r in enumerate(runs))
            ),
            limit,
        )
    finally:
        for client in clients:
            await client.close()
    by_id = dict(zip(runs, histories, strict=True))
    # The victim's runs still under way at the kill (every run it created and executed: no
    # call went to it after the kill; one whose answer was lost with it is not counted).
    held = [
        r
        for r, server, _ in stream.created
        if server == victim and (by_id[r]["ended"] is None or by_id[r]["ended"] >= killed_at)
    ]
    late = sorted(by_id[r]["recovered"] - killed_at for r in held if by_id[r]["recovered"])
    not_recovered = [r for r in held if by_id[r]["recovered"] is None]
    others_taken = [
        r for r, server, _ in stream.created if server != victim and by_id[r]["recovered"]
    ]
    unfinished = [r for r in runs if by_id[r]["status"] != "EVENT_TYPE_WORKFLOW_COMPLETED"]
    took_over: dict[str, int] = {}
    claims: list[float] = []  # when a survivor logged taking runs over, s after the kill
    dropped = 0
    # What the survivors logged about leases, warnings and errors: (server, message, why) ->
    # [count, first, last] in s after the kill.
    timeline: dict[tuple[int, str, str], list[float]] = {}
    # From the bench.leaselog plugin, per survivor over the stream: the longest gap between
    # two renewals (the lease TTL is how long one may be), the longest renewal and claim.
    leases: dict[str, dict[str, float]] = {}
    for i, path in enumerate(logs):
        if i == victim:
            continue
        renewals: list[float] = []
        longest = {"renew": 0.0, "claim": 0.0}
        for line in _log_lines(path):
            message = str(line.get("message", ""))
            at = datetime.fromisoformat(str(line["timestamp"])).timestamp() - killed_at
            if message == leaselog.MESSAGE:
                op = str(line["op"])
                longest[op] = max(longest[op], float(line["seconds"]))
                if op == "renew" and at >= -warmup:
                    renewals.append(at)  # logged as it returned: its rows are renewed
                continue
            if message.startswith("took over"):
                took_over[addresses[i]] = took_over.get(addresses[i], 0) + int(line.get("count", 0))
                if at >= 0:
                    claims.append(at)
            elif message.startswith("dropped a workflow"):
                dropped += 1
            elif line.get("level") not in ("warning", "error"):
                continue
            key = (
                i,
                message.split("\n", 1)[0][:120],
                str(line.get("why", line.get("error", "")))[:160],
            )
            seen = timeline.setdefault(key, [0, at, at])
            seen[0] += int(line.get("count", 1))
            seen[2] = at
        if renewals:
            gaps = [b - a for a, b in itertools.pairwise(renewals)] or [0.0]
            worst = max(range(len(gaps)), key=gaps.__getitem__)
            leases[addresses[i]] = {
                "renew_gap_max_s": gaps[worst],
                "renew_gap_max_ends_s": renewals[worst + 1] if len(renewals) > 1 else 0.0,
                "renew_max_s": longest["renew"],
                "claim_max_s": longest["claim"],
            }
    if not late:
        common.fail(f"none of the {len(held)} runs the killed server held was taken over")
    ttl = args.lease_ttl
    common.emit(
        {
            "servers": len(addresses),
            "lease_ttl_s": ttl,
            "lease_renew_s": args.lease_renew,
            "rate_per_s": rate,
            "steps": args.steps,
            "step_seconds": args.step_seconds,
            "warmup_s": warmup,
            "after_s": after,
            "runs_started": len(runs),
            "victim_runs_at_kill": len(held),
            "taken_over": len(late),
            "not_recovered": len(not_recovered),
            "first_recovered_s": late[0],
            "median_recovered_s": common.percentile(late, 50),
            "all_recovered_s": late[-1],
            "target_s": ttl + 5,
            "target_met": late[-1] <= ttl + 5,
            "victim_calls_failed": stream.failed.get(victim, 0),
            "other_calls_failed": sum(n for s, n in stream.failed.items() if s != victim),
            "survivor_runs_taken_over": len(others_taken),
            "survivor_drops_logged": dropped,
            "took_over_by_server": took_over,
            "claims_logged_s": sorted(claims),
            "survivor_leases": leases,
            "survivor_log": [
                {"server": i, "message": m, "why": w, "count": c, "first_s": f, "last_s": last}
                for (i, m, w), (c, f, last) in sorted(timeline.items(), key=lambda kv: kv[1][1])
            ][:30],
            "runs_not_completed": len(unfinished),
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
