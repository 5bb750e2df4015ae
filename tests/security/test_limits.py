"""Configured limits answer RESOURCE_EXHAUSTED (or fail the step) instead of hurting the server."""

from __future__ import annotations

import asyncio

import pytest

from sluice.client import (
    InvalidArgumentError,
    ResourceExhaustedError,
    WorkflowClient,
    WorkflowStatus,
)
from tests.conftest import ServerFactory
from tests.support.templates import step, template


async def test_active_runs_per_user(start_server: ServerFactory) -> None:
    server = await start_server(max_active_runs_per_user=3)
    async with WorkflowClient(server.address) as client:
        runs = [await client.create_workflow(template("t", step("a"))) for _ in range(3)]
        with pytest.raises(ResourceExhaustedError, match="the limit is 3"):
            await client.create_workflow(template("t", step("a")))
        await client.execute_workflow(
            runs[0].id, wait=True, timeout=10
        )  # a finished run frees a slot
        await client.create_workflow(template("t", step("a")))
        with pytest.raises(ResourceExhaustedError):
            await client.create_workflow(template("t", step("a")))
        await client.cancel_workflow(runs[1].id)  # so does a cancelled one
        await client.create_workflow(template("t", step("a")))
        with pytest.raises(ResourceExhaustedError):
            await client.create_workflow(template("t", step("a")))


async def test_active_runs_are_counted_from_the_store_after_a_restart(
    start_server: ServerFactory,
) -> None:
    first = await start_server(max_active_runs_per_user=2)
    async with WorkflowClient(first.address) as client:
        for _ in range(2):
            await client.create_workflow(template("t", step("a")))
    await first.stop()
    second = await start_server(max_active_runs_per_user=2)
    async with WorkflowClient(second.address) as client:
        with pytest.raises(ResourceExhaustedError, match="you have 2 active"):
            await client.create_workflow(template("t", step("a")))


async def test_watchers_per_run(start_server: ServerFactory) -> None:
    server = await start_server(max_watchers_per_run=2)
    async with WorkflowClient(server.address) as client:
        run = await client.create_workflow(template("t", step("a")))
        streams = [client.watch(run.id, follow=True) for _ in range(2)]
        for stream in streams:  # each delivers WORKFLOW_CREATED, so both are subscribed
            await asyncio.wait_for(anext(stream), 5)
        with pytest.raises(ResourceExhaustedError, match="already has 2 watchers"):
            await anext(client.watch(run.id))
        for stream in streams:
            await stream.aclose()
        # Hanging up frees the slots: the server notices the cancelled calls and unsubscribes.
        deadline = asyncio.get_running_loop().time() + 5
        while True:
            try:
                fresh = [client.watch(run.id, follow=True) for _ in range(2)]
                for stream in fresh:
                    await asyncio.wait_for(anext(stream), 5)
                break
            except ResourceExhaustedError:
                assert asyncio.get_running_loop().time() < deadline, "slots never freed"
                await asyncio.sleep(0.05)
            finally:
                for stream in fresh:
                    await stream.aclose()


async def test_oversized_messages_are_refused(start_server: ServerFactory) -> None:
    server = await start_server(max_message_bytes=64 * 1024)
    async with WorkflowClient(server.address) as client:
        with pytest.raises(ResourceExhaustedError):
            await client.create_workflow(template("t", step("a", config={"blob": "x" * 100_000})))
        assert len(await client.list_templates()) >= 3, "the server is still up"


async def test_params_and_config_have_size_limits(start_server: ServerFactory) -> None:
    server = await start_server()
    async with WorkflowClient(server.address) as client:
        tpl = template("t", step("a", config={"blob": "x" * 70_000}),
                       params=[{"name": "p"}])  # fmt: skip
        with pytest.raises(InvalidArgumentError) as caught:
            await client.create_workflow(tpl, {"p": "y" * 70_000})
        assert {v.field for v in caught.value.violations} == {"template.steps[0].config"}
        with pytest.raises(InvalidArgumentError) as caught:
            await client.create_workflow(
                template("t", step("a"), params=[{"name": "p"}]), {"p": "y" * 70_000}
            )
        assert [v.field for v in caught.value.violations] == ["params"]


async def test_a_step_output_too_large_to_store_fails_the_step(start_server: ServerFactory) -> None:
    server = await start_server(max_step_output_bytes=50_000)
    async with WorkflowClient(server.address) as client:
        big = {"output": {"blob": "{{ params.blob }}"}}
        tpl = template("t", step("a", config=big), params=[{"name": "blob"}])
        run = await client.create_workflow(tpl, {"blob": "z" * 60_000})
        done = await client.execute_workflow(run.id, wait=True, timeout=10)
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_FAILED
    assert "the limit is 50000" in done.steps[0].error


async def test_a_rerun_counts_toward_the_active_runs(start_server: ServerFactory) -> None:
    server = await start_server(max_active_runs_per_user=2)
    held = template("held", step("a", "latch", config={"latch": "never"}))  # runs until cancelled
    async with WorkflowClient(server.address) as client:
        first = await client.create_workflow(held)
        await client.execute_workflow(first.id)
        await client.cancel_workflow(first.id)
        await client.create_workflow(held)
        rerun = await client.rerun_workflow(first.id)  # the second active run
        assert rerun.status == WorkflowStatus.WORKFLOW_STATUS_RUNNING
        with pytest.raises(ResourceExhaustedError, match="the limit is 2"):
            await client.rerun_workflow(first.id)
        await client.cancel_workflow(rerun.id)  # a slot again
        assert (await client.rerun_workflow(first.id)).rerun_of == first.id
