"""The `sluice` command line end to end: a real server, the CLI as a subprocess, exit codes."""

from __future__ import annotations

import itertools
import json
import re
import socket
import uuid
from pathlib import Path

from sluice.client import WorkflowClient
from sluice.server import SluiceServer
from tests.cli.conftest import Sluice, run_cli
from tests.support.process import free_port
from tests.support.templates import step, template

CONTENT = (
    "content-to-social",
    "--param",
    "topic=Spring Market Update",
    "--param",
    "platform=facebook",
)
STEPS = (
    "generate-content",
    "review-content",
    "schedule-post",
    "wait-for-slot",
    "post-content",
    "analyze-performance",
)
EDGES = list(itertools.pairwise(STEPS))


def run_id(output: str) -> str:
    match = re.search(r"Run ([0-9a-f-]{36}) ", output)
    assert match, output
    return match.group(1)


async def test_templates_lists_the_predefined_ones(sluice: Sluice) -> None:
    table = await sluice("templates")
    assert table.code == 0, table.err
    assert table.lines[0].split() == ["id", "version", "name", "steps", "predefined"]
    assert any(line.split()[:2] == ["content-to-social", "1"] for line in table.lines)

    listed = await sluice("templates", "--json")
    ids = {t["id"] for t in json.loads(listed.out)["templates"]}
    assert {"content-to-social", "listing-campaign", "market-analysis-report"} <= ids

    shown = await sluice("template", "show", "content-to-social", "--json")
    assert json.loads(shown.out)["qualityGates"][1]["id"] == "publish-approval"


async def test_an_address_list_with_a_dead_server_first_works(server: SluiceServer) -> None:
    dead, other = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    result = await run_cli("run", *CONTENT, "--auto-approve", address=f"{dead},{server.address}")
    assert result.code == 0, result.err
    down = await run_cli("templates", address=f"{dead},{other}")
    assert down.code == 5 and f"cannot reach the Sluice server at {dead},{other}" in down.err
    bad = await run_cli("templates", address=f"{dead},nowhere")
    assert (bad.code, bad.err.strip().splitlines()[0]) == (
        2,
        "error: invalid argument (1 field violation):",
    )


async def test_run_with_auto_approve_completes_and_ends_with_the_metrics(sluice: Sluice) -> None:
    result = await sluice("run", *CONTENT, "--auto-approve")

    assert result.code == 0, result.err
    assert "#1 workflow created" in result.lines[0]
    assert result.lines[-4].endswith("COMPLETED")
    assert result.lines[-3].split() == ["steps:", "5", "completed,", "0", "failed,", "1", "skipped,", "0", "cancelled", "(of", "6)"]  # fmt: skip
    assert result.lines[-2].split()[:3] == ["gates:", "2", "passed,"]
    assert result.lines[-1].startswith("  duration:")


async def test_run_json_prints_the_final_workflow(sluice: Sluice) -> None:
    result = await sluice("run", *CONTENT, "--auto-approve", "--json")

    assert result.code == 0, result.err
    workflow = json.loads(result.out)
    assert workflow["status"] == "WORKFLOW_STATUS_COMPLETED"
    assert workflow["metrics"]["completedSteps"] == 5
    assert {"topic": "Spring Market Update", "platform": "facebook"}.items() <= workflow[
        "params"
    ].items()


async def test_param_values_are_json_when_they_parse(sluice: Sluice) -> None:
    result = await sluice(
        "run", "listing-campaign", "--detach", "--json",
        "-p", "listingId=L-1", "-p", "address=1 Main St", "-p", "price=500000",
        "-p", 'features=["pool", "garden"]', "-p", "bedrooms=3",
    )  # fmt: skip

    assert result.code == 0, result.err
    params = json.loads(result.out)["params"]
    assert params["price"] == 500000 and params["features"] == ["pool", "garden"]
    assert params["address"] == "1 Main St"


async def test_run_without_auto_approve_pauses_then_approve_and_watch_finish_it(
    sluice: Sluice,
) -> None:
    paused = await sluice("run", *CONTENT)

    assert paused.code == 6, paused.err
    workflow_id = run_id(paused.out)
    assert f"Run {workflow_id} PAUSED" in paused.out
    assert f"sluice approve {workflow_id} publish-approval" in paused.lines[-1]

    approved = await sluice("approve", workflow_id, "publish-approval", "--comment", "ok")
    assert approved.code == 0, approved.err
    assert approved.out.startswith("approved gate publish-approval")

    watched = await sluice("watch", workflow_id)
    assert watched.code == 0, watched.err
    assert "gate approved publish-approval (schedule-post): ok" in watched.out
    assert f"Run {workflow_id} COMPLETED" in watched.out

    events = await sluice("watch", workflow_id, "--after", "11", "--json")
    sequences = [json.loads(line)["sequence"] for line in events.lines]
    assert sequences[0] == "12" and len(sequences) == len(set(sequences))
    assert json.loads(events.lines[-1])["type"] == "EVENT_TYPE_WORKFLOW_COMPLETED"


async def test_live_view_draws_steps_gates_progress_and_metrics(sluice: Sluice) -> None:
    result = await sluice("run", *CONTENT, "--auto-approve", "--live")

    assert result.code == 0, result.err
    assert "\x1b[" in result.out, "drawn for a terminal"
    for text in (
        *STEPS,
        "publish-approval",
        "6/6 steps settled",
        "5 completed, 0 failed, 1 skipped",
    ):
        assert text in result.out


