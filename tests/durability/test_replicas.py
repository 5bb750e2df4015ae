"""Several servers on one PostgreSQL database: runs are leased to one server at a time, any
server answers any call, watchers on any server see every event, and a server that dies (or
stops for a while) loses nothing: another takes its runs over once their leases expire.

PostgreSQL only (SQLite serves one server): run by `make test-postgres`."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from sluice.client import EventType, WorkflowClient, WorkflowEvent, WorkflowStatus
from sluice.client.errors import NotFoundError
from sluice.store.factory import open_store
from tests.support.plugin import read_ledger
from tests.support.process import ServerProcess
from tests.support.receiver import Receiver, running_receiver
from tests.support.replay import assert_log_matches_state
from tests.support.scrape import scrape, value
from tests.support.templates import step, template

pytestmark = pytest.mark.skipif(
    not os.environ.get("SLUICE_TEST_DATABASE_URL", "").startswith("postgresql"),
    reason="several servers need PostgreSQL (make test-postgres)",
)

E = EventType
LEASE_TTL = 2.0  # tests/support/process.py gives every server process this lease


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as state:
        yield state


@pytest.fixture
async def servers(database_url: str, tmp_path: Path) -> AsyncIterator[Servers]:
    started = Servers(database_url, tmp_path / "ledger.jsonl")
    yield started
    await started.close()


class Servers:
    def __init__(self, database_url: str, ledger: Path) -> None:
        self.database_url = database_url
        self.ledger = ledger
        self.running: list[ServerProcess] = []

    async def start(self, count: int = 1, **settings: str) -> list[ServerProcess]:
        new = [
            # Port 0: each picks its own (a port probed free could be taken before it binds).
            ServerProcess(
                self.database_url,
                self.ledger,
                "127.0.0.1:0",
                **settings,  # type: ignore[arg-type]
            )
            for _ in range(count)
        ]
        await asyncio.gather(*(s.start() for s in new))
        self.running += new
        return new

    def ledger_entries(self) -> list[dict[str, object]]:
        return read_ledger(str(self.ledger)) if self.ledger.exists() else []

    async def close(self) -> None:
        for server in self.running:
            for line in server.log.decode().splitlines():
                if "dropped" in line or "took over" in line:
                    print(server.address, line)
            server.unpause()
            await server.close()


async def events_of(client: WorkflowClient, run_id: str) -> list[WorkflowEvent]:
    return [e async for e in client.watch(run_id)]


async def reconnecting(
    client: WorkflowClient, run_id: str, breaks: list[object] | None = None
) -> list[WorkflowEvent]:
    """The run's whole log through a watch that reconnects; each break it survived goes to
    `breaks`."""
    on_reconnect = (lambda error, _: breaks.append(error)) if breaks is not None else None
    return [
        e
        async for e in client.watch(
            run_id, reconnect=True, initial_backoff=0.1, on_reconnect=on_reconnect
        )
    ]


async def until_event(
    client: WorkflowClient, run_id: str, wanted: EventType.ValueType, *, attempt: int = 0
) -> WorkflowEvent:
    async for event in client.watch(run_id, follow=True):
        if event.type == wanted and (not attempt or event.attempt == attempt):
            return event
    raise AssertionError(f"the watch ended without {wanted}")


async def lease_takeovers(metrics_address: str) -> float:
    samples = await scrape(metrics_address)
    return value(samples, "sluice_lease_takeovers_total")


async def check_logs(database_url: str, run_ids: Sequence[str]) -> None:
    """Every run's log is gapless 1..n and replays to its stored state."""
    store = await open_store(database_url)
    try:
        for run_id in run_ids:
            await assert_log_matches_state(store, "local", run_id)
    finally:
        await store.close()


