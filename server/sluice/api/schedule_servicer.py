"""sluice.v1.ScheduleService: request checks and conversions around the schedule use cases."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import grpc

from sluice.api import convert
from sluice.api.auth import current_user
from sluice.api.errors import rpc
from sluice.api.requests import Checks, decode_cursor, encode_cursor
from sluice.engine.schedule_service import Schedules
from sluice.engine.schedules import (
    DEFAULT_CATCHUP,
    MAX_CATCHUP,
    SCHEDULE_ID,
    Fire,
    FireStatus,
    OverlapPolicy,
    Schedule,
)
from sluice.v1 import schedule_pb2
from sluice.v1 import schedule_service_pb2 as pb
from sluice.v1 import schedule_service_pb2_grpc as pb_grpc

Context = grpc.aio.ServicerContext[Any, Any]

_OVERLAP = {
    schedule_pb2.OVERLAP_POLICY_UNSPECIFIED: OverlapPolicy.SKIP,
    schedule_pb2.OVERLAP_POLICY_SKIP: OverlapPolicy.SKIP,
    schedule_pb2.OVERLAP_POLICY_ALLOW: OverlapPolicy.ALLOW,
    schedule_pb2.OVERLAP_POLICY_CANCEL_PREVIOUS: OverlapPolicy.CANCEL_PREVIOUS,
}
_OVERLAP_TO_PROTO = {
    OverlapPolicy.SKIP: schedule_pb2.OVERLAP_POLICY_SKIP,
    OverlapPolicy.ALLOW: schedule_pb2.OVERLAP_POLICY_ALLOW,
    OverlapPolicy.CANCEL_PREVIOUS: schedule_pb2.OVERLAP_POLICY_CANCEL_PREVIOUS,
}
_FIRE_STATUS = {s: schedule_pb2.ScheduleFireStatus.Value(f"SCHEDULE_FIRE_STATUS_{s.value}")
                for s in FireStatus}  # fmt: skip
_LIST_FILTERS = "schedules"
# UpdateSchedule's mask paths (proto names) -> the domain's names.
_UPDATABLE = {
    "description": "description",
    "template_id": "template_id",
    "template_version": "template_version",
    "params": "params",
    "cron": "cron",
    "time_zone": "time_zone",
    "overlap_policy": "overlap",
    "catchup_window": "catchup_window",
    "options": "options",
}
_PATH_NAMES = ", ".join(_UPDATABLE)


class ScheduleServicer(pb_grpc.ScheduleServiceServicer):
    def __init__(self, schedules: Schedules) -> None:
        self._schedules = schedules

    @rpc
    async def CreateSchedule(
        self, request: pb.CreateScheduleRequest, context: Context
    ) -> pb.CreateScheduleResponse:
        checks = Checks()
        if not request.HasField("schedule"):
            checks.add("schedule", "is required")
        checks.done()
        stored = await self._schedules.create(_from_proto(request.schedule, checks))
        return pb.CreateScheduleResponse(schedule=to_proto(stored))

    @rpc
    async def GetSchedule(
        self, request: pb.GetScheduleRequest, context: Context
    ) -> pb.GetScheduleResponse:
        _check_id(request.schedule_id)
        found = await self._schedules.get(current_user(), request.schedule_id)
        return pb.GetScheduleResponse(schedule=to_proto(found))

    @rpc
    async def ListSchedules(
        self, request: pb.ListSchedulesRequest, context: Context
    ) -> pb.ListSchedulesResponse:
        checks = Checks()
        checks.page_size(request.page_size)
        after = decode_cursor(request.page_token, _LIST_FILTERS, checks)
        checks.done()
        size = request.page_size or 100
        found = await self._schedules.list(
            current_user(), limit=size + 1, after=after[1] if after else ""
        )
        response = pb.ListSchedulesResponse(schedules=[to_proto(s) for s in found[:size]])
        if len(found) > size:
            last = found[size - 1]
            assert last.created_at is not None
            response.next_page_token = encode_cursor((last.created_at, last.id), _LIST_FILTERS)
        return response

    @rpc
    async def UpdateSchedule(
        self, request: pb.UpdateScheduleRequest, context: Context
    ) -> pb.UpdateScheduleResponse:
        checks = Checks()
        if not SCHEDULE_ID.match(request.schedule.schedule_id):
            checks.add("schedule.schedule_id", "must be the id of one of your schedules")
        paths = list(request.update_mask.paths)
        if not paths:
            checks.add("update_mask", f"is required: name the fields to change ({_PATH_NAMES})")
        for i, path in enumerate(paths):
            if path not in _UPDATABLE:
                checks.add(f"update_mask.paths[{i}]", f"must be one of {_PATH_NAMES}")
        checks.done()
        proposed = _from_proto(request.schedule, checks)
        changes = {_UPDATABLE[p]: getattr(proposed, _UPDATABLE[p]) for p in paths}
        changed = await self._schedules.update(current_user(), proposed.id, changes)
        return pb.UpdateScheduleResponse(schedule=to_proto(changed))

    @rpc
    async def PauseSchedule(
        self, request: pb.PauseScheduleRequest, context: Context
    ) -> pb.PauseScheduleResponse:
        _check_id(request.schedule_id, reason=request.reason)
        found = await self._schedules.pause(current_user(), request.schedule_id, request.reason)
        return pb.PauseScheduleResponse(schedule=to_proto(found))

    @rpc
    async def ResumeSchedule(
        self, request: pb.ResumeScheduleRequest, context: Context
    ) -> pb.ResumeScheduleResponse:
        _check_id(request.schedule_id)
        found = await self._schedules.resume(current_user(), request.schedule_id)
        return pb.ResumeScheduleResponse(schedule=to_proto(found))

    @rpc
    async def DeleteSchedule(
        self, request: pb.DeleteScheduleRequest, context: Context
    ) -> pb.DeleteScheduleResponse:
        _check_id(request.schedule_id)
        await self._schedules.delete(current_user(), request.schedule_id)
        return pb.DeleteScheduleResponse()

    @rpc
    async def TriggerSchedule(
        self, request: pb.TriggerScheduleRequest, context: Context
    ) -> pb.TriggerScheduleResponse:
        _check_id(request.schedule_id)
        found, fire = await self._schedules.trigger(current_user(), request.schedule_id)
        return pb.TriggerScheduleResponse(schedule=to_proto(found), fire=_fire_to_proto(fire))


def _check_id(schedule_id: str, *, reason: str = "") -> None:
    checks = Checks()
    if not SCHEDULE_ID.match(schedule_id):
        checks.add("schedule_id", "must be the id of one of your schedules")
    checks.text("reason", reason)
    checks.done()


def _from_proto(message: schedule_pb2.Schedule, checks: Checks) -> Schedule:
    """A domain schedule from the caller's fields (output-only ones ignored); problems the
    proto alone shows are reported with the schedule's own (`Schedules.create`)."""
    overlap = _OVERLAP.get(message.overlap_policy)
    if overlap is None:
        checks.add(
            "schedule.overlap_policy",
            "must be OVERLAP_POLICY_SKIP, OVERLAP_POLICY_ALLOW or OVERLAP_POLICY_CANCEL_PREVIOUS",
        )
    window = DEFAULT_CATCHUP
    if message.HasField("catchup_window"):
        seconds = message.catchup_window.seconds + message.catchup_window.nanos / 1e9
        if not 0 <= seconds <= MAX_CATCHUP.total_seconds():
            checks.add("schedule.catchup_window", "must be between 0 and 366 days")
        else:
            window = timedelta(seconds=seconds)
    checks.text("schedule.description", message.description)
    checks.text("schedule.cron", message.cron, 200)
    checks.done()
    return Schedule(
        owner=current_user(),
        id=message.schedule_id,
        description=message.description,
        template_id=message.template_id,
        template_version=message.template_version,
        params=convert.struct_to_dict(message.params),
        cron=message.cron,
        time_zone=message.time_zone or "UTC",
        overlap=overlap or OverlapPolicy.SKIP,
        catchup_window=window,
        options=convert.options_from_proto(message.options),
        paused=message.paused,
    )


