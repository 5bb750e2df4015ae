"""sluice.v1.WorkflowService: request checks and conversions around the use cases. No rules."""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Any, Protocol, TypeVar

import grpc

from sluice.api import convert, pages
from sluice.api.auth import current_user
from sluice.api.errors import rpc
from sluice.api.requests import (
    MAX_REQUEST_ID,
    MAX_STEP_ID,
    Checks,
    decode_cursor,
    decode_offset,
    decode_sequence,
    encode_cursor,
    encode_offset,
    encode_sequence,
    fingerprint,
    request_hash,
)
from sluice.api.watch_limit import WatchLimit
from sluice.engine import analytics
from sluice.engine.model import Event, EventType, Run, RunStatus
from sluice.engine.ports import Clock, RunFilter
from sluice.engine.service import Workflows
from sluice.engine.validation import enum_names
from sluice.v1 import workflow_pb2
from sluice.v1 import workflow_service_pb2 as pb
from sluice.v1 import workflow_service_pb2_grpc as pb_grpc

Context = grpc.aio.ServicerContext[Any, Any]
_STATUS_NAMES = f"one of {enum_names('WORKFLOW_STATUS_', RunStatus)}"

_EVENT_TYPE_NAMES = f"one of {enum_names('EVENT_TYPE_', EventType)}"


class _CarriesWorkflow(Protocol):
    @property
    def workflow(self) -> workflow_pb2.Workflow: ...


R = TypeVar("R", bound=_CarriesWorkflow)


