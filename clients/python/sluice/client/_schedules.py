"""Schedule verbs (sluice.v1.ScheduleService), mixed into WorkflowClient and
SyncWorkflowClient: one connection serves both services."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any, Literal, TypeVar, cast

from sluice.v1 import schedule_pb2, workflow_pb2
from sluice.v1 import schedule_service_pb2 as pb
from sluice.v1 import schedule_service_pb2_grpc as pb_grpc

T = TypeVar("T")
Overlap = Literal["skip", "allow", "cancel_previous"]

_OVERLAP: dict[str, schedule_pb2.OverlapPolicy.ValueType] = {
    "skip": schedule_pb2.OVERLAP_POLICY_SKIP,
    "allow": schedule_pb2.OVERLAP_POLICY_ALLOW,
    "cancel_previous": schedule_pb2.OVERLAP_POLICY_CANCEL_PREVIOUS,
}


def schedule_message(
    schedule_id: str,
    template_id: str,
    cron: str,
    *,
    params: Mapping[str, Any] | None,
    time_zone: str,
    overlap: Overlap,
    catchup_window: timedelta | None,
    template_version: int,
    auto_approve: bool,
    notify_on_completion: bool,
    paused: bool,
    description: str,
) -> schedule_pb2.Schedule:
    if overlap not in _OVERLAP:
        raise ValueError(f"overlap must be one of {', '.join(_OVERLAP)}, not {overlap!r}")
    message = schedule_pb2.Schedule(
        schedule_id=schedule_id,
        template_id=template_id,
        template_version=template_version,
        cron=cron,
        time_zone=time_zone,
        overlap_policy=_OVERLAP[overlap],
        options=workflow_pb2.ExecutionOptions(
            auto_approve=auto_approve, notify_on_completion=notify_on_completion
        ),
        paused=paused,
        description=description,
    )
    if params:
        message.params.update(dict(params))
    if catchup_window is not None:
        message.catchup_window.FromTimedelta(catchup_window)
    return message


async def update_request(
    calls: ScheduleCalls,
    schedule_id: str,
    *,
    cron: str | None,
    time_zone: str | None,
    params: Mapping[str, Any] | None,
    overlap: Overlap | None,
    catchup_window: timedelta | None,
    template_id: str | None,
    template_version: int | None,
    auto_approve: bool | None,
    notify_on_completion: bool | None,
    description: str | None,
    timeout: float | None,
) -> pb.UpdateScheduleRequest:
    """An UpdateSchedule request naming the settings given. The server changes both options
    at once: one given alone is sent with the other's current value."""
    message = schedule_pb2.Schedule(schedule_id=schedule_id)
    paths: list[str] = []
    for path, value in (
        ("cron", cron),
        ("time_zone", time_zone),
        ("template_id", template_id),
        ("template_version", template_version),
        ("description", description),
    ):
        if value is not None:
            setattr(message, path, value)
            paths.append(path)
    if params is not None:
        message.params.update(dict(params))
        paths.append("params")
    if overlap is not None:
        if overlap not in _OVERLAP:
            raise ValueError(f"overlap must be one of {', '.join(_OVERLAP)}, not {overlap!r}")
        message.overlap_policy = _OVERLAP[overlap]
        paths.append("overlap_policy")
    if catchup_window is not None:
        message.catchup_window.FromTimedelta(catchup_window)
        paths.append("catchup_window")
    if auto_approve is not None or notify_on_completion is not None:
        if auto_approve is None or notify_on_completion is None:
            current = (await calls.get_schedule(schedule_id, timeout=timeout)).options
            auto_approve = current.auto_approve if auto_approve is None else auto_approve
            if notify_on_completion is None:
                notify_on_completion = current.notify_on_completion
        message.options.auto_approve = auto_approve
        message.options.notify_on_completion = notify_on_completion
        paths.append("options")
    request = pb.UpdateScheduleRequest(schedule=message)
    request.update_mask.paths.extend(paths)
    return request


