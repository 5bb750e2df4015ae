"""The run page: every step drawn with its status, coloured live from WatchWorkflow, and the
run's actions through its buttons (checked through the gRPC API)."""

from __future__ import annotations

import asyncio
import re

import pytest
from playwright.async_api import Page, expect

from sluice.client import StepStatus, WorkflowClient, WorkflowStatus
from sluice.server import SluiceServer
from tests.browser.conftest import base_url, output_dir
from tests.support.handlers import Calls
from tests.support.templates import step, template

pytestmark = pytest.mark.asyncio(loop_scope="session")


def step_name(status: StepStatus.ValueType) -> str:
    return StepStatus.Name(status).removeprefix("STEP_STATUS_")


async def test_approve_a_paused_run_and_watch_it_complete(
    page: Page, web_server: SluiceServer, client: WorkflowClient, request: pytest.FixtureRequest
) -> None:
    created = await client.create_workflow("content-to-social", params={"topic": "open house"})
    paused = await client.execute_workflow(created.id, wait=True, timeout=20)
    assert paused.status == WorkflowStatus.WORKFLOW_STATUS_PAUSED
    assert paused.paused_gate_id == "publish-approval"

    await page.goto(f"{base_url(web_server)}/runs/{paused.id}")
    await expect(page.get_by_test_id("run-status")).to_have_attribute("data-status", "PAUSED")
    # Every step of the template is drawn, the ones not yet run included, each with its status.
    nodes = page.locator(".react-flow__node")
    await expect(nodes).to_have_count(len(paused.steps))
    for s in paused.steps:
        await expect(page.get_by_test_id(f"node-{s.step_id}")).to_have_attribute(
            "data-status", step_name(s.status)
        )
    assert {step_name(s.status) for s in paused.steps} >= {"COMPLETED", "PENDING"}
    await expect(page.get_by_test_id("stream")).to_have_attribute("data-state", "live")
    folder = output_dir(request)
    await page.screenshot(path=folder / "paused.png")

    await page.get_by_test_id("approve-publish-approval").click()

    # The steps turn completed as the stream's events arrive; the branch not taken is skipped.
    await expect(page.get_by_test_id("run-status")).to_have_attribute("data-status", "COMPLETED")
    done = await client.get_workflow(paused.id)
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
    for s in done.steps:
        await expect(page.get_by_test_id(f"node-{s.step_id}")).to_have_attribute(
            "data-status", step_name(s.status)
        )
    assert step_name(next(s for s in done.steps if s.step_id == "post-content").status) == (
        "COMPLETED"
    )
    await expect(page.get_by_test_id("gate-status-publish-approval")).to_have_attribute(
        "data-status", "APPROVED"
    )
    await expect(page.get_by_test_id("stream")).to_have_attribute("data-state", "ended")

    # A step's details: its attempts and output.
    await page.get_by_test_id("node-post-content").click()
    details = page.get_by_test_id("step-details")
    await expect(details.get_by_test_id("step-status")).to_have_attribute(
        "data-status", "COMPLETED"
    )
    await expect(details.get_by_test_id("attempts").locator("tbody tr")).to_have_count(1)
    await expect(details.get_by_test_id("step-output")).to_contain_text("{")
    await page.screenshot(path=folder / "completed.png")

    # From the keyboard: a focused node opens with Enter; its name says what it is.
    review = page.locator('.react-flow__node[data-id="review-content"]')
    await expect(review).to_have_attribute(
        "aria-label",
        re.compile(r"^review-content, review, completed, threshold: quality-check passed"),
    )
    await review.focus()
    await page.keyboard.press("Enter")
    await expect(details).to_have_attribute("aria-label", "Step review-content")


def latched(name: str) -> dict[str, object]:
    """a (waits on a latch) -> b."""
    return template(
        "latched-web",
        step("a", "latch", config={"latch": name}),
        step("b", "sleep", "a"),
    )


async def test_pause_resume_cancel_and_rerun_through_the_buttons(
    page: Page, web_server: SluiceServer, client: WorkflowClient, calls: Calls
) -> None:
    created = await client.create_workflow(latched("web-actions"))
    await client.execute_workflow(created.id)
    await asyncio.wait_for(calls.started[f"{created.id}/a"].wait(), timeout=10)
    run_id = created.id

    await page.goto(f"{base_url(web_server)}/runs/{run_id}")
    status = page.get_by_test_id("run-status")
    await expect(page.get_by_test_id("node-a")).to_have_attribute("data-status", "RUNNING")

    await page.get_by_test_id("action-pause").click()
    await expect(status).to_have_attribute("data-status", "PAUSED")
    run = await client.get_workflow(run_id)
    assert run.status == WorkflowStatus.WORKFLOW_STATUS_PAUSED
    assert run.pause_reason == "paused from the web view"

    await page.get_by_test_id("action-resume").click()
    await expect(status).to_have_attribute("data-status", "RUNNING")
    assert (await client.get_workflow(run_id)).status == WorkflowStatus.WORKFLOW_STATUS_RUNNING

    # Cancel asks for a second click before it acts.
    cancel = page.get_by_test_id("action-cancel")
    await cancel.click()
    await expect(cancel).to_have_attribute("data-armed", "true")
    assert (await client.get_workflow(run_id)).status == WorkflowStatus.WORKFLOW_STATUS_RUNNING
    await cancel.click()
    await expect(status).to_have_attribute("data-status", "CANCELLED")
    cancelled = await client.get_workflow(run_id)
    assert cancelled.status == WorkflowStatus.WORKFLOW_STATUS_CANCELLED
    await expect(page.get_by_test_id("node-b")).to_have_attribute("data-status", "SKIPPED")

    # Rerun: a new run, and the page goes to it.
    calls.open("web-actions")
    await page.get_by_test_id("action-rerun").click()
    await expect(page).not_to_have_url(re.compile(f"/runs/{run_id}$"))
    new_id = (await page.get_by_test_id("run-id").text_content() or "").strip()
    assert page.url.endswith(f"/runs/{new_id}")
    rerun = await client.get_workflow(new_id)
    assert rerun.rerun_of == run_id
    await expect(status).to_have_attribute("data-status", "COMPLETED")
    assert (await client.get_workflow(new_id)).status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
