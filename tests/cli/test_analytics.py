"""`sluice analytics`: the figures of the runs that ended, as tables or JSON, and bad input
answered with exit 2 and the field at fault."""

from __future__ import annotations

import json

from sluice.client import WorkflowClient
from tests.cli.conftest import Sluice
from tests.support.templates import step, template, threshold_gate

GOOD = template(
    "good",
    step("a", config={"output": {"score": 0.9}}),
    step("b", "sleep", "a"),
    gates=[threshold_gate("enough", "a", "CONTINUE", metric="score", value=0.5)],
)
BAD = template("bad", step("boom", "fail", config={"permanent": True}))


async def test_tables_of_templates_step_types_and_gate_types(
    sluice: Sluice, client: WorkflowClient
) -> None:
    for tpl in (GOOD, GOOD, GOOD, BAD):
        run = await client.create_workflow(tpl)
        await client.execute_workflow(run.id, wait=True, timeout=10)

    shown = await sluice("analytics")
    assert shown.code == 0, shown.err
    lines = shown.lines
    assert lines[0].startswith("runs that ended from ") and lines[0].endswith(" UTC")
    rows = {line.split()[0]: line.split() for line in lines[1:] if line.strip()}
    # template  runs completed failed cancelled success p50 p95 p99 mean
    assert rows["good"][1:6] == ["3", "3", "0", "0", "100.0%"]
    assert rows["bad"][1:6] == ["1", "0", "1", "0", "0.0%"]
    # step type  steps completed failed skipped cancelled attempts success ...
    assert rows["sleep"][1:8] == ["6", "6", "0", "0", "0", "6", "100.0%"]
    assert rows["fail"][1:8] == ["1", "0", "1", "0", "0", "1", "0.0%"]
    # gate type  gates passed failed approved rejected skipped undecided pass-rate
    assert rows["threshold"][1:] == ["3", "3", "0", "0", "0", "0", "0", "100.0%"]

    only = json.loads((await sluice("analytics", "--template", "bad", "--json")).out)
    assert [t["templateId"] for t in only["templates"]] == ["bad"]
    assert [s["stepType"] for s in only["stepTypes"]] == ["fail"]
    steps = json.loads((await sluice("analytics", "--step-type", "sleep", "--json")).out)
    assert [s["stepType"] for s in steps["stepTypes"]] == ["sleep"]

    empty = await sluice("analytics", "--since", "3d", "--until", "2d")
    assert empty.code == 0 and empty.lines[1] == "no run ended in this window"


async def test_bad_input_exits_2_naming_it(sluice: Sluice) -> None:
    since = await sluice("analytics", "--since", "last week")
    assert since.code == 2 and "--since 'last week': expected an ISO 8601 time" in since.err
    step_type = await sluice("analytics", "--step-type", "teleport")
    assert (
        step_type.code == 2 and "step_type: must be a step type this server runs" in step_type.err
    )
    order = await sluice("analytics", "--since", "1h", "--until", "2h")
    assert order.code == 2 and "end_time: must be later than start_time" in order.err