async def test_three_servers_complete_300_webhook_runs_each_delivered_once(
    servers: Servers, receiver: Receiver
) -> None:
    # A lease long enough that no server under this load loses one (that is the next tests').
    replicas = await servers.start(3, webhook_allow=receiver.allow, lease_ttl_seconds="15")
    hook = template("hook", step("call", "http", config={"method": "POST", "url": receiver.url()}))
    clients = [WorkflowClient(s.address) for s in replicas]
    try:

        async def one(i: int) -> str:
            client = clients[i % 3]
            run = await client.create_workflow(hook)
            done = await client.execute_workflow(run.id, wait=True, timeout=60)
            assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error
            return run.id

        run_ids = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(300))), 120)
    finally:
        for client in clients:
            await client.close()

    keys = Counter(r.headers["Idempotency-Key"] for r in receiver.requests)
    assert set(keys) == {f"{run_id}/call" for run_id in run_ids}
    assert set(keys.values()) == {1}, "a step was delivered more than once"
    await check_logs(servers.database_url, run_ids[:20])


DIAMOND = template(
    "diamond-work",
    step("a", "work", config={"seconds": 0.05}),
    step("b", "work", "a", config={"seconds": 1.0}),
    step("c", "work", "a", config={"seconds": 2.0}),
    step("d", "work", "b", "c", config={"seconds": 0.1}),
)


async def test_a_killed_replicas_runs_finish_on_the_others(servers: Servers) -> None:
    a, b, c = await servers.start(3, metrics_listen="127.0.0.1:0")
    clients = {s.address: WorkflowClient(s.address) for s in (a, b, c)}
    everywhere = WorkflowClient([a.address, b.address, c.address])
    # Watchers of one of A's runs through a client that knows every server (round-robin:
    # the streams spread over the servers), and one surely on A: the same addresses, A
    # first, picked first. Each must go on at another server after the kill.
    on_a_first = WorkflowClient(
        channel=grpc.aio.insecure_channel(
            "ipv4:" + ",".join(s.address for s in (a, b, c)),
            options=[("grpc.service_config", '{"loadBalancingConfig": [{"pick_first": {}}]}')],
        )
    )
    try:
        runs = []
        for i in range(30):
            client = list(clients.values())[i % 3]
            run = await client.create_workflow(DIAMOND)
            await client.execute_workflow(run.id)
            runs.append(run.id)
        mine = runs[0::3]  # created, so leased and driven, on A
        breaks: list[object] = []
        watchers = [asyncio.create_task(reconnecting(everywhere, mine[0])) for _ in range(3)]
        watchers.append(asyncio.create_task(reconnecting(on_a_first, mine[0], breaks)))
        # Until A's last run is in its longest step: the kill cuts that one off for sure.
        async for event in clients[a.address].watch(mine[-1]):
            if event.type == E.EVENT_TYPE_STEP_STARTED and event.step_id == "c":
                break

        assert await a.kill() == -9
        killed_at = datetime.now(UTC)
        survivors = [clients[b.address], clients[c.address]]
        finished = await asyncio.wait_for(
            asyncio.gather(*(events_of(survivors[i % 2], r) for i, r in enumerate(runs))),
            LEASE_TTL + 20,
        )
        final = [await survivors[0].get_workflow(r) for r in runs]
        watched = await asyncio.wait_for(asyncio.gather(*watchers), 20)
    finally:
        for client in [*clients.values(), everywhere, on_a_first]:
            await client.close()

    assert {w.status for w in final} == {WorkflowStatus.WORKFLOW_STATUS_COMPLETED}
    taken_over = [
        e for events in finished for e in events
        if e.type == E.EVENT_TYPE_STEP_STARTED and "recovered" in e.details
    ]  # fmt: skip
    assert taken_over, "the kill cut no step off: the test did not exercise a takeover"
    # The survivors counted the runs they took from A: each of A's runs at most once.
    takeovers = [await lease_takeovers(s.metrics_address) for s in (b, c)]
    assert len({e.workflow_id for e in taken_over}) <= sum(takeovers) <= len(mine), takeovers
    for event in taken_over:
        late = (event.time.ToDatetime(UTC) - killed_at).total_seconds()
        assert late < LEASE_TTL + 5, f"a run waited {late:.1f}s for another server"

    # No step completed before the kill ran again.
    starts: dict[tuple[str, str], int] = defaultdict(int)
    for entry in servers.ledger_entries():
        if entry["phase"] == "start":
            starts[(str(entry["run"]), str(entry["step"]))] += 1
    for run_id, events in zip(runs, finished, strict=True):
        for event in events:
            completed = event.type == E.EVENT_TYPE_STEP_COMPLETED
            if completed and event.time.ToDatetime(UTC) < killed_at:
                assert starts[(run_id, event.step_id)] == 1, (run_id, event.step_id)
    await check_logs(servers.database_url, runs)
    complete = [e.sequence for e in finished[0]]
    assert breaks, "the watcher on the killed server saw no break: no reconnect was tested"
    for events in watched:  # the whole log, in order, once: across the kill
        assert [e.sequence for e in events] == complete


