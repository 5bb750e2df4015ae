"""`sluice schedule create|list|get|pause|resume|trigger|delete` against a real server."""

from __future__ import annotations

import json
from pathlib import Path

from sluice.client import WorkflowClient
from sluice.server import SluiceServer
from tests.cli.conftest import Sluice
from tests.support.templates import step, template


async def test_a_schedule_from_create_to_delete(
    sluice: Sluice, server: SluiceServer, tmp_path: Path
) -> None:
    async with WorkflowClient(server.address) as client:
        await client.create_template(template("mine", step("a"), params=[{"name": "city"}]))
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"city": "Berlin"}))

    created = await sluice(
        "schedule", "create", "nightly", "mine", "30 2 * * *", "--tz", "Europe/Berlin",
        "--params-file", str(params), "--overlap", "cancel_previous", "--catchup-seconds", "600",
    )  # fmt: skip
    assert created.code == 0, created.err
    assert created.out.startswith("created schedule nightly; next fire 20")

    listed = await sluice("schedule", "list", "--json")
    [row] = json.loads(listed.out)["schedules"]
    assert (row["scheduleId"], row["timeZone"], row["overlapPolicy"], row["catchupWindow"]) == (
        "nightly", "Europe/Berlin", "OVERLAP_POLICY_CANCEL_PREVIOUS", "600s",
    )  # fmt: skip
    assert row["params"] == {"city": "Berlin"}

    updated = await sluice(
        "schedule", "update", "nightly", "--cron", "0 3 * * *", "-p", "city=Porto", "--json"
    )
    assert updated.code == 0, updated.err
    changed = json.loads(updated.out)
    assert (changed["cron"], changed["params"], changed["timeZone"]) == (
        "0 3 * * *", {"city": "Porto"}, "Europe/Berlin",
    )  # fmt: skip

    paused = await sluice("schedule", "pause", "nightly", "--reason", "holidays")
    assert (paused.code, paused.out) == (0, "paused schedule nightly\n")
    shown = await sluice("schedule", "get", "nightly")
    assert "paused: holidays" in shown.out
    resumed = await sluice("schedule", "resume", "nightly")
    assert resumed.out.startswith("resumed schedule nightly; next fire ")

    fired = await sluice("schedule", "trigger", "nightly")
    assert fired.code == 0, fired.err
    run_id = fired.out.strip()
    shown = await sluice("schedule", "get", "nightly")
    assert f"STARTED  {run_id}" in shown.out

    deleted = await sluice("schedule", "delete", "nightly")
    assert (deleted.code, deleted.out) == (0, "deleted schedule nightly\n")
    assert (await sluice("schedule", "get", "nightly")).code == 3


async def test_a_bad_schedule_prints_each_problem_and_exits_2(
    sluice: Sluice, server: SluiceServer
) -> None:
    refused = await sluice(
        "schedule", "create", "x", "content-to-social", "0 0 * *", "--tz", "Nowhere"
    )
    assert refused.code == 2
    assert "schedule.cron: " in refused.err and "schedule.time_zone: " in refused.err
