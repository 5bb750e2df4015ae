"""A 250-step template: its page draws every node and pans and zooms; a run of it is
coloured live as its steps complete (events applied once per animation frame), with no
relayout."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from sluice.client import WorkflowClient, WorkflowStatus
from sluice.server import SluiceServer
from tests.browser.conftest import base_url, output_dir, start_web_server
from tests.support.handlers import Calls
from tests.support.templates import step, template

pytestmark = pytest.mark.asyncio(loop_scope="session")

LAYERS, WIDTH = 25, 10  # 250 steps


def big_template() -> dict[str, Any]:
    """25 layers of 10 steps, each after two of the layer before; the first waits on a latch."""
    steps = [step("s00-0", "latch", config={"latch": "big"})]
    steps += [step(f"s00-{j}", "sleep") for j in range(1, WIDTH)]
    for layer in range(1, LAYERS):
        for j in range(WIDTH):
            before = (f"s{layer - 1:02d}-{j}", f"s{layer - 1:02d}-{(j + 1) % WIDTH}")
            steps.append(step(f"s{layer:02d}-{j}", "sleep", *before))
    return template("big", *steps)


def transform(style: str | None) -> tuple[float, float, float]:
    """x, y and scale of React Flow's viewport (`translate(Xpx, Ypx) scale(S)`)."""
    found = re.search(r"translate\(([-\d.e]+)px, ([-\d.e]+)px\) scale\(([-\d.e]+)\)", style or "")
    assert found, style
    x, y, scale = found.groups()
    return float(x), float(y), float(scale)


async def test_a_250_step_graph_draws_every_node_pans_zooms_and_goes_live(
    page: Page, tmp_path: Path, calls: Calls, request: pytest.FixtureRequest
) -> None:
    server: SluiceServer = await start_web_server(tmp_path, calls, max_template_steps=300)
    try:
        async with WorkflowClient(server.address) as client:
            registered = await client.create_template(big_template())
            assert len(registered.steps) == LAYERS * WIDTH
            folder = output_dir(request)

            await page.goto(f"{base_url(server)}/templates/big?version={registered.version}")
            nodes = page.locator(".react-flow__node")
            await expect(nodes).to_have_count(LAYERS * WIDTH)
            await expect(page.get_by_test_id("dag")).to_have_attribute("data-ready", "true")
            # A step's definition on click.
            await page.get_by_test_id("node-s03-4").click()
            await expect(page.get_by_test_id("step-details")).to_contain_text("s02-4, s02-5")
            viewport = page.locator(".react-flow__viewport")
            pane = page.locator(".react-flow__pane")
            before = transform(await viewport.get_attribute("style"))

            box = await pane.bounding_box()
            assert box is not None
            centre = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            await page.mouse.move(*centre)
            await page.mouse.wheel(0, -400)  # zoom in around the pointer
            await expect(viewport).not_to_have_attribute(
                "style", re.compile(re.escape(f"scale({before[2]})"))
            )
            zoomed = transform(await viewport.get_attribute("style"))
            assert zoomed[2] > before[2]

            await page.mouse.down()
            await page.mouse.move(centre[0] - 200, centre[1] - 100, steps=5)
            await page.mouse.up()
            panned = transform(await viewport.get_attribute("style"))
            assert panned[2] == zoomed[2]
            assert panned[0] < zoomed[0] - 100 and panned[1] < zoomed[1] - 50

            # The zoom buttons work from the keyboard too.
            await page.get_by_role("button", name="zoom out").focus()
            await page.keyboard.press("Enter")
            await expect(viewport).not_to_have_attribute(
                "style", re.compile(re.escape(f"scale({zoomed[2]})"))
            )
            await page.screenshot(path=folder / "template.png")

            # A run of it, opened while its first step holds: every node drawn, then all 250
            # turn COMPLETED as the events stream in.
            run = await client.create_workflow("big")
            await client.execute_workflow(run.id)
            await page.goto(f"{base_url(server)}/runs/{run.id}")
            await expect(nodes).to_have_count(LAYERS * WIDTH)
            await expect(page.get_by_test_id("node-s00-0")).to_have_attribute(
                "data-status", "RUNNING"
            )
            await expect(page.get_by_test_id("stream")).to_have_attribute("data-state", "live")
            positions = await nodes.evaluate_all("ns => ns.map(n => n.style.transform)")

            began = time.monotonic()
            calls.open("big")
            done = page.locator('.react-flow__node [data-status="COMPLETED"]')
            await expect(done).to_have_count(LAYERS * WIDTH, timeout=30_000)
            elapsed = time.monotonic() - began
            await expect(page.get_by_test_id("run-status")).to_have_attribute(
                "data-status", "COMPLETED"
            )
            assert (
                await client.get_workflow(run.id)
            ).status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
            # Laid out once: no node moved while 250 steps changed status three times each.
            assert await nodes.evaluate_all("ns => ns.map(n => n.style.transform)") == positions
            (folder / "timings.txt").write_text(
                f"250 steps shown completed {elapsed:.3f} s after the latch opened\n"
            )
            print(f"250-step run: every node COMPLETED in the page {elapsed:.3f} s after the start")
            await page.screenshot(path=folder / "run.png")
    finally:
        await server.stop()
