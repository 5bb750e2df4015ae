"""Schedules over real gRPC on a real database: slots fire once each at their time (a clock the
test moves stands in for waiting hours), pause and delete stop them, the overlap policy skips a
slot while the previous run waits at an approval gate, and missed slots after downtime fire
within the catch-up window and are recorded as missed beyond it."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import grpc
import pytest
from google.protobuf.message import Message

from sluice.client import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    SyncWorkflowClient,
    WorkflowClient,
    WorkflowStatus,
)
from sluice.client._schedules import ScheduleCalls, SyncScheduleCalls
from sluice.engine.schedules import run_request_id
from sluice.runtime.schedules import plan_of
from sluice.server import SluiceServer
from sluice.store.factory import open_store
from sluice.store.schedules import SqlScheduleStore
from sluice.v1 import schedule_pb2
from sluice.v1 import schedule_service_pb2 as service_pb
from sluice.v1 import schedule_service_pb2_grpc as service_grpc
from tests.conftest import ServerFactory
from tests.support.clock import ManualClock
from tests.support.crypto import SECRET, token
from tests.support.eventually import eventually
from tests.support.templates import approval_gate, step, template

Fire = schedule_pb2.ScheduleFire
STARTED = schedule_pb2.SCHEDULE_FIRE_STATUS_STARTED
SKIPPED = schedule_pb2.SCHEDULE_FIRE_STATUS_SKIPPED
MISSED = schedule_pb2.SCHEDULE_FIRE_STATUS_MISSED
PENDING = schedule_pb2.SCHEDULE_FIRE_STATUS_PENDING
HOURLY = "0 * * * *"
QUICK = template("quick", step("a"))
GATED = template("gated", step("a"), gates=[approval_gate("ok", "a")])


def at(message: Message, field: str) -> datetime:
    return getattr(message, field).ToDatetime(tzinfo=UTC)  # type: ignore[no-any-return]


async def move_to(
    clock: ManualClock, when: datetime, server: SluiceServer, client: WorkflowClient
) -> None:
    """Move the clock to `when`, let the server's schedules look (as they would then), and
    wait until every slot claimed is settled (the server's own loop, woken by a change just
    made, may have claimed some first)."""
    clock.advance(when - clock.now())
    assert server.schedule_runner is not None
    await server.schedule_runner.tick()

    async def settled() -> bool:
        schedules = [
            await client.get_schedule(s.schedule_id) for s in await client.list_schedules()
        ]
        return all(f.status != PENDING for s in schedules for f in s.recent_fires)

    await eventually(settled)


async def reaches(client: WorkflowClient, run_id: str, status: WorkflowStatus.ValueType) -> None:
    """Wait until the run is in `status`."""

    async def there() -> bool:
        return (await client.get_workflow(run_id)).status == status

    await eventually(there)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def server(start_server: ServerFactory, clock: ManualClock) -> SluiceServer:
    return await start_server(clock=clock)


async def test_a_slot_starts_one_run_at_its_time_and_pause_resume_delete_govern_it(
    server: SluiceServer, client: WorkflowClient, clock: ManualClock
) -> None:
    await client.create_template(QUICK)
    created = await client.create_schedule(
        "hourly", "quick", HOURLY, description="every hour", auto_approve=True
    )
    slot = at(created, "next_fire_time")
    assert slot > clock.now() and slot.minute == 0 and slot - clock.now() <= timedelta(hours=1)
    assert [s.schedule_id for s in await client.list_schedules()] == ["hourly"]

    await move_to(clock, slot - timedelta(seconds=1), server, client)
    assert not (await client.get_schedule("hourly")).recent_fires  # not early
    await move_to(clock, slot + timedelta(seconds=1), server, client)
    await move_to(clock, slot + timedelta(seconds=2), server, client)  # a second look adds nothing
    fired = await client.get_schedule("hourly")
    assert [(at(f, "slot_time"), f.status) for f in fired.recent_fires] == [(slot, STARTED)]
    run_id = fired.recent_fires[0].workflow_id
    assert fired.last_workflow_id == run_id
    assert at(fired, "next_fire_time") == slot + timedelta(hours=1)
    await reaches(client, run_id, WorkflowStatus.WORKFLOW_STATUS_COMPLETED)
    assert [w.id for w in (await client.list_workflows()).workflows] == [run_id]

    paused = await client.pause_schedule("hourly", reason="maintenance")
    assert paused.paused and paused.pause_reason == "maintenance"
    assert not paused.HasField("next_fire_time")
    await move_to(clock, slot + timedelta(hours=3, seconds=1), server, client)
    assert len((await client.get_schedule("hourly")).recent_fires) == 1  # nothing while paused

    resumed = await client.resume_schedule("hourly")
    assert not resumed.paused
    assert at(resumed, "next_fire_time") == slot + timedelta(hours=4)  # the paused slots: gone
    await move_to(clock, slot + timedelta(hours=4, seconds=1), server, client)
    assert [f.status for f in (await client.get_schedule("hourly")).recent_fires] == [STARTED] * 2

    # A day later (the window is 60 s): the slots meanwhile are one MISSED entry, the due one
    # fires, and slots settled more than a day ago are gone from the history.
    await move_to(clock, slot + timedelta(hours=28, seconds=1), server, client)
    later = await client.get_schedule("hourly")
    assert [(at(f, "slot_time") - slot, f.status) for f in later.recent_fires] == [
        (timedelta(hours=28), STARTED),
        (timedelta(hours=5), MISSED),
    ]
    assert "23 slot(s)" in later.recent_fires[1].message

    await client.delete_schedule("hourly")
    with pytest.raises(NotFoundError):
        await client.get_schedule("hourly")
    assert await client.list_schedules() == []
    await move_to(clock, slot + timedelta(hours=30, seconds=1), server, client)
    assert len((await client.list_workflows()).workflows) == 3  # its runs are kept; no new one


async def test_overlap_skip_skips_while_the_previous_run_waits_at_its_gate(
    server: SluiceServer, client: WorkflowClient, clock: ManualClock
) -> None:
    await client.create_template(GATED)
    slot = at(await client.create_schedule("gated", "gated", HOURLY), "next_fire_time")
    await move_to(clock, slot, server, client)
    first = (await client.get_schedule("gated")).last_workflow_id
    await reaches(client, first, WorkflowStatus.WORKFLOW_STATUS_PAUSED)
    await move_to(clock, slot + timedelta(hours=1), server, client)
    skipped = (await client.get_schedule("gated")).recent_fires[0]
    assert skipped.status == SKIPPED and not skipped.workflow_id
    assert first in skipped.message
    assert len((await client.list_workflows()).workflows) == 1

    approved = await client.approve_gate(first, "ok", approve=True, wait=True)
    assert approved.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
    await move_to(clock, slot + timedelta(hours=2), server, client)
    fires = (await client.get_schedule("gated")).recent_fires
    assert [f.status for f in fires] == [STARTED, SKIPPED, STARTED]
    assert fires[0].workflow_id not in ("", first)


async def test_overlap_cancel_previous_and_allow(
    server: SluiceServer, client: WorkflowClient, clock: ManualClock
) -> None:
    await client.create_template(GATED)
    cancel = await client.create_schedule("cancel", "gated", HOURLY, overlap="cancel_previous")
    await client.create_schedule("allow", "gated", HOURLY, overlap="allow")
    slot = at(cancel, "next_fire_time")
    await move_to(clock, slot, server, client)
    first = {s: (await client.get_schedule(s)).last_workflow_id for s in ("cancel", "allow")}
    await move_to(clock, slot + timedelta(hours=1), server, client)

    previous = await client.get_workflow(first["cancel"])
    assert previous.status == WorkflowStatus.WORKFLOW_STATUS_CANCELLED
    for schedule_id in ("cancel", "allow"):
        fires = (await client.get_schedule(schedule_id)).recent_fires
        assert [f.status for f in fires] == [STARTED, STARTED]
    allowed = await client.get_workflow(first["allow"])
    assert allowed.status != WorkflowStatus.WORKFLOW_STATUS_CANCELLED


async def test_after_downtime_slots_in_the_catch_up_window_fire_once_and_older_are_missed(
    start_server: ServerFactory, clock: ManualClock
) -> None:
    first = await start_server(clock=clock)
    async with WorkflowClient(first.address) as client:
        await client.create_template(QUICK)
        created = await client.create_schedule(
            "catch-up", "quick", HOURLY, overlap="allow", catchup_window=timedelta(hours=3)
        )
    await first.stop()
    slot = at(created, "next_fire_time")
    clock.advance(slot + timedelta(hours=4, minutes=30) - clock.now())  # down 4.5 h

    second = await start_server(clock=clock)
    async with WorkflowClient(second.address) as client:

        async def looked() -> schedule_pb2.Schedule | None:
            found = await client.get_schedule("catch-up")
            done = len(found.recent_fires) == 4
            return found if done and all(f.status != PENDING for f in found.recent_fires) else None

        schedule = await eventually(looked)
        fires = sorted(schedule.recent_fires, key=lambda f: f.slot_time.ToDatetime())
        assert [(at(f, "slot_time") - slot, f.status) for f in fires] == [
            (timedelta(hours=0), MISSED),
            (timedelta(hours=2), STARTED),
            (timedelta(hours=3), STARTED),
            (timedelta(hours=4), STARTED),
        ]
        assert "2 slot(s)" in fires[0].message
        runs = {f.workflow_id for f in fires[1:]}
        assert len(runs) == 3
        assert {w.id for w in (await client.list_workflows()).workflows} == runs
        assert at(schedule, "next_fire_time") == slot + timedelta(hours=5)


async def test_trigger_fires_now_under_the_overlap_policy(
    server: SluiceServer, client: WorkflowClient
) -> None:
    await client.create_template(GATED)
    await client.create_schedule("manual", "gated", "0 0 1 1 *", paused=True)
    fire = await client.trigger_schedule("manual")
    assert fire.status == STARTED and fire.triggered and fire.workflow_id
    await reaches(client, fire.workflow_id, WorkflowStatus.WORKFLOW_STATUS_PAUSED)
    again = await client.trigger_schedule("manual")
    assert again.status == SKIPPED and fire.workflow_id in again.message


async def test_bad_schedules_get_every_field_violation(
    server: SluiceServer, client: WorkflowClient
) -> None:
    await client.create_template(template("takes-one", step("a"), params=[{"name": "city"}]))
    with pytest.raises(InvalidArgumentError) as caught:
        await client.create_schedule(
            "Bad Id", "takes-one", "61 * * * *", time_zone="Mars/Olympus",
            params={"town": "Berlin"}, catchup_window=timedelta(days=400),
        )  # fmt: skip
    assert {v.field for v in caught.value.violations} == {"schedule.catchup_window"}
    with pytest.raises(InvalidArgumentError) as caught:
        await client.create_schedule(
            "Bad Id", "takes-one", "61 * * * *", time_zone="Mars/Olympus", params={"town": "B"}
        )
    assert {v.field for v in caught.value.violations} == {
        "schedule.schedule_id",
        "schedule.cron",
        "schedule.time_zone",
        "schedule.params.town",
    }
    with pytest.raises(InvalidArgumentError) as caught:
        await client.create_schedule("nope", "no-such-template", HOURLY)
    assert [v.field for v in caught.value.violations] == ["schedule.template_id"]
    with pytest.raises(InvalidArgumentError) as caught:
        await client.get_schedule("../x")
    assert [v.field for v in caught.value.violations] == ["schedule_id"]

    await client.create_schedule("once", "takes-one", HOURLY, params={"city": "Berlin"})
    with pytest.raises(AlreadyExistsError):
        await client.create_schedule("once", "takes-one", HOURLY, params={"city": "Berlin"})


async def test_another_users_schedule_is_not_found(start_server: ServerFactory) -> None:
    server = await start_server(auth_jwt_secret=SECRET)
    async with (
        WorkflowClient(server.address, token=token("alice")) as alice,
        WorkflowClient(server.address, token=token("bob")) as bob,
    ):
        await alice.create_template(QUICK)
        await alice.create_schedule("mine", "quick", HOURLY)
        for call in (
            bob.get_schedule("mine"),
            bob.update_schedule("mine", cron="0 0 * * *"),
            bob.pause_schedule("mine"),
            bob.resume_schedule("mine"),
            bob.trigger_schedule("mine"),
            bob.delete_schedule("mine"),
        ):
            with pytest.raises(NotFoundError):
                await call
        assert await bob.list_schedules() == []
        assert [s.schedule_id for s in await alice.list_schedules()] == ["mine"]
        # Bob may use the same id for a schedule of his own.
        await bob.create_template(QUICK)
        await bob.create_schedule("mine", "quick", HOURLY)


async def test_list_pages_through_every_schedule(
    server: SluiceServer, client: WorkflowClient
) -> None:
    await client.create_template(QUICK)
    ids = [f"s{i:03d}" for i in range(130)]  # more than a default page (100)
    for schedule_id in ids:
        await client.create_schedule(schedule_id, "quick", HOURLY, paused=True)
    assert [s.schedule_id for s in await client.list_schedules()] == ids


def test_the_sync_client_has_every_schedule_verb_alike() -> None:
    def verbs(cls: type) -> dict[str, inspect.Signature]:
        return {n: inspect.signature(m) for n, m in vars(cls).items()
                if callable(m) and not n.startswith("_")}  # fmt: skip

    asynchronous, blocking = verbs(ScheduleCalls), verbs(SyncScheduleCalls)
    assert sorted(asynchronous) == sorted(blocking)
    for name, signature in asynchronous.items():
        assert list(blocking[name].parameters.values()) == list(signature.parameters.values())
        assert inspect.getdoc(getattr(SyncScheduleCalls, name)) == inspect.getdoc(
            getattr(ScheduleCalls, name)
        ), name
    assert issubclass(SyncWorkflowClient, SyncScheduleCalls)
    assert issubclass(WorkflowClient, ScheduleCalls)


async def test_slots_claimed_before_a_crash_start_once_after_the_restart(
    start_server: ServerFactory, clock: ManualClock, database_url: str
) -> None:
    first = await start_server(clock=clock)
    async with WorkflowClient(first.address) as client:
        await client.create_template(QUICK)
        created = await client.create_schedule(
            "crash", "quick", HOURLY, overlap="allow", catchup_window=timedelta(hours=3)
        )
        slot = at(created, "next_fire_time")
        # What the crashed server did after its claim (below): it created slot 1's run, by
        # the slot's request id as the loop does, but neither started nor recorded it; it
        # never got to slot 2.
        made = await client.create_workflow("quick", request_id=run_request_id("crash", slot))
    await first.stop()

    # The claim, made by the store as a server's loop makes it, with no server running.
    clock.advance(slot + timedelta(hours=1, seconds=1) - clock.now())
    store = await open_store(database_url)
    try:
        claims = await SqlScheduleStore(store.executor).claim_due(clock.now(), plan_of, limit=10)
    finally:
        await store.close()
    assert [c.slot for c in claims] == [slot, slot + timedelta(hours=1)]
    clock.advance(timedelta(seconds=3))  # past the takeover delay below (PostgreSQL)

    second = await start_server(
        clock=clock, lease_ttl=timedelta(seconds=2), lease_renew=timedelta(seconds=0.5)
    )
    async with WorkflowClient(second.address) as client:

        async def settled() -> schedule_pb2.Schedule | None:
            found = await client.get_schedule("crash")
            return found if all(f.status == STARTED for f in found.recent_fires) else None

        fires = (await eventually(settled)).recent_fires
        assert [at(f, "slot_time") for f in fires] == [slot + timedelta(hours=1), slot]
        assert fires[1].workflow_id == made.id  # the run made before the crash, not a second
        runs = (await client.list_workflows()).workflows
        assert sorted(w.id for w in runs) == sorted(f.workflow_id for f in fires)
        for run in runs:
            await reaches(client, run.id, WorkflowStatus.WORKFLOW_STATUS_COMPLETED)


def test_the_client_readme_shows_every_schedule_verb() -> None:
    readme = (Path(__file__).resolve().parents[2] / "clients/python/README.md").read_text()
    section = readme.split("\n## Schedules\n", 1)[1]
    code = "\n".join(b.split("```", 1)[0] for b in section.split("```python\n")[1:])
    assert [v for v in vars(ScheduleCalls) if not v.startswith("_") and f".{v}(" not in code] == []


async def test_every_schedule_rpc_needs_a_token(start_server: ServerFactory) -> None:
    server = await start_server(auth_jwt_secret=SECRET)
    service = service_pb.DESCRIPTOR.services_by_name["ScheduleService"]
    requests = {
        "CreateSchedule": service_pb.CreateScheduleRequest(),
        "GetSchedule": service_pb.GetScheduleRequest(schedule_id="s"),
        "ListSchedules": service_pb.ListSchedulesRequest(),
        "UpdateSchedule": service_pb.UpdateScheduleRequest(),
        "PauseSchedule": service_pb.PauseScheduleRequest(schedule_id="s"),
        "ResumeSchedule": service_pb.ResumeScheduleRequest(schedule_id="s"),
        "DeleteSchedule": service_pb.DeleteScheduleRequest(schedule_id="s"),
        "TriggerSchedule": service_pb.TriggerScheduleRequest(schedule_id="s"),
    }
    assert set(requests) == {m.name for m in service.methods}
    forged = token("alice", key="another-secret-of-enough-length!!")
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = service_grpc.ScheduleServiceStub(channel)
        for name, request in requests.items():
            for metadata in ((), (("authorization", f"Bearer {forged}"),)):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await getattr(stub, name)(request, metadata=metadata)
                assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, name


async def test_update_changes_only_the_named_settings_and_checks_them(
    server: SluiceServer, client: WorkflowClient, clock: ManualClock
) -> None:
    await client.create_template(template("takes-one", step("a"), params=[{"name": "city"}]))
    created = await client.create_schedule(
        "report", "takes-one", HOURLY, params={"city": "Berlin"}, notify_on_completion=True
    )
    updated = await client.update_schedule(
        "report", cron="30 2 * * *", time_zone="Europe/Berlin", params={"city": "Lisbon"},
        auto_approve=True, description="nightly",
    )  # fmt: skip
    assert (updated.cron, updated.time_zone, updated.description) == (
        "30 2 * * *", "Europe/Berlin", "nightly",
    )  # fmt: skip
    assert dict(updated.params) == {"city": "Lisbon"}
    assert (updated.options.auto_approve, updated.options.notify_on_completion) == (True, True)
    assert updated.overlap_policy == created.overlap_policy  # not named: kept
    next_fire = at(updated, "next_fire_time")
    assert next_fire.astimezone(ZoneInfo("Europe/Berlin")).strftime("%H:%M") == "02:30"
    assert at(updated, "update_time") > at(created, "update_time")

    # The next slot runs with the new params.
    await move_to(clock, next_fire, server, client)
    run = await client.get_workflow((await client.get_schedule("report")).last_workflow_id)
    assert dict(run.params) == {"city": "Lisbon"}

    with pytest.raises(InvalidArgumentError) as caught:
        await client.update_schedule("report", cron="* *", params={"town": "Porto"})
    assert {v.field for v in caught.value.violations} == {"schedule.cron", "schedule.params.town"}
    with pytest.raises(InvalidArgumentError) as caught:
        await client.update_schedule("report")
    assert [v.field for v in caught.value.violations] == ["update_mask"]
    request = service_pb.UpdateScheduleRequest(schedule=schedule_pb2.Schedule(schedule_id="report"))
    request.update_mask.paths.append("paused")
    async with grpc.aio.insecure_channel(server.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await service_grpc.ScheduleServiceStub(channel).UpdateSchedule(request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "update_mask.paths[0]" in (refused.value.details() or "")
    with pytest.raises(NotFoundError):
        await client.update_schedule("no-such", cron=HOURLY)
    assert (await client.get_schedule("report")).cron == "30 2 * * *"  # refused: unchanged
