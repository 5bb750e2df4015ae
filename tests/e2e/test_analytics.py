"""GetAnalytics over a small known history, on a real server and database: runs that complete,
fail and are cancelled, a gate that passes and one that fails, steps held for known times
(the server's clock moved while a latch holds them). The figures are exact counts and rates,
and percentiles within the documented error; a run outside the window and another user's
runs are not counted; bad requests name every bad field."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from sluice.client import GateType, InvalidArgumentError, Workflow, WorkflowClient, WorkflowStatus
from sluice.engine.analytics import PERCENTILE_ERROR, ceil_hour
from sluice.store.schema import analytics_queue, analytics_sums
from sluice.v1.analytics_pb2 import DurationStats
from sluice.v1.workflow_service_pb2 import GetAnalyticsResponse
from tests.conftest import ServerFactory
from tests.support.clock import ManualClock
from tests.support.crypto import SECRET, token
from tests.support.eventually import eventually
from tests.support.handlers import Calls
from tests.support.templates import step, template, validation_gate

HELD = template(
    "held",
    step("work", "latch", config={"latch": "{{ params.latch }}", "output": {"ok": True}}),
    step("after", "sleep", "work"),
    gates=[validation_gate("check", "work", "ABORT", "params.ok == true")],
    params=[{"name": "latch", "required": True}, {"name": "ok", "defaultValue": True}],
)
BROKEN = template("broken", step("boom", "fail", config={"permanent": True}))
S = WorkflowStatus
HOUR = timedelta(hours=1)


class History:
    """Runs driven to their end on the test's server, each held for a known time."""

    def __init__(self, calls: Calls, clock: ManualClock) -> None:
        self.calls = calls
        self.clock = clock

    async def held(
        self, client: WorkflowClient, seconds: float, *, ok: bool = True, cancel: bool = False
    ) -> Workflow:
        """A run of HELD whose step `work` is held `seconds` by the server's clock, then let
        go (or the run cancelled); the run as it ended."""
        latch = uuid.uuid4().hex
        run = await client.create_workflow(HELD, {"latch": latch, "ok": ok})
        await client.execute_workflow(run.id)
        await asyncio.wait_for(self.calls.started[f"{run.id}/work"].wait(), 10)
        self.clock.advance(timedelta(seconds=seconds))
        if cancel:
            return await client.cancel_workflow(run.id)
        self.calls.open(latch)
        async for _ in client.watch(run.id):  # ends with the run's terminal event
            pass
        return await client.get_workflow(run.id)

    async def broken(self, client: WorkflowClient) -> Workflow:
        run = await client.create_workflow(BROKEN)
        return await client.execute_workflow(run.id, wait=True, timeout=20)


def near(got: DurationStats, field: str, seconds: float) -> bool:
    """Within the documented error of `seconds`, plus up to a second of real time the run also
    took (the server's clock is real time plus what the test moved it by)."""
    value = float(getattr(got, field).ToTimedelta().total_seconds())
    return seconds * (1 - PERCENTILE_ERROR) <= value <= (seconds + 1) * (1 + PERCENTILE_ERROR)


def by_id(figures: GetAnalyticsResponse) -> dict[str, int]:
    return {t.template_id: t.runs for t in figures.templates}


