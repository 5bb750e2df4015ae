"""`sluice show`, `list`, `delete` and `watch` against a real server: why a run failed, pages
of runs, deletion, and following a run across a server restart."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC

from sluice.cli.state import RunView
from sluice.client import WorkflowClient
from tests.cli.conftest import Sluice, run_cli
from tests.conftest import ServerFactory
from tests.support.handlers import Calls
from tests.support.templates import step, template, threshold_gate

LONG = "word " * 60
BROKEN = template(
    "broken",
    step("fetch", config={"output": {"count": 3, "ratio": 0.25, "long": LONG}}),
    step("explode", "fail", "fetch", config={"permanent": True}),
    step("after", "sleep", "explode"),
    gates=[threshold_gate("enough", "fetch", "CONTINUE", metric="ratio", value=0.5)],
)


async def test_show_says_why_each_step_failed_or_was_skipped_and_what_steps_output(
    sluice: Sluice, client: WorkflowClient
) -> None:
    run = await client.create_workflow(BROKEN, {})
    await client.execute_workflow(run.id, wait=True, timeout=10)

    shown = await sluice("show", run.id)
    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    assert "explode FAILED: PermanentStepError: permanently broken" in lines
    assert "after SKIPPED: step explode failed: PermanentStepError: permanently broken" in lines
    assert "fetch output:" in lines
    assert "  count: 3" in lines, "an integral number prints as an integer, not 3.0"
    assert "  ratio: 0.25" in lines
    [long] = [line for line in lines if line.startswith("  long: ")]
    assert long.endswith("…") and len(long) < len(LONG)
    assert "(cut short: --outputs shows every output whole)" in lines
    assert "enough  threshold  FAILED  ratio = 0.25 does not meet" in shown.out, "its message"

    whole = await sluice("show", run.id, "--outputs")
    assert json.dumps(LONG) in whole.out and '"count": 3' in whole.out
    assert "cut short" not in whole.out


async def test_the_summary_counts_cancelled_steps(
    sluice: Sluice, client: WorkflowClient, calls: Calls
) -> None:
    run = await client.create_workflow(
        template(
            "stuck", step("wait", "latch", config={"latch": "never"}), step("b", "sleep", "wait")
        )
    )
    await client.execute_workflow(run.id)
    await asyncio.wait_for(calls.started[f"{run.id}/wait"].wait(), 5)
    await client.cancel_workflow(run.id)

    shown = await sluice("show", run.id)
    assert "  steps:    0 completed, 0 failed, 1 skipped, 1 cancelled (of 2)" in shown.lines
    assert "wait CANCELLED: " in shown.out


async def test_list_pages_views_and_creation_times(sluice: Sluice, client: WorkflowClient) -> None:
    runs = [await client.create_workflow(template("listed", step("a"))) for _ in range(5)]
    newest_first = [r.id for r in reversed(runs)]

    first = await sluice("list", "--limit", "2")
    assert first.code == 0, first.err
    assert [line.split()[0] for line in first.lines[1:3]] == newest_first[:2]
    assert first.lines[-1].startswith("next page: --page-token ")
    token = first.lines[-1].split()[-1]

    second = json.loads((await sluice("list", "--limit", "2", "--page-token", token, "--json")).out)
    assert [w["id"] for w in second["workflows"]] == newest_first[2:4]
    assert second["nextPageToken"]

    everything = json.loads((await sluice("list", "--all", "--json")).out)
    assert [w["id"] for w in everything["workflows"]] == newest_first
    assert "nextPageToken" not in everything
    assert "template" not in everything["workflows"][0], "basic view by default"
    full = json.loads((await sluice("list", "--view", "full", "--limit", "1", "--json")).out)
    assert full["workflows"][0]["template"]["id"] == "listed"

    since = runs[2].create_time.ToDatetime(tzinfo=UTC).isoformat()
    recent = json.loads((await sluice("list", "--created-after", since, "--json")).out)
    assert [w["id"] for w in recent["workflows"]] == newest_first[:3]
    older = json.loads((await sluice("list", "--created-before", since, "--json")).out)
    assert [w["id"] for w in older["workflows"]] == newest_first[3:]
    assert (
        len(json.loads((await sluice("list", "--created-after", "1h", "--json")).out)["workflows"])
        == 5
    )
    assert json.loads((await sluice("list", "--created-before", "7d", "--json")).out) == {
        "workflows": []
    }

    bad = await sluice("list", "--created-after", "yesterday")
    assert bad.code == 2 and "--created-after 'yesterday': expected an ISO 8601 time" in bad.err


async def test_delete_removes_a_finished_run_and_refuses_a_pending_one(
    sluice: Sluice, client: WorkflowClient
) -> None:
    done = await client.create_workflow(template("quick", step("a")))
    await client.execute_workflow(done.id, wait=True, timeout=10)
    pending = await client.create_workflow(template("quick", step("a")))

    deleted = await sluice("delete", done.id)
    assert deleted.code == 0, deleted.err
    assert deleted.out == f"deleted run {done.id}\n"
    assert (await sluice("show", done.id)).code == 3

    refused = await sluice("delete", pending.id)
    assert refused.code == 4 and refused.err.startswith("error: not allowed now:")


async def test_the_live_view_times_a_retried_step_from_its_first_attempt(
    client: WorkflowClient,
) -> None:
    retried = step(
        "flaky", "flaky", config={"failures": 2},
        retry={"maxAttempts": 3, "initialBackoff": "0.1s", "backoffMultiplier": 2},
    )  # fmt: skip
    run = await client.create_workflow(template("retries", retried))
    done = await client.execute_workflow(run.id, wait=True, timeout=10)

    view = RunView.blank(done)  # what `run` and `watch` fold the events into
    async for event in client.watch(run.id):
        view.apply(event)
    [server] = done.steps
    assert server.attempt == 3 and server.duration.ToTimedelta().total_seconds() > 0.3
    live = view.steps["flaky"]
    assert live.ended is not None
    assert live.duration(live.ended) == server.duration.ToTimedelta()


async def test_watch_says_it_is_reconnecting_while_the_server_restarts(
    start_server: ServerFactory,
) -> None:
    first = await start_server()
    async with WorkflowClient(first.address) as client:
        run = await client.create_workflow("content-to-social", {"topic": "A"})
        await client.execute_workflow(run.id, wait=True, timeout=10)  # pauses for approval
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    watcher = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sluice.cli", "watch", run.id, "--plain", "--address", first.address,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert watcher.stdout is not None and watcher.stderr is not None
    try:
        while b"workflow paused" not in await asyncio.wait_for(watcher.stdout.readline(), 10):
            pass
        await first.stop()
        notice = await asyncio.wait_for(watcher.stderr.readline(), 10)
        assert notice.startswith(b"Reconnecting to the server (")
        second = await start_server(listen=f"127.0.0.1:{first.port}")
        async with WorkflowClient(second.address) as client:
            await client.approve_gate(run.id, "publish-approval")
        out, err = await asyncio.wait_for(watcher.communicate(), 20)
    finally:
        if watcher.returncode is None:
            watcher.kill()
            await watcher.wait()

    assert watcher.returncode == 0, err.decode()
    assert f"Run {run.id} COMPLETED" in out.decode()
    assert err.decode().splitlines()[-1] == "reconnected: events flow again"
    assert "Reconnecting" not in out.decode(), "stdout keeps only the run's lines"


async def test_help_of_graph_names_graphviz() -> None:
    result = await run_cli("graph", "--help", address="unused:1", env={"COLUMNS": "200"})
    text = " ".join(result.out.split())
    assert "install graphviz" in text and "dot -Tsvg" in text