async def test_list_filters_by_status(sluice: Sluice, client: WorkflowClient) -> None:
    done = await client.create_workflow("content-to-social", {"topic": "A"})
    await client.execute_workflow(done.id, auto_approve=True, wait=True, timeout=10)
    pending = await client.create_workflow("content-to-social", {"topic": "B"})

    result = await sluice("list", "--status", "COMPLETED", "--json")
    assert result.code == 0, result.err
    assert [w["id"] for w in json.loads(result.out)["workflows"]] == [done.id]

    table = await sluice("list", "--limit", "1")
    assert pending.id in table.out and done.id not in table.out
    completed = await sluice("list", "--status", "COMPLETED")
    assert "5/6 (1 skipped)" in completed.out  # the wait for the slot, a branch not taken

    bad = await sluice("list", "--status", "DONE")
    assert bad.code == 2 and "PENDING, RUNNING" in bad.err


async def test_show_prints_steps_gates_and_metrics(sluice: Sluice, client: WorkflowClient) -> None:
    run = await client.create_workflow("content-to-social", {"topic": "A"})
    await client.execute_workflow(run.id, auto_approve=True, wait=True, timeout=10)

    shown = await sluice("show", run.id)
    assert shown.code == 0, shown.err
    for text in (*STEPS, "quality-check", "PASSED", "5 completed"):
        assert text in shown.out

    as_json = await sluice("show", run.id, "--json")
    assert json.loads(as_json.out)["id"] == run.id


async def test_graph_as_mermaid_and_dot_has_every_step_and_edge(sluice: Sluice) -> None:
    mermaid = await sluice("graph", "content-to-social")
    assert mermaid.code == 0, mermaid.err
    assert mermaid.lines[0] == "flowchart TD"
    for step_id in STEPS:
        assert f'step_{step_id.replace("-", "_")}["{step_id}<br/>' in mermaid.out
    for source, target in EDGES:
        node = {s: f"step_{s.replace('-', '_')}" for s in (source, target)}
        assert re.search(rf"{node[source]} -->(\|[^|]*\|)? {node[target]}$", mermaid.out, re.M)
    assert '-->|"gate publish-approval (approval)"| step_post_content' in mermaid.out
    assert "class step_analyze_performance optional" in mermaid.out

    dot = await sluice("graph", "content-to-social", "--format", "dot")
    assert dot.code == 0, dot.err
    assert dot.lines[0] == 'digraph "content-to-social" {'
    for source, target in EDGES:
        assert f'"{source}" -> "{target}"' in dot.out
    assert 'style="rounded,dashed"' in dot.out


async def test_graph_of_a_run_labels_steps_with_their_status(
    sluice: Sluice, client: WorkflowClient
) -> None:
    run = await client.create_workflow("content-to-social", {"topic": "A"})
    await client.execute_workflow(run.id, wait=True, timeout=10)  # pauses at publish-approval

    graph = await sluice("graph", run.id, "--format", "dot")
    assert graph.code == 0, graph.err
    assert '"schedule-post" [label="schedule-post\\nschedule\\nCOMPLETED"]' in graph.out
    assert "gate publish-approval (approval): AWAITING_APPROVAL" in graph.out


async def test_run_of_a_template_file_that_fails_exits_1(sluice: Sluice, tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    body = template(
        "broken", step("fetch"), step("explode", "fail", "fetch", config={"permanent": True})
    )
    path.write_text(json.dumps(body))

    result = await sluice("run", str(path))
    assert result.code == 1, result.err
    assert "step failed explode" in result.out and "Run " in result.out


async def test_pause_of_a_pending_run_exits_4(sluice: Sluice, client: WorkflowClient) -> None:
    run = await client.create_workflow("content-to-social", {"topic": "A"})

    result = await sluice("pause", run.id)
    assert result.code == 4
    assert result.err.startswith("error: not allowed now:") and result.out == ""


async def test_show_of_an_unknown_run_exits_3(sluice: Sluice) -> None:
    result = await sluice("show", str(uuid.uuid4()))
    assert result.code == 3
    assert result.err.count("\n") == 1 and result.err.startswith("error: not found")


async def test_missing_required_param_exits_2_naming_the_field(sluice: Sluice) -> None:
    result = await sluice("run", "content-to-social", "--param", "platform=facebook")
    assert result.code == 2
    assert "params.topic: is required" in result.err

    bad_pair = await sluice("run", "content-to-social", "--param", "topic")
    assert bad_pair.code == 2 and "expected NAME=VALUE" in bad_pair.err


async def test_unreachable_server_exits_5() -> None:
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = await run_cli("show", str(uuid.uuid4()), address=f"127.0.0.1:{port}")
    assert result.code == 5
    assert result.err.startswith(f"error: cannot reach the Sluice server at 127.0.0.1:{port}")
    assert result.err.count("\n") == 1


async def test_help_documents_the_exit_codes() -> None:
    result = await run_cli("run", "--help", address="unused:1")
    assert result.code == 0
    assert "6 the run is PAUSED" in " ".join(result.out.split())