async def test_a_paused_replica_writes_nothing_for_the_runs_it_lost(servers: Servers) -> None:
    a, b = await servers.start(2)
    slow = template("slow", step("long", "work", config={"seconds": 4}))
    async with WorkflowClient(a.address) as on_a, WorkflowClient(b.address) as on_b:
        run = await on_a.create_workflow(slow)
        await on_a.execute_workflow(run.id)
        await until_event(on_b, run.id, E.EVENT_TYPE_STEP_STARTED, attempt=1)

        a.pause()
        try:
            await asyncio.wait_for(
                until_event(on_b, run.id, E.EVENT_TYPE_STEP_STARTED, attempt=2), LEASE_TTL + 10
            )
        finally:
            a.unpause()
        await a.logged(lambda line: line["message"].startswith("dropped a workflow"), timeout=10)
        events = await asyncio.wait_for(events_of(on_b, run.id), 15)
        done = await on_b.get_workflow(run.id)

    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
    # A's attempt never finished (its handler was stopped) and A wrote no event after B took
    # the run: nothing carries attempt 1 after attempt 2 started.
    ledger = [e for e in servers.ledger_entries() if e["run"] == run.id]
    assert [(e["attempt"], e["phase"]) for e in ledger] == [
        (1, "start"), (2, "start"), (2, "finish"),
    ]  # fmt: skip
    second = next(i for i, e in enumerate(events) if e.attempt == 2)
    assert all(e.attempt != 1 for e in events[second:])
    await check_logs(servers.database_url, [run.id])


async def test_a_watcher_and_a_cancel_on_another_replica(servers: Servers) -> None:
    a, b = await servers.start(2)
    slow = template("slow", step("long", "work", config={"seconds": 30}))
    async with WorkflowClient(a.address) as on_a, WorkflowClient(b.address) as on_b:
        run = await on_a.create_workflow(slow)
        seen: list[WorkflowEvent] = []
        started, cancelled = asyncio.Event(), asyncio.Event()

        async def watch_on_b() -> None:
            async for event in on_b.watch(run.id):
                seen.append(event)
                if event.type == E.EVENT_TYPE_STEP_STARTED:
                    started.set()
                if event.type == E.EVENT_TYPE_WORKFLOW_CANCELLED:
                    cancelled.set()

        watcher = asyncio.create_task(watch_on_b())
        await on_a.execute_workflow(run.id)
        await asyncio.wait_for(started.wait(), 10)

        asked = time.monotonic()
        answer = await on_b.cancel_workflow(run.id, reason="from B")
        await asyncio.wait_for(cancelled.wait(), 5)
        took = time.monotonic() - asked
        await asyncio.wait_for(watcher, 5)

    assert answer.status == WorkflowStatus.WORKFLOW_STATUS_CANCELLED
    assert took < 1.0, f"the cancel took {took:.2f}s to reach the server running the step"
    assert [e.sequence for e in seen] == list(range(1, len(seen) + 1))
    ledger = [e for e in servers.ledger_entries() if e["run"] == run.id]
    assert [e["phase"] for e in ledger] == ["start"], "the step was stopped, never finished"
    assert {e["pid"] for e in ledger} == {a.pid}, "A ran the step"