async def test_figures_of_a_known_history(start_server: ServerFactory, calls: Calls) -> None:
    clock = ManualClock()
    now = clock.now()
    clock.advance(ceil_hour(now) - now + timedelta(seconds=30))  # early in an hour: room to run
    hour = ceil_hour(clock.now()) - HOUR
    server = await start_server(clock=clock, auth_jwt_secret=SECRET)
    history = History(calls, clock)
    async with (
        WorkflowClient(server.address, token=token("alice")) as alice,
        WorkflowClient(server.address, token=token("bob")) as bob,
    ):
        ended = [
            await history.held(alice, 10),
            await history.held(alice, 20),
            await history.held(alice, 40, ok=False),  # the gate fails and aborts the run
            await history.held(alice, 5, cancel=True),
            await history.broken(alice),
            await history.held(bob, 1),
            await history.broken(bob),
        ]
        assert [r.status for r in ended] == [
            S.WORKFLOW_STATUS_COMPLETED, S.WORKFLOW_STATUS_COMPLETED, S.WORKFLOW_STATUS_FAILED,
            S.WORKFLOW_STATUS_CANCELLED, S.WORKFLOW_STATUS_FAILED,
            S.WORKFLOW_STATUS_COMPLETED, S.WORKFLOW_STATUS_FAILED,
        ]  # fmt: skip
        # Two hours later, one more: outside the first hour's window, inside the last 24 hours.
        clock.advance(2 * HOUR)
        await history.held(alice, 30)

        # Asked at once: what ended since the server last folded is folded first.
        first_hour = await alice.get_analytics(start_time=hour, end_time=hour + HOUR)
        assert first_hour.start_time.ToDatetime(tzinfo=UTC) == hour
        assert first_hour.end_time.ToDatetime(tzinfo=UTC) == hour + HOUR
        broken, held = first_hour.templates  # by id
        assert (held.template_id, held.runs, held.completed, held.failed, held.cancelled) == (
            "held", 4, 2, 1, 1,
        )  # fmt: skip
        assert held.success_rate == 0.5
        # Run durations 10, 20, 40 and 5 s (and some real milliseconds): nearest ranks.
        assert held.duration.count == 4
        assert near(held.duration, "p50", 10) and near(held.duration, "p95", 40)
        assert near(held.duration, "p99", 40)
        assert 18.75 <= held.duration.mean.ToTimedelta().total_seconds() < 19.75, "exact"
        assert (broken.template_id, broken.runs, broken.failed, broken.success_rate) == (
            "broken", 1, 1, 0.0,
        )  # fmt: skip

        steps = {s.step_type: s for s in first_hour.step_types}
        assert sorted(steps) == ["fail", "latch", "sleep"]
        latch = steps["latch"]
        assert (latch.steps, latch.completed, latch.cancelled, latch.attempts) == (4, 3, 1, 4)
        assert latch.success_rate == 0.75
        assert near(latch.duration, "p50", 10) and near(latch.duration, "p99", 40)
        after = steps["sleep"]
        assert (after.steps, after.completed, after.skipped, after.success_rate) == (
            4, 2, 2, 1.0,
        )  # fmt: skip
        assert after.duration.count == 2, "skipped steps have no duration"
        assert (steps["fail"].failed, steps["fail"].success_rate) == (1, 0.0)
        [gate] = first_hour.gate_types
        assert gate.gate_type == GateType.GATE_TYPE_VALIDATION
        assert (gate.gates, gate.passed, gate.failed, gate.skipped) == (4, 2, 1, 1)
        assert gate.pass_rate == pytest.approx(2 / 3)

        # The run two hours later is in its own hour and in the default window (24 hours).
        later = await alice.get_analytics(start_time=hour + 2 * HOUR)
        assert by_id(later) == {"held": 1}
        assert near(later.templates[0].duration, "p50", 30)
        assert by_id(await alice.get_analytics()) == {"held": 5, "broken": 1}
        assert by_id(await alice.get_analytics(end_time=hour)) == {}, "nothing ended before"
        # Each user sees only their own runs.
        assert by_id(await bob.get_analytics()) == {"held": 1, "broken": 1}

        # Filters: a template (its runs, steps and gates), a step type (the steps only).
        only_broken = await alice.get_analytics(template_id="broken")
        assert by_id(only_broken) == {"broken": 1}
        assert [s.step_type for s in only_broken.step_types] == ["fail"]
        assert not only_broken.gate_types
        only_latch = await alice.get_analytics(start_time=hour, step_type="latch")
        assert [s.step_type for s in only_latch.step_types] == ["latch"]
        assert by_id(only_latch) == {"held": 5, "broken": 1}
        assert by_id(await alice.get_analytics(template_id="held", template_version=3)) == {}


async def test_bad_requests_name_every_bad_field(start_server: ServerFactory) -> None:
    server = await start_server()
    now = datetime.now(UTC)
    async with WorkflowClient(server.address) as client:
        with pytest.raises(InvalidArgumentError) as bad:
            await client.get_analytics(
                start_time=now, end_time=now - HOUR, template_id="Not An Id",
                template_version=-1, step_type="teleport",
            )  # fmt: skip
        assert {v.field: v.description for v in bad.value.violations} == {
            "end_time": "must be later than start_time",
            "template_id": "must be 1-63 lowercase letters, digits or '-', starting with a letter",
            "template_version": "must be 0 (every version) or a version number",
            "step_type": "must be a step type this server runs (or empty: all)",
        }
        with pytest.raises(InvalidArgumentError) as future:
            await client.get_analytics(start_time=now + 3 * HOUR, template_version=2)
        assert {v.field for v in future.value.violations} == {"start_time", "template_version"}
        # A step type the server runs is fine, even with no such step in any run.
        assert (await client.get_analytics(step_type="generate")).step_types == []


async def test_the_server_folds_ended_runs_in_the_background(
    start_server: ServerFactory,
) -> None:
    server = await start_server()
    assert server.store is not None
    store = server.store
    queue = sa.select(sa.func.count()).select_from(analytics_queue)
    async with WorkflowClient(server.address) as client:
        run = await client.create_workflow(BROKEN)
        await client.execute_workflow(run.id, wait=True, timeout=20)

    async def folded() -> bool:
        return await store.executor.read(lambda conn: conn.execute(queue).scalar_one()) == 0

    # Nobody asks for figures: the queue empties by itself (every 2 s), into the sums.
    await eventually(folded)
    sums = sa.select(sa.func.sum(analytics_sums.c.failed)).where(
        analytics_sums.c.kind == "run", analytics_sums.c.span_seconds == 3600
    )
    assert await store.executor.read(lambda conn: conn.execute(sums).scalar_one()) == 1