class ScheduleCalls:
    """The schedule verbs of WorkflowClient."""

    @property
    def _schedule_stub(self) -> pb_grpc.ScheduleServiceStub:
        stub: pb_grpc.ScheduleServiceStub | None = self.__dict__.get("_schedule_stub_")
        if stub is None:
            channel = getattr(self, "_channel")  # noqa: B009 (the client's)
            stub = self.__dict__["_schedule_stub_"] = pb_grpc.ScheduleServiceStub(channel)
        return stub

    async def _schedule_call(self, method: Any, request: Any, timeout: float | None) -> Any:
        """The client's `_call`: its metadata, and its errors."""
        call: Callable[..., Awaitable[Any]] = getattr(self, "_call")  # noqa: B009
        return await call(method, request, timeout)

    async def create_schedule(
        self,
        schedule_id: str,
        template_id: str,
        cron: str,
        *,
        params: Mapping[str, Any] | None = None,
        time_zone: str = "UTC",
        overlap: Overlap = "skip",
        catchup_window: timedelta | None = None,
        template_version: int = 0,
        auto_approve: bool = False,
        notify_on_completion: bool = False,
        paused: bool = False,
        description: str = "",
        timeout: float | None = None,
    ) -> schedule_pb2.Schedule:
        """Create a schedule that starts a run of `template_id` at every slot of `cron` (5
        fields, or 6 with seconds first) in `time_zone`. `overlap`: what a slot does while
        the previous run has not ended ("skip", "allow", "cancel_previous");
        `catchup_window`: how late a slot missed during downtime may still fire (None: 60 s).
        Returns it with its next fire time."""
        message = schedule_message(
            schedule_id, template_id, cron, params=params, time_zone=time_zone,
            overlap=overlap, catchup_window=catchup_window, template_version=template_version,
            auto_approve=auto_approve, notify_on_completion=notify_on_completion,
            paused=paused, description=description,
        )  # fmt: skip
        request = pb.CreateScheduleRequest(schedule=message)
        response = await self._schedule_call(self._schedule_stub.CreateSchedule, request, timeout)
        return response.schedule  # type: ignore[no-any-return]

    async def get_schedule(
        self, schedule_id: str, *, timeout: float | None = None
    ) -> schedule_pb2.Schedule:
        """One schedule with its latest slots (recent_fires, newest first)."""
        request = pb.GetScheduleRequest(schedule_id=schedule_id)
        response = await self._schedule_call(self._schedule_stub.GetSchedule, request, timeout)
        return response.schedule  # type: ignore[no-any-return]

    async def list_schedules(self, *, timeout: float | None = None) -> list[schedule_pb2.Schedule]:
        """Every schedule of the caller, by id (every page)."""
        found: list[schedule_pb2.Schedule] = []
        token = ""
        while True:
            request = pb.ListSchedulesRequest(page_token=token)
            response = await self._schedule_call(
                self._schedule_stub.ListSchedules, request, timeout
            )
            found.extend(response.schedules)
            token = response.next_page_token
            if not token:
                return found

    async def update_schedule(
        self,
        schedule_id: str,
        *,
        cron: str | None = None,
        time_zone: str | None = None,
        params: Mapping[str, Any] | None = None,
        overlap: Overlap | None = None,
        catchup_window: timedelta | None = None,
        template_id: str | None = None,
        template_version: int | None = None,
        auto_approve: bool | None = None,
        notify_on_completion: bool | None = None,
        description: str | None = None,
        timeout: float | None = None,
    ) -> schedule_pb2.Schedule:
        """Change the settings given (not None) of a schedule; the others keep their values.
        A new cron or time zone counts from the first slot after now. Returns it changed."""
        request = await update_request(
            self, schedule_id, cron=cron, time_zone=time_zone, params=params,
            overlap=overlap, catchup_window=catchup_window, template_id=template_id,
            template_version=template_version, auto_approve=auto_approve,
            notify_on_completion=notify_on_completion, description=description,
            timeout=timeout,
        )  # fmt: skip
        response = await self._schedule_call(self._schedule_stub.UpdateSchedule, request, timeout)
        return response.schedule  # type: ignore[no-any-return]

    async def pause_schedule(
        self, schedule_id: str, *, reason: str = "", timeout: float | None = None
    ) -> schedule_pb2.Schedule:
        """Stop a schedule firing until resume_schedule; runs already started go on."""
        request = pb.PauseScheduleRequest(schedule_id=schedule_id, reason=reason)
        response = await self._schedule_call(self._schedule_stub.PauseSchedule, request, timeout)
        return response.schedule  # type: ignore[no-any-return]

    async def resume_schedule(
        self, schedule_id: str, *, timeout: float | None = None
    ) -> schedule_pb2.Schedule:
        """Resume a paused schedule from the first slot after now."""
        request = pb.ResumeScheduleRequest(schedule_id=schedule_id)
        response = await self._schedule_call(self._schedule_stub.ResumeSchedule, request, timeout)
        return response.schedule  # type: ignore[no-any-return]

    async def delete_schedule(self, schedule_id: str, *, timeout: float | None = None) -> None:
        """Delete a schedule and its slot history; the runs it started are kept."""
        request = pb.DeleteScheduleRequest(schedule_id=schedule_id)
        await self._schedule_call(self._schedule_stub.DeleteSchedule, request, timeout)

    async def trigger_schedule(
        self, schedule_id: str, *, timeout: float | None = None
    ) -> schedule_pb2.ScheduleFire:
        """Fire a schedule now, once, under its overlap policy; what became of the slot."""
        request = pb.TriggerScheduleRequest(schedule_id=schedule_id)
        response = await self._schedule_call(self._schedule_stub.TriggerSchedule, request, timeout)
        return response.fire  # type: ignore[no-any-return]