async def test_a_paused_runs_running_step_finishes_elsewhere_when_its_server_dies(
    servers: Servers,
) -> None:
    """Pausing lets running steps finish. If the run's server dies meanwhile, another takes
    the run over and runs the cut-off step again (the run stays PAUSED), rather than leaving
    it RUNNING until someone resumes the run."""
    a, b = await servers.start(2)
    tpl = template(
        "paused",
        step("long", "work", config={"seconds": 2}),
        step("next", "work", "long", config={"seconds": 0}),
    )
    async with WorkflowClient(a.address) as on_a, WorkflowClient(b.address) as on_b:
        run = await on_a.create_workflow(tpl)
        await on_a.execute_workflow(run.id)
        await until_event(on_a, run.id, E.EVENT_TYPE_STEP_STARTED)
        paused = await on_a.pause_workflow(run.id, reason="hold on")
        assert paused.status == WorkflowStatus.WORKFLOW_STATUS_PAUSED
        assert await a.kill() == -9

        finished = await asyncio.wait_for(
            until_event(on_b, run.id, E.EVENT_TYPE_STEP_COMPLETED), LEASE_TTL + 10
        )
        still = await on_b.get_workflow(run.id)
        await on_b.resume_workflow(run.id)
        events = await asyncio.wait_for(events_of(on_b, run.id), 10)

    assert finished.step_id == "long" and finished.attempt == 2
    assert still.status == WorkflowStatus.WORKFLOW_STATUS_PAUSED
    assert events[-1].type == E.EVENT_TYPE_WORKFLOW_COMPLETED
    ledger = [e for e in servers.ledger_entries() if e["run"] == run.id and e["step"] == "long"]
    assert [(e["attempt"], e["phase"], e["pid"]) for e in ledger] == [
        (1, "start", a.pid), (2, "start", b.pid), (2, "finish", b.pid),
    ]  # fmt: skip
    await check_logs(servers.database_url, [run.id])


async def test_a_retry_waits_out_its_backoff_across_a_kill(servers: Servers) -> None:
    (a,) = await servers.start(1)
    retry = {"maxAttempts": 2, "initialBackoff": "3s"}
    tpl = template("flaky", step("f", "flaky", config={"failures": 1}, retry=retry))
    async with WorkflowClient(a.address) as on_a:
        run = await on_a.create_workflow(tpl)
        await on_a.execute_workflow(run.id)
        retrying = await until_event(on_a, run.id, E.EVENT_TYPE_STEP_RETRYING)
    assert await a.kill() == -9

    (b,) = await servers.start(1)
    async with WorkflowClient(b.address) as on_b:
        events = await asyncio.wait_for(events_of(on_b, run.id), 20)
        done = await on_b.get_workflow(run.id)

    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
    retry_at = datetime.fromisoformat(str(retrying.details["retryAt"]))
    second = next(e for e in events if e.type == E.EVENT_TYPE_STEP_STARTED and e.attempt == 2)
    assert second.time.ToDatetime(UTC) >= retry_at, "the attempt ran before its backoff was over"
    await check_logs(servers.database_url, [run.id])


async def test_a_template_deleted_on_one_server_is_gone_on_the_others_within_a_second(
    servers: Servers,
) -> None:
    a, b = await servers.start(2)
    async with WorkflowClient(a.address) as on_a, WorkflowClient(b.address) as on_b:
        await on_a.create_template(template("shared", step("s", "work")))
        await on_b.create_workflow("shared", version=1)  # B has version 1 in its cache now
        await on_a.delete_template("shared")
        deleted = time.monotonic()
        while True:
            try:
                await on_b.create_workflow("shared", version=1)
            except NotFoundError:
                break
            assert time.monotonic() - deleted < 3, "B still runs a template deleted on A"
            await asyncio.sleep(0.1)


