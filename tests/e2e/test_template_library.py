"""The template library: every predefined template runs to completion over real gRPC with its
documented params (times in the past or short durations, so its waits end quickly), and the
branch its params choose is the one that runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from sluice.client import EventType, GateStatus, StepStatus, WorkflowClient, WorkflowStatus
from sluice.server import SluiceServer

TEMPLATES = Path(__file__).resolve().parents[2] / "server" / "sluice" / "templates"
# A time already past: a wait until it (or a schedule fixed at it) ends at once.
PAST = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0).isoformat()

# Each predefined template with params a user would give it: the required ones, and the
# documented way to make its waits short.
RUNS: dict[str, dict[str, Any]] = {
    "content-to-social": {"topic": "Spring market update", "waitForSlot": True, "publishAt": PAST},
    "listing-campaign": {"listingId": "l-1", "address": "123 Main St", "price": 500000},
    "market-analysis-report": {"location": "San Francisco, CA"},
    "open-house-promotion": {
        "address": "12 Oak Ave", "openHouseStart": PAST, "openHouseEnd": PAST, "reminderAt": PAST,
    },
    "price-change-announcement": {
        "listingId": "l-2", "address": "9 Birch Ln", "oldPrice": 525000, "newPrice": 499000,
    },
    "new-listing-launch": {"listingId": "l-3", "address": "4 Elm Ct", "price": 750000},
    "monthly-market-newsletter": {"location": "Austin, TX", "publishAt": PAST},
    "review-request-after-sale": {
        "clientName": "Dana", "address": "9 Birch Ln", "reviewUrl": "https://example.com/review",
        "followUpAfter": "1s", "reminderAfter": "1s",
    },
}  # fmt: skip

# The two branches of price-change-announcement: a drop announces, a rise updates the listing.
DROP = {"generate-price-drop-post", "generate-price-drop-email", "review-price-drop",
        "post-price-drop", "send-price-drop-email"}  # fmt: skip
RISE = {"generate-updated-description", "review-updated-description", "publish-updated-description"}

# The steps those params leave out: the branches not taken.
SKIPPED = {
    "price-change-announcement": RISE,
    "new-listing-launch": {"generate-linkedin-post", "post-linkedin"},
}  # fmt: skip


def statuses(run: Any) -> dict[str, str]:
    return {s.step_id: StepStatus.Name(s.status).removeprefix("STEP_STATUS_") for s in run.steps}


def skipped(run: Any) -> set[str]:
    return {step for step, status in statuses(run).items() if status == "SKIPPED"}


def outputs(run: Any) -> dict[str, dict[str, Any]]:
    return {s.step_id: json_format.MessageToDict(s.output) for s in run.steps}


async def run_to_rest(
    client: WorkflowClient, template: str | dict[str, Any], params: dict[str, Any], **kw: Any
) -> Any:
    run = await client.create_workflow(template, params)
    return await client.execute_workflow(run.id, wait=True, timeout=30, **kw)


def test_every_shipped_template_is_run_here() -> None:
    assert sorted(RUNS) == sorted(p.stem for p in TEMPLATES.glob("*.json"))


@pytest.mark.parametrize("template_id", sorted(RUNS))
async def test_every_predefined_template_completes_with_its_documented_params(
    server: SluiceServer, client: WorkflowClient, template_id: str
) -> None:
    template = await client.get_template(template_id)
    assert template.predefined
    # Only documented params: each has a description, and the run uses no other.
    documented = {p.name for p in template.params if p.description}
    assert set(RUNS[template_id]) <= documented == {p.name for p in template.params}

    done = await run_to_rest(client, template_id, RUNS[template_id], auto_approve=True)

    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error
    assert done.metrics.failed_steps == 0
    assert done.metrics.quality_gates_failed == 0
    # The branches the params chose ran, the others were skipped, and every gate passed (or was
    # approved) unless its step was on a branch not taken.
    assert skipped(done) == SKIPPED.get(template_id, set())
    assert set(statuses(done).values()) <= {"COMPLETED", "SKIPPED"}
    for gate in done.gate_results:
        if gate.step_id in skipped(done):
            assert gate.status == GateStatus.GATE_STATUS_SKIPPED, gate.gate_id
        else:
            assert gate.status in (GateStatus.GATE_STATUS_PASSED, GateStatus.GATE_STATUS_APPROVED)
    assert server.store is not None
    assert await server.store.list_outbox(done.id), "each template publishes or notifies"


# --- the branch taken ---------------------------------------------------------------------

PRICE = {"listingId": "l-2", "address": "9 Birch Ln"}


async def test_a_price_drop_announces_and_does_not_touch_the_description(
    client: WorkflowClient,
) -> None:
    done = await run_to_rest(
        client, "price-change-announcement", {**PRICE, "oldPrice": 525000, "newPrice": 499000},
        auto_approve=True,
    )  # fmt: skip
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error
    assert skipped(done) == RISE
    out = outputs(done)
    assert out["post-price-drop"]["platform"] == "facebook"
    assert out["send-price-drop-email"]["platform"] == "email"
    assert out["notify-agent"]["message"] == (
        "The price of 9 Birch Ln (listing l-2) changed from 525000 to 499000, and the change "
        "was published."
    )


async def test_a_price_rise_waits_for_the_agent_with_a_deadline_then_updates_the_description(
    client: WorkflowClient,
) -> None:
    run = await client.create_workflow(
        "price-change-announcement", {**PRICE, "oldPrice": "480000", "newPrice": "499000"}
    )
    paused = await client.execute_workflow(run.id, wait=True, timeout=30)
    assert paused.status == WorkflowStatus.WORKFLOW_STATUS_PAUSED, paused.error
    assert paused.paused_gate_id == "description-approval"
    [gate] = [g for g in paused.gate_results if g.gate_id == "description-approval"]
    assert gate.status == GateStatus.GATE_STATUS_AWAITING_APPROVAL
    waits = gate.deadline.ToDatetime(UTC) - paused.update_time.ToDatetime(UTC)
    assert timedelta(hours=23, minutes=59) < waits <= timedelta(hours=24)

    done = await client.approve_gate(run.id, "description-approval", wait=True, timeout=30)
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error
    assert skipped(done) == DROP
    assert "$499,000" in outputs(done)["generate-updated-description"]["content"]
    assert statuses(done)["notify-agent"] == "COMPLETED"


async def test_an_unchanged_price_publishes_nothing(client: WorkflowClient) -> None:
    done = await run_to_rest(
        client, "price-change-announcement", {**PRICE, "oldPrice": 499000, "newPrice": 499000}
    )
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error
    assert skipped(done) == DROP | RISE | {"notify-agent"}


async def test_a_new_listing_goes_out_on_the_channels_switched_on(
    server: SluiceServer, client: WorkflowClient
) -> None:
    done = await run_to_rest(
        client, "new-listing-launch",
        {"listingId": "l-3", "address": "4 Elm Ct", "price": 750000, "postToFacebook": False,
         "postToInstagram": False, "postToLinkedin": True, "sendEmail": False},
        auto_approve=True,
    )  # fmt: skip
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error
    assert skipped(done) == {
        "generate-facebook-post", "post-facebook", "generate-instagram-post", "post-instagram",
        "generate-email", "schedule-email", "send-email",
    }  # fmt: skip
    assert server.store is not None
    channels = sorted(r["channel"] for r in await server.store.list_outbox(done.id))
    assert channels == ["in-app", "linkedin", "website"]


async def test_a_new_listing_with_a_fair_housing_violation_is_aborted(
    client: WorkflowClient,
) -> None:
    done = await run_to_rest(
        client, "new-listing-launch",
        {"listingId": "l-4", "address": "1 Elm Rd", "price": 1, "features": ["adults only"]},
        auto_approve=True,
    )  # fmt: skip
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_FAILED
    assert "fair-housing" in done.error
    assert statuses(done)["publish-listing"] != "COMPLETED"


OPEN_HOUSE = {"address": "12 Oak Ave", "openHouseStart": PAST, "openHouseEnd": PAST}


async def test_the_open_house_reminder_waits_until_its_time(client: WorkflowClient) -> None:
    remind_at = (datetime.now(UTC) + timedelta(hours=20)).replace(microsecond=0)
    run = await client.create_workflow(
        "open-house-promotion", {**OPEN_HOUSE, "reminderAt": remind_at.isoformat()}
    )
    await client.execute_workflow(run.id, auto_approve=True)
    async for event in client.watch(run.id, follow=True):
        if event.type == EventType.EVENT_TYPE_STEP_STARTED and event.step_id == "wait-for-reminder":
            break
    waiting = await client.get_workflow(run.id)
    assert waiting.status == WorkflowStatus.WORKFLOW_STATUS_RUNNING
    step = next(s for s in waiting.steps if s.step_id == "wait-for-reminder")
    assert step.status == StepStatus.STEP_STATUS_RUNNING
    assert step.wake_time.ToDatetime(UTC) == remind_at
    assert statuses(waiting)["post-announcement"] == "COMPLETED"
    assert statuses(waiting)["post-reminder"] == "PENDING"
    cancelled = await client.cancel_workflow(run.id)
    assert cancelled.status == WorkflowStatus.WORKFLOW_STATUS_CANCELLED


async def test_an_open_house_without_follow_up_ends_with_the_reminder(
    client: WorkflowClient,
) -> None:
    done = await run_to_rest(
        client, "open-house-promotion",
        {**OPEN_HOUSE, "reminderAt": PAST, "sendFollowUp": False}, auto_approve=True,
    )  # fmt: skip
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error
    assert skipped(done) == {"wait-for-end", "generate-follow-up", "send-follow-up"}
    assert "12 Oak Ave" in outputs(done)["notify-agent"]["message"]


async def test_the_newsletter_goes_out_when_the_editor_does_not_answer_in_time(
    client: WorkflowClient,
) -> None:
    # The shipped template with its day-long deadline cut to a second.
    body = json.loads((TEMPLATES / "monthly-market-newsletter.json").read_text())
    body["id"] = "newsletter-short-deadline"
    [approval] = [g for g in body["qualityGates"] if "approval" in g]
    assert approval["approval"] == {
        "timeout": "86400s", "onTimeout": "APPROVAL_TIMEOUT_ACTION_APPROVE",
    }  # fmt: skip
    approval["approval"]["timeout"] = "1s"
    await client.create_template(body)

    run = await client.create_workflow(
        "newsletter-short-deadline", {"location": "Austin, TX", "waitForSlot": False}
    )
    paused = await client.execute_workflow(run.id, wait=True, timeout=30)
    assert paused.paused_gate_id == "editor-approval"
    events = [e async for e in client.watch(run.id)]  # ends with the run
    done = await client.get_workflow(run.id)

    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error
    assert skipped(done) == {"wait-for-slot"}
    gate = next(g for g in done.gate_results if g.gate_id == "editor-approval")
    assert gate.status == GateStatus.GATE_STATUS_APPROVED
    [approved] = [e for e in events if e.type == EventType.EVENT_TYPE_GATE_APPROVED]
    details = json_format.MessageToDict(approved.details)
    assert details["timedOut"] is True
    assert details["message"].startswith("approved: no decision by the deadline")
    assert "Austin, TX" in outputs(done)["notify-editor"]["message"]


async def test_the_review_request_waits_after_the_closing_and_the_reminder_is_optional(
    client: WorkflowClient,
) -> None:
    params = {**RUNS["review-request-after-sale"], "sendReminder": False}
    done = await run_to_rest(client, "review-request-after-sale", params, auto_approve=True)
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error
    assert skipped(done) == {"wait-for-reminder", "generate-reminder", "send-reminder"}
    out = outputs(done)
    waited = datetime.fromisoformat(
        out["wait-after-closing"]["wokeAt"]
    ) - done.start_time.ToDatetime(UTC)
    assert waited >= timedelta(seconds=1)
    assert "https://example.com/review" in out["generate-request"]["content"]
    assert out["send-request"]["platform"] == "email"
