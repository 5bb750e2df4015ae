"""The async client: the seed's verbs over sluice.v1.WorkflowService."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

import grpc

from sluice.client import _targets, _values
from sluice.client._connect import connect
from sluice.client._schedules import ScheduleCalls
from sluice.client._targets import Addresses
from sluice.client._values import EventTypeLike, StatusLike, TemplateLike, ViewLike
from sluice.client.errors import SluiceError
from sluice.client.tls_probe import ServerSpeaksTlsError
from sluice.v1 import event_pb2, template_pb2, workflow_pb2
from sluice.v1 import workflow_service_pb2 as pb
from sluice.v1 import workflow_service_pb2_grpc as pb_grpc

T = TypeVar("T")

# Called when a watch's stream broke and will be reopened: the error, and the seconds until then.
OnReconnect = Callable[[SluiceError, float], object]


class WorkflowClient(ScheduleCalls):
    """Async client. Use `async with WorkflowClient() as client:` or call `close()`.
    The schedule verbs (`create_schedule`, ...) come from `ScheduleCalls`."""

    def __init__(
        self,
        target: Addresses | None = None,
        *,
        token: str | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        tls: bool = False,
        server_name: str | None = None,
        channel: grpc.aio.Channel | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        keepalive: float | None = _targets.KEEPALIVE_SECONDS,
    ) -> None:
        """Connect to a Sluice server, or to several that share one database.

        target: host:port; several as a list or tuple, or in one string with commas
        ("10.0.0.1:50051,10.0.0.2:50051"); or a DNS name that resolves to several
        ("dns:///sluice.internal:50051"). Calls go round-robin over the servers that answer;
        one that is down is skipped. None reads SLUICE_ADDRESS (which may hold commas too),
        else 127.0.0.1:50051. Host names in a list are looked up once, here.
        token: a JWT sent as `authorization: Bearer <token>` on every call; None reads
        SLUICE_TOKEN ("" sends none).
        ca_file: PEM CA bundle to verify the server with; turns TLS on (as does `tls=True`,
        which trusts the system's roots); None reads SLUICE_CA_FILE ("" uses none).
        cert_file / key_file: a client certificate for servers that require mutual TLS.
        server_name: the name the servers' certificates must carry; by default the target's
        host (with several addresses: the first one's).
        `credentials` or a ready `channel` override target and TLS.
        keepalive: seconds between pings while calls are in flight; a server that stops
        answering without closing the connection (stopped, cut off) fails them UNAVAILABLE
        within that plus up to 10 s (a watch with `reconnect` goes on at another server).
        None: no pings.
        """
        self._connection = connect(
            target,
            token=token,
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
            tls=tls,
            server_name=server_name,
            channel=channel,
            credentials=credentials,
            metadata=metadata,
            keepalive=keepalive,
        )
        self._channel = self._connection.channel
        self._stub = pb_grpc.WorkflowServiceStub(self._channel)
        self._metadata = self._connection.metadata

    async def close(self) -> None:
        """Close the connection; calls in flight are cancelled."""
        await self._channel.close()

    async def __aenter__(self) -> WorkflowClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def _call(
        self, method: Callable[..., Awaitable[T]], request: Any, timeout: float | None
    ) -> T:
        try:
            return await method(request, metadata=self._metadata, timeout=timeout)
        except grpc.RpcError as exc:
            raise await self._error(exc) from None

    async def _error(self, exc: grpc.RpcError) -> SluiceError:
        return await self._connection.error(exc)

    # --- templates ------------------------------------------------------------------------------

    async def list_templates(self, *, timeout: float | None = None) -> list[template_pb2.Template]:
        """The predefined templates and the caller's registered ones (latest version of each)."""
        found: list[template_pb2.Template] = []
        token = ""
        while True:
            response = await self._call(
                self._stub.ListTemplates, pb.ListTemplatesRequest(page_token=token), timeout
            )
            found.extend(response.templates)
            token = response.next_page_token
            if not token:
                return found

    async def get_template(
        self, template_id: str, *, version: int = 0, timeout: float | None = None
    ) -> template_pb2.Template:
        """One template; `version` 0 is the latest."""
        request = pb.GetTemplateRequest(template_id=template_id, version=version)
        return (await self._call(self._stub.GetTemplate, request, timeout)).template

    async def create_template(
        self, template: TemplateLike, *, timeout: float | None = None
    ) -> template_pb2.Template:
        """Register a template (a Template or its proto-JSON dict); registering an id again
        adds a version. Returns it with its version."""
        request = pb.CreateTemplateRequest(template=_values.template(template))
        return (await self._call(self._stub.CreateTemplate, request, timeout)).template

    async def delete_template(
        self, template_id: str, *, version: int = 0, timeout: float | None = None
    ) -> int:
        """Delete one version of a registered template, or every version (`version` 0).
        Returns how many versions were deleted. Runs keep their copy of the template;
        predefined templates cannot be deleted (FailedPreconditionError)."""
        request = pb.DeleteTemplateRequest(template_id=template_id, version=version)
        return (await self._call(self._stub.DeleteTemplate, request, timeout)).deleted_versions

    async def validate_template(
        self, template: TemplateLike, *, timeout: float | None = None
    ) -> pb.ValidateTemplateResponse:
        """Every problem of a template (`valid`, `violations`); changes nothing."""
        request = pb.ValidateTemplateRequest(template=_values.template(template))
        return await self._call(self._stub.ValidateTemplate, request, timeout)

    # --- runs -----------------------------------------------------------------------------------

    async def create_workflow(
        self,
        template: str | TemplateLike,
        params: Mapping[str, Any] | None = None,
        *,
        version: int = 0,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> workflow_pb2.Workflow:
        """Create a run from a template id (predefined or registered) or an inline template.

        Pass a request_id (a UUID) to make a retried call return the run the first call
        created instead of creating a second one; reusing it for a different request is
        InvalidArgumentError.
        """
        request = pb.CreateWorkflowRequest(template_version=version, request_id=request_id or "")
        if isinstance(template, str):
            request.template_id = template
        else:
            request.template.CopyFrom(_values.template(template))
        request.params.CopyFrom(_values.struct(params, "params"))
        return (await self._call(self._stub.CreateWorkflow, request, timeout)).workflow

    async def execute_workflow(
        self,
        workflow_id: str,
        *,
        auto_approve: bool = False,
        notify_on_completion: bool = False,
        wait: bool = False,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> workflow_pb2.Workflow:
        """Start a run. A retried call with the same request_id gets the run back and starts
        nothing, even when the first call's reply was lost and the run has moved on."""
        request = pb.ExecuteWorkflowRequest(
            request_id=request_id or "",
            workflow_id=workflow_id,
            options=workflow_pb2.ExecutionOptions(
                auto_approve=auto_approve, notify_on_completion=notify_on_completion
            ),
            wait=wait,
        )
        return (await self._call(self._stub.ExecuteWorkflow, request, timeout)).workflow

    async def get_workflow(
        self, workflow_id: str, *, timeout: float | None = None
    ) -> workflow_pb2.Workflow:
        """One run with its steps, gate results and metrics."""
        request = pb.GetWorkflowRequest(workflow_id=workflow_id)
        return (await self._call(self._stub.GetWorkflow, request, timeout)).workflow

    async def list_workflows(
        self,
        *,
        statuses: Sequence[StatusLike] = (),
        template_id: str = "",
        view: ViewLike = "basic",
        create_time_start: datetime | None = None,
        create_time_end: datetime | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> pb.ListWorkflowsResponse:
        """One page of the caller's runs, newest first; pass next_page_token for the next.

        statuses: WorkflowStatus values or names ("FAILED" or "WORKFLOW_STATUS_FAILED").
        view: "basic" leaves out each run's template and step outputs; "full" has everything.
        create_time_start / create_time_end: runs created at or after / before these times
        (timezone-aware datetimes).
        """
        request = pb.ListWorkflowsRequest(
            statuses=_values.statuses(statuses),
            template_id=template_id,
            view=_values.view(view),
            create_time_start=_values.timestamp(create_time_start, "create_time_start"),
            create_time_end=_values.timestamp(create_time_end, "create_time_end"),
            page_size=page_size,
            page_token=page_token,
        )
        return await self._call(self._stub.ListWorkflows, request, timeout)

    async def iter_workflows(
        self,
        *,
        statuses: Sequence[StatusLike] = (),
        template_id: str = "",
        view: ViewLike = "basic",
        create_time_start: datetime | None = None,
        create_time_end: datetime | None = None,
        page_size: int = 0,
        timeout: float | None = None,
    ) -> AsyncGenerator[workflow_pb2.Workflow, None]:
        """Every matching run, newest first, fetching pages as needed (`timeout` is per page);
        the filters are list_workflows'."""
        async for page in _pages(
            lambda token: self.list_workflows(
                statuses=statuses,
                template_id=template_id,
                view=view,
                create_time_start=create_time_start,
                create_time_end=create_time_end,
                page_size=page_size,
                page_token=token,
                timeout=timeout,
            )
        ):
            for workflow in page.workflows:
                yield workflow

    async def delete_workflow(self, workflow_id: str, *, timeout: float | None = None) -> None:
        """Delete a run that has ended (COMPLETED, FAILED or CANCELLED) with its events; one
        that has not ended is FailedPreconditionError (cancel it first)."""
        request = pb.DeleteWorkflowRequest(workflow_id=workflow_id)
        await self._call(self._stub.DeleteWorkflow, request, timeout)

    async def pause_workflow(
        self, workflow_id: str, *, reason: str = "", timeout: float | None = None
    ) -> workflow_pb2.Workflow:
        """Pause a RUNNING run: no new step starts; running steps finish."""
        request = pb.PauseWorkflowRequest(workflow_id=workflow_id, reason=reason)
        return (await self._call(self._stub.PauseWorkflow, request, timeout)).workflow

    async def resume_workflow(
        self,
        workflow_id: str,
        *,
        auto_approve: bool | None = None,
        notify_on_completion: bool | None = None,
        wait: bool = False,
        timeout: float | None = None,
    ) -> workflow_pb2.Workflow:
        """Resume a paused run; options left as None keep the run's current ones (the server
        reads them, so this is one call)."""
        request = pb.ResumeWorkflowRequest(workflow_id=workflow_id, wait=wait)
        if auto_approve is not None:
            request.auto_approve = auto_approve
        if notify_on_completion is not None:
            request.notify_on_completion = notify_on_completion
        return (await self._call(self._stub.ResumeWorkflow, request, timeout)).workflow

    async def cancel_workflow(
        self, workflow_id: str, *, reason: str = "", timeout: float | None = None
    ) -> workflow_pb2.Workflow:
        """Cancel a run that has not ended, stopping its running steps."""
        request = pb.CancelWorkflowRequest(workflow_id=workflow_id, reason=reason)
        return (await self._call(self._stub.CancelWorkflow, request, timeout)).workflow

    async def approve_gate(
        self,
        workflow_id: str,
        gate_id: str,
        *,
        approve: bool = True,
        comment: str = "",
        wait: bool = False,
        timeout: float | None = None,
    ) -> workflow_pb2.Workflow:
        """Approve (the run continues) or reject (`approve=False`: the run fails) the gate a
        paused run waits on."""
        request = pb.ApproveGateRequest(
            workflow_id=workflow_id, gate_id=gate_id, approve=approve, comment=comment, wait=wait
        )
        return (await self._call(self._stub.ApproveGate, request, timeout)).workflow

    async def rerun_workflow(
        self,
        workflow_id: str,
        *,
        from_step: str = "",
        auto_approve: bool | None = None,
        notify_on_completion: bool | None = None,
        wait: bool = False,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> workflow_pb2.Workflow:
        """Rerun a FAILED or CANCELLED run as a new, started run (its `rerun_of` names the
        original). The new run takes over the outputs of the steps that completed and runs the
        rest; with `from_step`, that step and every step downstream of it run again too.
        With auto_approve and notify_on_completion both None the new run has the original's
        options; setting either gives it new ones (the other False). A retried call with the
        same request_id gets the same new run, started once."""
        request = pb.RerunWorkflowRequest(
            workflow_id=workflow_id, from_step_id=from_step, wait=wait,
            request_id=request_id or "",
        )  # fmt: skip
        if auto_approve is not None or notify_on_completion is not None:
            request.options.CopyFrom(
                workflow_pb2.ExecutionOptions(
                    auto_approve=bool(auto_approve),
                    notify_on_completion=bool(notify_on_completion),
                )
            )
        return (await self._call(self._stub.RerunWorkflow, request, timeout)).workflow

    async def retry_step(
        self, workflow_id: str, step_id: str, *, timeout: float | None = None
    ) -> workflow_pb2.Workflow:
        """Start the next attempt of a step waiting out its retry backoff (RETRYING) now."""
        request = pb.RetryStepRequest(workflow_id=workflow_id, step_id=step_id)
        return (await self._call(self._stub.RetryStep, request, timeout)).workflow

    async def watch(
        self,
        workflow_id: str,
        *,
        after_sequence: int = 0,
        follow: bool = False,
        reconnect: bool = False,
        initial_backoff: float = 0.1,
        max_backoff: float = 5.0,
        give_up_after: float | None = 120.0,
        on_reconnect: OnReconnect | None = None,
    ) -> AsyncGenerator[event_pb2.WorkflowEvent, None]:
        """The run's events after `after_sequence`, stored then live; ends after the terminal
        event unless `follow`.

        With `reconnect`, a stream broken by the server going away (UNAVAILABLE, a server-side
        cancel) is opened again from the last sequence received, with exponential backoff
        (`initial_backoff` doubling up to `max_backoff`), so the caller sees every event once
        and in order. With several servers it reopens on one that answers; when none did, it
        tries again as soon as the client connects to one, without waiting out the backoff.
        It gives up, raising the last error, after `give_up_after` seconds without an event
        (None: never). `on_reconnect(error, delay)` is called before each wait, with the error
        that broke the stream and the most seconds until the next try: a caller can say it is
        reconnecting, and that it is back when the next event arrives.
        """
        last = after_sequence
        delay = initial_backoff
        loop = asyncio.get_running_loop()
        broken_since: float | None = None
        while True:
            request = pb.WatchWorkflowRequest(
                workflow_id=workflow_id, after_sequence=last, follow=follow
            )
            call = self._stub.WatchWorkflow(request, metadata=self._metadata)
            try:
                async for response in call:
                    delay, broken_since = initial_backoff, None
                    last = response.event.sequence
                    yield response.event
                return
            except grpc.RpcError as exc:
                error = await self._error(exc)
                if (
                    not reconnect
                    or error.code not in _RECONNECT_ON
                    or isinstance(error, ServerSpeaksTlsError)
                ):
                    raise error from None
                broken_since = broken_since if broken_since is not None else loop.time()
                if give_up_after is not None and loop.time() - broken_since > give_up_after:
                    raise error from None
                if on_reconnect is not None:
                    on_reconnect(error, delay)
            finally:
                call.cancel()
            await self._until_reconnected(delay, least=initial_backoff)
            delay = min(delay * 2, max_backoff)

    async def list_workflow_events(
        self,
        workflow_id: str,
        *,
        types: Sequence[EventTypeLike] = (),
        step_ids: Sequence[str] = (),
        after_sequence: int = 0,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> pb.ListWorkflowEventsResponse:
        """One page of the run's stored events, oldest first, each as watch yields it; pass
        next_page_token for the next. No stream: any server answers, for scripts and UIs.

        types: EventType values or names ("STEP_COMPLETED" or "EVENT_TYPE_STEP_COMPLETED");
        step_ids: steps of the run's template (their events and their gates'); empty: all.
        after_sequence: only events after this one (the last one read, to read what followed).
        """
        request = pb.ListWorkflowEventsRequest(
            workflow_id=workflow_id,
            types=_values.event_types(types),
            step_ids=[step_ids] if isinstance(step_ids, str) else step_ids,
            after_sequence=after_sequence,
            page_size=page_size,
            page_token=page_token,
        )
        return await self._call(self._stub.ListWorkflowEvents, request, timeout)

    async def iter_workflow_events(
        self,
        workflow_id: str,
        *,
        types: Sequence[EventTypeLike] = (),
        step_ids: Sequence[str] = (),
        after_sequence: int = 0,
        page_size: int = 0,
        timeout: float | None = None,
    ) -> AsyncGenerator[event_pb2.WorkflowEvent, None]:
        """Every matching stored event of the run, oldest first, fetching pages as needed
        (`timeout` is per page); the filters are list_workflow_events'. Ends with the last
        event stored: for live ones, watch."""
        async for page in _pages(
            lambda token: self.list_workflow_events(
                workflow_id,
                types=types,
                step_ids=step_ids,
                after_sequence=after_sequence,
                page_size=page_size,
                page_token=token,
                timeout=timeout,
            )
        ):
            for event in page.events:
                yield event

    # --- analytics ----------------------------------------------------------------------------

    async def get_analytics(
        self,
        *,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        template_id: str = "",
        template_version: int = 0,
        step_type: str = "",
        timeout: float | None = None,
    ) -> pb.GetAnalyticsResponse:
        """Your figures over the runs that ended in a window (in whole hours, UTC): per
        template, per step type and per gate type, counts by outcome, success rates and
        duration percentiles (within 9.1 %).

        start_time / end_time: timezone-aware datetimes; by default the 24 hours up to the
        end of the current hour. template_id (and template_version) narrow it to one
        template; step_type narrows step_types to one type.
        """
        request = pb.GetAnalyticsRequest(
            start_time=_values.timestamp(start_time, "start_time"),
            end_time=_values.timestamp(end_time, "end_time"),
            template_id=template_id,
            template_version=template_version,
            step_type=step_type,
        )
        return await self._call(self._stub.GetAnalytics, request, timeout)

    async def _until_reconnected(self, delay: float, least: float) -> None:
        """Wait `delay` seconds, or less when the channel had no server to call: until it
        connects to one (another address, or the same one back), but at least `least`, so
        a server that drops every call at once cannot make the watch spin. A channel still
        connected waits the whole delay: its server answered, with an error to back off from."""
        connected = self._channel.get_state(try_to_connect=True) is _READY
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await asyncio.sleep(least if not connected else delay)
                state = self._channel.get_state(try_to_connect=True)
                while state is not _READY:
                    await self._channel.wait_for_state_change(state)
                    state = self._channel.get_state(try_to_connect=True)


class _Page(Protocol):
    @property
    def next_page_token(self) -> str: ...


P = TypeVar("P", bound=_Page)


async def _pages(fetch: Callable[[str], Awaitable[P]]) -> AsyncGenerator[P, None]:
    """Each page of a list, `fetch(page_token)` after `fetch("")`, until one has no token."""
    token = ""
    while True:
        page = await fetch(token)
        yield page
        token = page.next_page_token
        if not token:
            return


# Codes a restarting or unreachable server answers with; anything else is the caller's to see.
_RECONNECT_ON = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})
_READY = grpc.ChannelConnectivity.READY