def to_proto(s: Schedule) -> schedule_pb2.Schedule:
    message = schedule_pb2.Schedule(
        schedule_id=s.id,
        description=s.description,
        template_id=s.template_id,
        template_version=s.template_version,
        cron=s.cron,
        time_zone=s.time_zone,
        overlap_policy=_OVERLAP_TO_PROTO[s.overlap],
        paused=s.paused,
        pause_reason=s.pause_reason,
        last_workflow_id=s.last_run_id,
        recent_fires=[_fire_to_proto(f) for f in s.recent],
    )
    convert.dict_to_struct(s.params, message.params)
    message.catchup_window.FromTimedelta(s.catchup_window)
    message.options.auto_approve = s.options.auto_approve
    message.options.notify_on_completion = s.options.notify_on_completion
    for field, value in (
        ("next_fire_time", s.next_fire_at),
        ("last_fire_time", s.last_fire_at),
        ("create_time", s.created_at),
        ("update_time", s.updated_at),
    ):
        if value is not None:
            getattr(message, field).FromDatetime(value)
    return message


def _fire_to_proto(f: Fire) -> schedule_pb2.ScheduleFire:
    message = schedule_pb2.ScheduleFire(
        status=_FIRE_STATUS[f.status],
        workflow_id=f.run_id,
        message=f.message,
        triggered=f.triggered,
    )
    message.slot_time.FromDatetime(f.slot)
    message.record_time.FromDatetime(f.recorded_at)
    return message