class SyncScheduleCalls:
    """The schedule verbs of SyncWorkflowClient: ScheduleCalls' on the client's loop."""

    _run: Callable[[Awaitable[Any]], Any]

    @property
    def _calls(self) -> ScheduleCalls:
        return cast(ScheduleCalls, getattr(self, "_client"))  # noqa: B009 (set by the client)

    def create_schedule(
        self,
        schedule_id: str,
        template_id: str,
        cron: str,
        *,
        params: Mapping[str, Any] | None = None,
        time_zone: str = "UTC",
        overlap: Overlap = "skip",
        catchup_window: timedelta | None = None,
        template_version: int = 0,
        auto_approve: bool = False,
        notify_on_completion: bool = False,
        paused: bool = False,
        description: str = "",
        timeout: float | None = None,
    ) -> schedule_pb2.Schedule:
        """Create a schedule that starts a run of `template_id` at every slot of `cron` (5
        fields, or 6 with seconds first) in `time_zone`. `overlap`: what a slot does while
        the previous run has not ended ("skip", "allow", "cancel_previous");
        `catchup_window`: how late a slot missed during downtime may still fire (None: 60 s).
        Returns it with its next fire time."""
        return self._run(  # type: ignore[no-any-return]
            self._calls.create_schedule(
                schedule_id, template_id, cron, params=params, time_zone=time_zone,
                overlap=overlap, catchup_window=catchup_window,
                template_version=template_version, auto_approve=auto_approve,
                notify_on_completion=notify_on_completion, paused=paused,
                description=description, timeout=timeout,
            )
        )  # fmt: skip

    def get_schedule(
        self, schedule_id: str, *, timeout: float | None = None
    ) -> schedule_pb2.Schedule:
        """One schedule with its latest slots (recent_fires, newest first)."""
        return self._run(self._calls.get_schedule(schedule_id, timeout=timeout))  # type: ignore[no-any-return]

    def list_schedules(self, *, timeout: float | None = None) -> list[schedule_pb2.Schedule]:
        """Every schedule of the caller, by id (every page)."""
        return self._run(self._calls.list_schedules(timeout=timeout))  # type: ignore[no-any-return]

    def update_schedule(
        self,
        schedule_id: str,
        *,
        cron: str | None = None,
        time_zone: str | None = None,
        params: Mapping[str, Any] | None = None,
        overlap: Overlap | None = None,
        catchup_window: timedelta | None = None,
        template_id: str | None = None,
        template_version: int | None = None,
        auto_approve: bool | None = None,
        notify_on_completion: bool | None = None,
        description: str | None = None,
        timeout: float | None = None,
    ) -> schedule_pb2.Schedule:
        """Change the settings given (not None) of a schedule; the others keep their values.
        A new cron or time zone counts from the first slot after now. Returns it changed."""
        return self._run(  # type: ignore[no-any-return]
            self._calls.update_schedule(
                schedule_id, cron=cron, time_zone=time_zone, params=params, overlap=overlap,
                catchup_window=catchup_window, template_id=template_id,
                template_version=template_version, auto_approve=auto_approve,
                notify_on_completion=notify_on_completion, description=description,
                timeout=timeout,
            )
        )  # fmt: skip

    def pause_schedule(
        self, schedule_id: str, *, reason: str = "", timeout: float | None = None
    ) -> schedule_pb2.Schedule:
        """Stop a schedule firing until resume_schedule; runs already started go on."""
        return self._run(  # type: ignore[no-any-return]
            self._calls.pause_schedule(schedule_id, reason=reason, timeout=timeout)
        )

    def resume_schedule(
        self, schedule_id: str, *, timeout: float | None = None
    ) -> schedule_pb2.Schedule:
        """Resume a paused schedule from the first slot after now."""
        return self._run(self._calls.resume_schedule(schedule_id, timeout=timeout))  # type: ignore[no-any-return]

    def delete_schedule(self, schedule_id: str, *, timeout: float | None = None) -> None:
        """Delete a schedule and its slot history; the runs it started are kept."""
        self._run(self._calls.delete_schedule(schedule_id, timeout=timeout))

    def trigger_schedule(
        self, schedule_id: str, *, timeout: float | None = None
    ) -> schedule_pb2.ScheduleFire:
        """Fire a schedule now, once, under its overlap policy; what became of the slot."""
        return self._run(self._calls.trigger_schedule(schedule_id, timeout=timeout))  # type: ignore[no-any-return]