class WorkflowServicer(pb_grpc.WorkflowServiceServicer):
    def __init__(
        self,
        workflows: Workflows,
        clock: Clock,
        *,
        watch_limit: WatchLimit,
        max_message_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self._workflows = workflows
        self._max_message_bytes = max_message_bytes
        self._engine = workflows.engine
        self._catalog = workflows.catalog
        self._clock = clock
        self._responses = _WatchResponses()
        self._watch_limit = watch_limit

    def _reply(self, response_type: type[R], run: Run) -> R:
        """A reply carrying the run, built in place."""
        response = response_type()
        convert.run_to_proto(run, self._clock.now(), into=response.workflow)
        return response

    # --- templates ------------------------------------------------------------------------------

    @rpc
    async def ListTemplates(
        self, request: pb.ListTemplatesRequest, context: Context
    ) -> pb.ListTemplatesResponse:
        window = _offset_window(request)
        templates = await self._catalog.list(current_user())
        return pb.ListTemplatesResponse(
            templates=[convert.template_to_proto(t) for t in templates[window]],
            next_page_token=_token_after(window, len(templates)),
        )

    @rpc
    async def GetTemplate(
        self, request: pb.GetTemplateRequest, context: Context
    ) -> pb.GetTemplateResponse:
        checks = Checks()
        checks.template_id(request.template_id)
        if request.version < 0:
            checks.add("version", "must be 0 (latest) or a version number")
        checks.done()
        template = await self._catalog.get(current_user(), request.template_id, request.version)
        return pb.GetTemplateResponse(template=convert.template_to_proto(template))

    @rpc
    async def CreateTemplate(
        self, request: pb.CreateTemplateRequest, context: Context
    ) -> pb.CreateTemplateResponse:
        checks = Checks()
        if not request.HasField("template"):
            checks.add("template", "is required")
        checks.done()
        template = convert.template_from_proto(request.template)
        stored = await self._catalog.register(current_user(), template)
        return pb.CreateTemplateResponse(template=convert.template_to_proto(stored))

    @rpc
    async def DeleteTemplate(
        self, request: pb.DeleteTemplateRequest, context: Context
    ) -> pb.DeleteTemplateResponse:
        checks = Checks()
        checks.template_id(request.template_id)
        if request.version < 0:
            checks.add("version", "must be 0 (every version) or a version number")
        checks.done()
        deleted = await self._catalog.delete(current_user(), request.template_id, request.version)
        return pb.DeleteTemplateResponse(deleted_versions=deleted)

    @rpc
    async def ValidateTemplate(
        self, request: pb.ValidateTemplateRequest, context: Context
    ) -> pb.ValidateTemplateResponse:
        violations = self._catalog.validate(convert.template_from_proto(request.template))
        return pb.ValidateTemplateResponse(
            valid=not violations,
            violations=[
                pb.TemplateViolation(field=v.field, description=v.description) for v in violations
            ],
        )

    @rpc
    async def ListStepTypes(
        self, request: pb.ListStepTypesRequest, context: Context
    ) -> pb.ListStepTypesResponse:
        window = _offset_window(request)
        types = self._catalog.step_types()
        return pb.ListStepTypesResponse(
            step_types=[convert.step_type_to_proto(t) for t in types[window]],
            next_page_token=_token_after(window, len(types)),
        )

    # --- runs -----------------------------------------------------------------------------------

    @rpc
    async def CreateWorkflow(
        self, request: pb.CreateWorkflowRequest, context: Context
    ) -> pb.CreateWorkflowResponse:
        checks = Checks()
        source = request.WhichOneof("source")
        if source is None:
            checks.add("template_id", "is required (or send a template inline)")
        elif source == "template_id":
            checks.template_id(request.template_id)
        if request.template_version < 0:
            checks.add("template_version", "must be 0 (latest) or a version number")
        checks.text("request_id", request.request_id, MAX_REQUEST_ID)
        checks.done()
        run = await self._workflows.create(
            current_user(),
            template_id=request.template_id,
            inline=convert.template_from_proto(request.template) if source == "template" else None,
            version=request.template_version,
            params=convert.struct_to_dict(request.params),
            request_id=request.request_id,
            request_hash=request_hash(request),
        )
        return self._reply(pb.CreateWorkflowResponse, run)

    @rpc
    async def ExecuteWorkflow(
        self, request: pb.ExecuteWorkflowRequest, context: Context
    ) -> pb.ExecuteWorkflowResponse:
        checks = Checks()
        checks.workflow_id(request.workflow_id)
        checks.text("request_id", request.request_id, MAX_REQUEST_ID)
        checks.done()
        run = await self._engine.execute(
            current_user(),
            request.workflow_id,
            convert.options_from_proto(request.options),
            wait=request.wait,
            request_id=request.request_id,
            request_hash=request_hash(request, "wait"),
        )
        return self._reply(pb.ExecuteWorkflowResponse, run)

    @rpc
    async def GetWorkflow(
        self, request: pb.GetWorkflowRequest, context: Context
    ) -> pb.GetWorkflowResponse:
        _check_id(request.workflow_id)
        run = await self._engine.get_run(current_user(), request.workflow_id)
        return self._reply(pb.GetWorkflowResponse, run)

    @rpc
    async def ListWorkflows(
        self, request: pb.ListWorkflowsRequest, context: Context
    ) -> pb.ListWorkflowsResponse:
        checks = Checks()
        checks.page_size(request.page_size)
        statuses = []
        for i, value in enumerate(request.statuses):
            status = convert.run_status_from_proto(value)
            if status is None:
                checks.add(f"statuses[{i}]", f"must be {_STATUS_NAMES}")
            elif status not in statuses:
                statuses.append(status)
        if request.template_id:
            checks.template_id(request.template_id)
        full = request.view == pb.WORKFLOW_VIEW_FULL
        if request.view not in (
            pb.WORKFLOW_VIEW_UNSPECIFIED, pb.WORKFLOW_VIEW_BASIC, pb.WORKFLOW_VIEW_FULL
        ):  # fmt: skip
            checks.add("view", "must be WORKFLOW_VIEW_BASIC or WORKFLOW_VIEW_FULL")
        start = checks.timestamp(request, "create_time_start")
        end = checks.timestamp(request, "create_time_end")
        if start is not None and end is not None and start >= end:
            checks.add("create_time_end", "must be later than create_time_start")
        where = RunFilter(tuple(statuses), request.template_id, start, end)
        filters = fingerprint(
            sorted(s.value for s in statuses), request.template_id, full, start, end
        )
        after = decode_cursor(request.page_token, filters, checks)
        checks.done()
        page = await self._workflows.list(
            current_user(), where, limit=request.page_size or 50, after=after, outputs=full
        )
        response = pb.ListWorkflowsResponse()
        now = self._clock.now()
        sent = pages.fill(
            response.workflows,
            page.runs,
            lambda run, into: convert.run_to_proto(run, now, into=into, full=full),
            self._max_message_bytes,
        )
        next_cursor = page.next_cursor
        if sent < len(page.runs):
            last = page.runs[sent - 1]
            next_cursor = (last.created_at, last.id)
        if next_cursor is not None:
            response.next_page_token = encode_cursor(next_cursor, filters)
        return response

    @rpc
    async def DeleteWorkflow(
        self, request: pb.DeleteWorkflowRequest, context: Context
    ) -> pb.DeleteWorkflowResponse:
        _check_id(request.workflow_id)
        await self._engine.delete(current_user(), request.workflow_id)
        return pb.DeleteWorkflowResponse()

    @rpc
    async def PauseWorkflow(
        self, request: pb.PauseWorkflowRequest, context: Context
    ) -> pb.PauseWorkflowResponse:
        _check_id(request.workflow_id, reason=request.reason)
        run = await self._engine.pause(current_user(), request.workflow_id, request.reason)
        return self._reply(pb.PauseWorkflowResponse, run)

    @rpc
    async def ResumeWorkflow(
        self, request: pb.ResumeWorkflowRequest, context: Context
    ) -> pb.ResumeWorkflowResponse:
        checks = Checks()
        checks.workflow_id(request.workflow_id)
        single = [f for f in ("auto_approve", "notify_on_completion") if request.HasField(f)]
        if request.HasField("options") and single:
            checks.add(
                single[0],
                "set either options (replaces both) or auto_approve / notify_on_completion "
                "(changes one), not both",
            )
        checks.done()
        options = (
            convert.options_from_proto(request.options) if request.HasField("options") else None
        )
        run = await self._engine.resume(
            current_user(),
            request.workflow_id,
            options,
            auto_approve=request.auto_approve if request.HasField("auto_approve") else None,
            notify_on_completion=(
                request.notify_on_completion if request.HasField("notify_on_completion") else None
            ),
            wait=request.wait,
        )
        return self._reply(pb.ResumeWorkflowResponse, run)

    @rpc
    async def CancelWorkflow(
        self, request: pb.CancelWorkflowRequest, context: Context
    ) -> pb.CancelWorkflowResponse:
        _check_id(request.workflow_id, reason=request.reason)
        run = await self._engine.cancel(current_user(), request.workflow_id, request.reason)
        return self._reply(pb.CancelWorkflowResponse, run)

    @rpc
    async def ApproveGate(
        self, request: pb.ApproveGateRequest, context: Context
    ) -> pb.ApproveGateResponse:
        checks = Checks()
        checks.workflow_id(request.workflow_id)
        checks.gate_id(request.gate_id)
        checks.text("comment", request.comment)
        checks.done()
        run = await self._engine.decide_gate(
            current_user(),
            request.workflow_id,
            request.gate_id,
            approve=request.approve,
            comment=request.comment,
            wait=request.wait,
        )
        return self._reply(pb.ApproveGateResponse, run)

    @rpc
    async def RerunWorkflow(
        self, request: pb.RerunWorkflowRequest, context: Context
    ) -> pb.RerunWorkflowResponse:
        checks = Checks()
        checks.workflow_id(request.workflow_id)
        checks.text("from_step_id", request.from_step_id, MAX_STEP_ID)
        checks.text("request_id", request.request_id, MAX_REQUEST_ID)
        checks.done()
        run = await self._workflows.rerun(
            current_user(),
            request.workflow_id,
            from_step=request.from_step_id,
            options=(
                convert.options_from_proto(request.options) if request.HasField("options") else None
            ),
            wait=request.wait,
            request_id=request.request_id,
            request_hash=request_hash(request, "wait"),
        )
        return self._reply(pb.RerunWorkflowResponse, run)

    @rpc
    async def RetryStep(
        self, request: pb.RetryStepRequest, context: Context
    ) -> pb.RetryStepResponse:
        checks = Checks()
        checks.workflow_id(request.workflow_id)
        if not request.step_id:
            checks.add("step_id", "is required")
        checks.text("step_id", request.step_id, MAX_STEP_ID)
        checks.done()
        run = await self._engine.retry_step(current_user(), request.workflow_id, request.step_id)
        return self._reply(pb.RetryStepResponse, run)

    @rpc
    # grpc.aio takes a coroutine that sends with context.write as well as an async generator
    # (the generated stub only describes the latter): no generator layer per message.
    async def WatchWorkflow(  # type: ignore[override]
        self, request: pb.WatchWorkflowRequest, context: Context
    ) -> None:
        checks = Checks()
        checks.workflow_id(request.workflow_id)
        if request.after_sequence < 0:
            checks.add("after_sequence", "must be 0 or more")
        checks.done()
        # Refused before it reads anything: a server at its limit answers at once, cheaply.
        with self._watch_limit.admit():
            events = self._engine.watch(
                current_user(), request.workflow_id, request.after_sequence, follow=request.follow
            )
            async with contextlib.aclosing(events):  # a cancelled call unsubscribes at once
                async for event in events:
                    await context.write(self._responses.get(event))

    @rpc
    async def ListWorkflowEvents(
        self, request: pb.ListWorkflowEventsRequest, context: Context
    ) -> pb.ListWorkflowEventsResponse:
        checks = Checks()
        checks.workflow_id(request.workflow_id)
        checks.page_size(request.page_size)
        if request.after_sequence < 0:
            checks.add("after_sequence", "must be 0 or more")
        types = []
        for i, value in enumerate(request.types):
            kind = convert.event_type_from_proto(value)
            if kind is None:
                checks.add(f"types[{i}]", f"must be {_EVENT_TYPE_NAMES}")
            else:
                types.append(kind)
        filters = fingerprint(
            request.workflow_id,
            sorted({t.value for t in types}),
            sorted(set(request.step_ids)),
            request.after_sequence,
        )
        after = decode_sequence(request.page_token, filters, checks)
        checks.done()
        page = await self._workflows.events(
            current_user(),
            request.workflow_id,
            after=request.after_sequence if after is None else after,
            limit=request.page_size or 100,
            types=types,
            step_ids=list(request.step_ids),
        )
        response = pb.ListWorkflowEventsResponse()
        sent = pages.fill(
            response.events, page.events, convert.event_to_proto, self._max_message_bytes
        )
        next_after = page.events[sent - 1].sequence if sent < len(page.events) else page.next_after
        if next_after is not None:
            response.next_page_token = encode_sequence(next_after, filters)
        return response

    @rpc
    async def GetAnalytics(
        self, request: pb.GetAnalyticsRequest, context: Context
    ) -> pb.GetAnalyticsResponse:
        checks = Checks()
        start = checks.timestamp(request, "start_time")
        end = checks.timestamp(request, "end_time")
        if start is not None and end is not None and start >= end:
            checks.add("end_time", "must be later than start_time")
        first, last = analytics.window(start, end, self._clock.now())
        if start is not None and end is None and first >= last:
            checks.add("start_time", "must be earlier than now (or than end_time)")
        if request.template_id:
            checks.template_id(request.template_id)
        if request.template_version < 0:
            checks.add("template_version", "must be 0 (every version) or a version number")
        elif request.template_version and not request.template_id:
            checks.add("template_version", "needs template_id: a version of which template?")
        if request.step_type and not self._catalog.has_step_type(request.step_type):
            checks.add("step_type", "must be a step type this server runs (or empty: all)")
        checks.done()
        query = analytics.AnalyticsQuery(
            first, last, request.template_id, request.template_version, request.step_type
        )
        figures = await self._workflows.analytics(current_user(), query)
        return convert.analytics_to_proto(figures)


class _WatchResponses:
    """WatchWorkflow responses of recent events by (run, sequence): a run's watchers share one
    conversion of each event instead of converting it once per stream. A committed event never
    changes, so an entry is never stale; the oldest go first."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._items: OrderedDict[tuple[str, int], pb.WatchWorkflowResponse] = OrderedDict()

    def get(self, event: Event) -> pb.WatchWorkflowResponse:
        key = (event.run_id, event.sequence)
        response = self._items.get(key)
        if response is None:
            response = pb.WatchWorkflowResponse(event=convert.event_to_proto(event))
            self._items[key] = response
            if len(self._items) > self._size:
                self._items.popitem(last=False)
        return response


class _OffsetPaged(Protocol):
    """A list request over a short list kept in memory, paged by offset."""

    @property
    def page_size(self) -> int: ...

    @property
    def page_token(self) -> str: ...


def _offset_window(request: _OffsetPaged) -> slice:
    checks = Checks()
    checks.page_size(request.page_size)
    offset = decode_offset(request.page_token, checks)
    checks.done()
    return slice(offset, offset + (request.page_size or 100))


def _token_after(window: slice, total: int) -> str:
    return encode_offset(window.stop) if window.stop < total else ""


def _check_id(workflow_id: str, *, reason: str = "") -> None:
    checks = Checks()
    checks.workflow_id(workflow_id)
    checks.text("reason", reason)
    checks.done()