async def test_retry_now_and_rerun_asked_of_another_replica(servers: Servers) -> None:
    """RetryStep on B for a run A drives is carried out by A, at once; RerunWorkflow on B of a
    run A failed makes a run whose reused step is not run again by anyone."""
    a, b = await servers.start(2)
    retry = {"maxAttempts": 2, "initialBackoff": "3600s", "maxBackoff": "3600s"}
    tpl = template(
        "retried-elsewhere",
        step("first", "work", config={"seconds": 0}),
        step("f", "flaky", "first", config={"failures": 1}, retry=retry),
    )
    async with WorkflowClient(a.address) as on_a, WorkflowClient(b.address) as on_b:
        run = await on_a.create_workflow(tpl)
        await on_a.execute_workflow(run.id)
        await asyncio.wait_for(until_event(on_a, run.id, E.EVENT_TYPE_STEP_RETRYING), 10)

        retried = await on_b.retry_step(run.id, "f")
        again = await asyncio.wait_for(
            until_event(on_b, run.id, E.EVENT_TYPE_STEP_STARTED, attempt=2), 5
        )
        done = await asyncio.wait_for(events_of(on_b, run.id), 10)

        # A run cancelled as its second step starts, rerun from B: "first" is taken over.
        cut = await on_a.create_workflow(
            template(
                "cut-short",
                step("first", "work", config={"seconds": 0}),
                step("second", "work", "first", config={"seconds": 1}),
            )
        )
        await on_a.execute_workflow(cut.id)
        await asyncio.wait_for(until_event(on_a, cut.id, E.EVENT_TYPE_STEP_STARTED, attempt=1), 10)
        await until_event(on_a, cut.id, E.EVENT_TYPE_STEP_COMPLETED)
        cancelled = await on_a.cancel_workflow(cut.id)
        rerun = await on_b.rerun_workflow(cut.id, wait=True, timeout=10)

    assert retried.steps[1].attempt == 2
    assert dict(again.details) == {"retryNow": True}
    assert done[-1].type == E.EVENT_TYPE_WORKFLOW_COMPLETED
    assert cancelled.status == WorkflowStatus.WORKFLOW_STATUS_CANCELLED
    assert rerun.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, rerun.error
    assert (rerun.rerun_of, list(rerun.reused_step_ids)) == (cut.id, ["first"])
    ledger = [(e["step"], e["phase"]) for e in servers.ledger_entries() if e["run"] == rerun.id]
    assert ledger == [("second", "start"), ("second", "finish")]
    await check_logs(servers.database_url, [run.id, cut.id, rerun.id])


def _restart_postgresql() -> None:
    """Restart the PostgreSQL cluster the tests use (fast shutdown: connections are cut)."""
    (version,) = os.listdir("/etc/postgresql")
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart", "-m", "fast"],
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.mark.skipif(not shutil.which("pg_ctlcluster"), reason="needs pg_ctlcluster")
async def test_a_postgresql_restart_under_load_loses_nothing(servers: Servers) -> None:
    a, b = await servers.start(2)
    async with WorkflowClient(a.address) as on_a, WorkflowClient(b.address) as on_b:
        clients = [on_a, on_b]
        runs = []
        for i in range(40):
            run = await clients[i % 2].create_workflow(DIAMOND)
            await clients[i % 2].execute_workflow(run.id)
            runs.append(run.id)
        await until_event(on_a, runs[-1], E.EVENT_TYPE_STEP_STARTED)

        await asyncio.to_thread(_restart_postgresql)

        # Each watch reconnects if the restart cut it, and goes on from its last event.
        finished = await asyncio.wait_for(
            asyncio.gather(*(reconnecting(clients[i % 2], r) for i, r in enumerate(runs))), 60
        )
        final = [await on_b.get_workflow(r) for r in runs]

    assert {w.status for w in final} == {WorkflowStatus.WORKFLOW_STATUS_COMPLETED}
    for events in finished:
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    await check_logs(servers.database_url, runs)
