"""The template builder, used as a person uses it (clicks, typing, dragging between nodes):
ValidateTemplate's violations appear on the nodes as the template changes, a cycle on every
step in it; the template is saved (CreateTemplate) and run (CreateWorkflow, ExecuteWorkflow).
Screenshots go to tests/output/<test>/ (see conftest.py)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from sluice.client import WorkflowClient, WorkflowStatus
from sluice.server import SluiceServer
from tests.browser.conftest import base_url, output_dir, start_web_server
from tests.browser.test_large_graph import LAYERS, WIDTH, big_template
from tests.support.handlers import Calls
from tests.support.templates import step, template

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def add_step(page: Page, step_id: str, step_type: str = "generate") -> None:
    await page.get_by_test_id("new-step-type").select_option(step_type)
    await page.get_by_test_id("add-step").click()
    field = page.get_by_test_id("step-editor").get_by_test_id("step-id")
    await field.fill(step_id)
    await expect(page.get_by_test_id(f"node-{step_id}")).to_be_visible()


async def drag_dependency(page: Page, source: str, target: str) -> None:
    """From the source node's right handle to the target's left one, as a mouse does."""
    start = page.get_by_test_id(f"node-{source}").locator(".react-flow__handle.source")
    end = page.get_by_test_id(f"node-{target}").locator(".react-flow__handle.target")
    await start.hover()
    await page.mouse.down()
    box = await end.bounding_box()
    assert box is not None
    await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=8)
    await page.mouse.up()


async def test_build_see_the_cycle_fix_it_save_and_run(
    page: Page, web_server: SluiceServer, client: WorkflowClient, request: pytest.FixtureRequest
) -> None:
    folder = output_dir(request)
    await page.goto(f"{base_url(web_server)}/builder")
    await expect(page.get_by_test_id("dag")).to_have_attribute("data-ready", "true")
    await page.get_by_test_id("template-id").fill("built-three")
    await page.get_by_test_id("template-name").fill("Built in the browser")
    for step_id in ("a", "b", "c"):
        await add_step(page, step_id)
    validity = page.get_by_test_id("validity")
    await expect(validity).to_have_attribute("data-state", "valid")

    edges = page.locator(".react-flow__edge")
    await drag_dependency(page, "a", "b")
    await expect(edges).to_have_count(1)
    await drag_dependency(page, "b", "c")
    await expect(edges).to_have_count(2)
    await drag_dependency(page, "c", "a")
    await expect(edges).to_have_count(3)

    # The cycle, as ValidateTemplate words it, is on each of its three nodes.
    looped = template(
        "built-three",
        step("a", "generate", "c", config={"contentType": "blog-post"}),
        step("b", "generate", "a", config={"contentType": "blog-post"}),
        step("c", "generate", "b", config={"contentType": "blog-post"}),
    )
    [cycle] = (await client.validate_template(looped)).violations
    assert "cycle" in cycle.description
    await expect(validity).to_have_attribute("data-state", "invalid")
    for step_id in ("a", "b", "c"):
        await expect(page.get_by_test_id(f"node-{step_id}")).to_have_class(
            re.compile(r"\bhas-problems\b")
        )
        await expect(page.get_by_test_id(f"problems-{step_id}")).to_contain_text(cycle.description)
    await expect(page.get_by_test_id("problem-list")).to_contain_text(cycle.description)
    await page.screenshot(path=folder / "cycle.png")

    # Remove c -> a from a's dependencies: the problems go.
    await page.get_by_test_id("node-a").click()
    editor = page.get_by_test_id("step-editor")
    await expect(editor.get_by_test_id("step-id")).to_have_value("a")
    await editor.get_by_test_id("dep-remove-c").click()
    await expect(edges).to_have_count(2)
    await expect(validity).to_have_attribute("data-state", "valid")
    for step_id in ("a", "b", "c"):
        await expect(page.get_by_test_id(f"problems-{step_id}")).to_have_count(0)
    await page.screenshot(path=folder / "fixed.png")

    await page.get_by_test_id("save").click()
    await expect(page.get_by_test_id("saved")).to_have_attribute("data-version", "1")
    saved = await client.get_template("built-three")
    assert saved.version == 1 and saved.name == "Built in the browser"
    assert {s.id: list(s.dependencies) for s in saved.steps} == {"a": [], "b": ["a"], "c": ["b"]}

    await page.get_by_test_id("run").click()
    await page.get_by_test_id("run-start").click()
    await expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
    await expect(page.get_by_test_id("run-status")).to_have_attribute("data-status", "COMPLETED")
    run_id = page.url.rsplit("/", 1)[-1]
    run = await client.get_workflow(run_id)
    assert run.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
    assert (run.template_id, run.template_version) == ("built-three", 1)
    await page.screenshot(path=folder / "run.png")


async def test_a_config_error_shows_on_its_step_s_node(
    page: Page, web_server: SluiceServer, request: pytest.FixtureRequest
) -> None:
    await page.goto(f"{base_url(web_server)}/builder")
    await page.get_by_test_id("template-id").fill("config-errors")
    await add_step(page, "write")
    validity = page.get_by_test_id("validity")
    await expect(validity).to_have_attribute("data-state", "valid")
    config = page.get_by_test_id("step-editor").get_by_test_id("step-config")
    # A new step of a type starts with its schema's required keys.
    await expect(config).to_have_value(re.compile(r'"contentType": "blog-post"'))

    await config.fill('{"contentType": "limerick"}')
    problems = page.get_by_test_id("problems-write")
    await expect(problems).to_contain_text("config.contentType")
    await expect(problems).to_contain_text("blog-post")  # the choices, from the schema
    await expect(page.get_by_test_id("step-config-problems")).to_contain_text("config.contentType")
    await expect(validity).to_have_attribute("data-state", "invalid")

    # Text that is not JSON is flagged at once, before any call.
    await config.fill('{"contentType": ')
    await expect(problems).to_contain_text("not valid JSON")
    await page.screenshot(path=output_dir(request) / "config-error.png")

    await config.fill('{"contentType": "email"}')
    await expect(validity).to_have_attribute("data-state", "valid")
    await expect(problems).to_have_count(0)

    # A gate's problem is on its step's node too, its badge red.
    await page.get_by_test_id("gate-kind").select_option("threshold")
    await page.get_by_test_id("gate-add").click()
    await page.get_by_test_id("gate-write-threshold-metric").fill("not a path")
    await expect(problems).to_contain_text("gate write-threshold: threshold.metric")
    await expect(page.get_by_test_id("badge-write-gate-write-threshold")).to_have_attribute(
        "data-status", "FAILED"
    )
    await page.get_by_test_id("gate-write-threshold-metric").fill("qualityScore")
    await expect(problems).to_have_count(0)


async def test_edit_a_registered_template_as_its_next_version_and_copy_a_predefined_one(
    page: Page, web_server: SluiceServer, client: WorkflowClient
) -> None:
    first = await client.create_template(
        template("versioned", step("one", "generate", config={"contentType": "email"}))
    )
    await page.goto(f"{base_url(web_server)}/templates/versioned?version={first.version}")
    await page.get_by_test_id("edit-in-builder").click()
    await expect(page.get_by_test_id("builder-origin")).to_contain_text("versioned version 1")
    await expect(page.get_by_test_id("node-one")).to_be_visible()
    await expect(page.get_by_test_id("template-id")).to_have_value("versioned")

    await add_step(page, "two", "transform")
    dependencies = page.get_by_test_id("step-editor").get_by_test_id("dep-add")
    await dependencies.select_option(label="one")
    edge = page.locator(".react-flow__edge")
    await expect(edge).to_have_count(1)
    # A dependency is also removed by selecting its edge and pressing Delete.
    await edge.dispatch_event("click")
    await expect(page.get_by_test_id("edge-panel")).to_contain_text("two runs after one")
    await edge.focus()
    await page.keyboard.press("Delete")
    await expect(edge).to_have_count(0)
    await page.get_by_test_id("node-two").click()
    await dependencies.select_option(label="one")
    await expect(edge).to_have_count(1)
    await expect(page.get_by_test_id("validity")).to_have_attribute("data-state", "valid")
    await page.get_by_test_id("save").click()
    await expect(page.get_by_test_id("saved")).to_have_attribute("data-version", "2")
    second = await client.get_template("versioned")
    assert second.version == 2
    assert {s.id: list(s.dependencies) for s in second.steps} == {"one": [], "two": ["one"]}
    assert (await client.get_template("versioned", version=1)).steps[0].id == "one"

    # A predefined id cannot be registered again: the builder edits a copy under an id of its own.
    await page.goto(f"{base_url(web_server)}/templates/content-to-social")
    await page.get_by_test_id("edit-in-builder").click()
    await expect(page.get_by_test_id("builder-origin")).to_contain_text("a copy of the predefined")
    await expect(page.get_by_test_id("template-id")).to_have_value("content-to-social-copy")
    await expect(page.get_by_test_id("validity")).to_have_attribute("data-state", "valid")
    await page.get_by_test_id("save").click()
    await expect(page.get_by_test_id("saved")).to_have_attribute("data-version", "1")

    # Gates, conditions, join rules, retries and params' defaults all made the round trip.
    original = await client.get_template("content-to-social")
    copy = await client.get_template("content-to-social-copy")
    for made in (original, copy):
        for name in ("id", "version", "predefined", "create_time"):
            made.ClearField(name)
    assert copy == original


async def test_a_250_step_template_stays_usable_in_the_builder(
    page: Page, tmp_path: Path, calls: Calls, request: pytest.FixtureRequest
) -> None:
    server = await start_web_server(tmp_path, calls, max_template_steps=300)
    try:
        async with WorkflowClient(server.address) as client:
            big = await client.create_template(big_template())
        folder = output_dir(request)
        began = time.monotonic()
        await page.goto(f"{base_url(server)}/builder?template=big&version={big.version}")
        nodes = page.locator(".react-flow__node")
        await expect(nodes).to_have_count(LAYERS * WIDTH)
        validity = page.get_by_test_id("validity")
        await expect(validity).to_have_attribute("data-state", "valid")
        opened = time.monotonic() - began

        # An edit deep in the graph: its problem reaches its node (after the 300 ms pause
        # ValidateTemplate waits for), and goes again.
        await page.get_by_test_id("node-s12-5").click()
        when = page.get_by_test_id("step-editor").get_by_test_id("step-when")
        began = time.monotonic()
        await when.fill("steps.s24-0.x == 1")
        await expect(page.get_by_test_id("problems-s12-5")).to_contain_text("not upstream")
        flagged = time.monotonic() - began
        await when.fill("")
        await expect(validity).to_have_attribute("data-state", "valid")
        await expect(page.get_by_test_id("problems-s12-5")).to_have_count(0)

        # A node dragged away keeps its place; Tidy layout lays every node out again.
        first = page.locator(".react-flow__node", has=page.get_by_test_id("node-s00-0"))
        laid_out = await first.evaluate("n => getComputedStyle(n).transform")
        box = await first.bounding_box()
        assert box is not None
        await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        await page.mouse.down()
        await page.mouse.move(box["x"] + 80, box["y"] + 120, steps=6)
        await page.mouse.up()
        await expect(first).not_to_have_css("transform", laid_out)
        await page.get_by_test_id("relayout").click()
        await expect(first).to_have_css("transform", laid_out)
        await expect(nodes).to_have_count(LAYERS * WIDTH)
        await page.screenshot(path=folder / "big.png")
        (folder / "timings.txt").write_text(
            f"250 steps: builder open and checked in {opened:.3f} s; "
            f"a problem on its node {flagged:.3f} s after the edit\n"
        )
        print(
            f"builder, 250 steps: open {opened:.3f} s, problem shown {flagged:.3f} s after typing"
        )
    finally:
        await server.stop()
