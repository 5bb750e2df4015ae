"""A blocking client for scripts: the async client driven on a private event-loop thread.

Each verb is written out with WorkflowClient's signature and docstring, so help() and editors
show them; its body hands the async verb to the loop. tests/e2e/test_client.py fails when the
two classes drift apart.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Awaitable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import grpc

from sluice.client._async import OnReconnect, WorkflowClient
from sluice.client._schedules import SyncScheduleCalls
from sluice.client._targets import KEEPALIVE_SECONDS, Addresses
from sluice.client._values import EventTypeLike, StatusLike, TemplateLike, ViewLike
from sluice.v1 import event_pb2, template_pb2, workflow_pb2
from sluice.v1 import workflow_service_pb2 as pb

T = TypeVar("T")


class SyncWorkflowClient(SyncScheduleCalls):
    """Blocking client with WorkflowClient's verbs. `with SyncWorkflowClient() as client: ...`

    Calls run on a private event-loop thread, so the client works in any program, with or
    without asyncio; `watch`'s `on_reconnect` is called on that thread.
    """

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
        credentials: grpc.ChannelCredentials | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        keepalive: float | None = KEEPALIVE_SECONDS,
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
        `credentials` overrides TLS.
        keepalive: seconds between pings while calls are in flight (see WorkflowClient).
        """
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name="sluice-client"
        )
        self._thread.start()

        async def connect() -> WorkflowClient:  # the channel must be made on the loop it uses
            return WorkflowClient(
                target,
                token=token,
                ca_file=ca_file,
                cert_file=cert_file,
                key_file=key_file,
                tls=tls,
                server_name=server_name,
                credentials=credentials,
                metadata=metadata,
                keepalive=keepalive,
            )

        self._client = self._run(connect())

    def _run(self, call: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(_await(call), self._loop).result()

    def _iterate(self, stream: AsyncGenerator[T, None]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self._run(anext(stream))
                except StopAsyncIteration:
                    return
        finally:
            # Leaving the loop early (break, an exception) must end the stream now.
            if self._loop.is_running():
                self._run(stream.aclose())

    def close(self) -> None:
        """Close the connection; calls in flight are cancelled."""
        self._run(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> SyncWorkflowClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- templates ------------------------------------------------------------------------------

    def list_templates(self, *, timeout: float | None = None) -> list[template_pb2.Template]:
        """The predefined templates and the caller's registered ones (latest version of each)."""
        return self._run(self._client.list_templates(timeout=timeout))

    def get_template(
        self, template_id: str, *, version: int = 0, timeout: float | None = None
    ) -> template_pb2.Template:
        """One template; `version` 0 is the latest."""
        return self._run(self._client.get_template(template_id, version=version, timeout=timeout))

    def create_template(
        self, template: TemplateLike, *, timeout: float | None = None
    ) -> template_pb2.Template:
        """Register a template (a Template or its proto-JSON dict); registering an id again
        adds a version. Returns it with its version."""
        return self._run(self._client.create_template(template, timeout=timeout))

    def delete_template(
        self, template_id: str, *, version: int = 0, timeout: float | None = None
    ) -> int:
        """Delete one version of a registered template, or every version (`version` 0).
        Returns how many versions were deleted. Runs keep their copy of the template;
        predefined templates cannot be deleted (FailedPreconditionError)."""
        return self._run(
            self._client.delete_template(template_id, version=version, timeout=timeout)
        )

    def validate_template(
        self, template: TemplateLike, *, timeout: float | None = None
    ) -> pb.ValidateTemplateResponse:
        """Every problem of a template (`valid`, `violations`); changes nothing."""
        return self._run(self._client.validate_template(template, timeout=timeout))

    # --- runs -----------------------------------------------------------------------------------

    def create_workflow(
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
        return self._run(
            self._client.create_workflow(
                template, params, version=version, request_id=request_id, timeout=timeout
            )
        )

    def execute_workflow(
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
        return self._run(
            self._client.execute_workflow(
                workflow_id,
                auto_approve=auto_approve,
                notify_on_completion=notify_on_completion,
                wait=wait,
                request_id=request_id,
                timeout=timeout,
            )
        )

    def get_workflow(
        self, workflow_id: str, *, timeout: float | None = None
    ) -> workflow_pb2.Workflow:
        """One run with its steps, gate results and metrics."""
        return self._run(self._client.get_workflow(workflow_id, timeout=timeout))

    def list_workflows(
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
        return self._run(
            self._client.list_workflows(
                statuses=statuses,
                template_id=template_id,
                view=view,
                create_time_start=create_time_start,
                create_time_end=create_time_end,
                page_size=page_size,
                page_token=page_token,
                timeout=timeout,
            )
        )

    def iter_workflows(
        self,
        *,
        statuses: Sequence[StatusLike] = (),
        template_id: str = "",
        view: ViewLike = "basic",
        create_time_start: datetime | None = None,
        create_time_end: datetime | None = None,
        page_size: int = 0,
        timeout: float | None = None,
    ) -> Iterator[workflow_pb2.Workflow]:
        """Every matching run, newest first, fetching pages as needed (`timeout` is per page);
        the filters are list_workflows'."""
        return self._iterate(
            self._client.iter_workflows(
                statuses=statuses,
                template_id=template_id,
                view=view,
                create_time_start=create_time_start,
                create_time_end=create_time_end,
                page_size=page_size,
                timeout=timeout,
            )
        )

    def delete_workflow(self, workflow_id: str, *, timeout: float | None = None) -> None:
        """Delete a run that has ended (COMPLETED, FAILED or CANCELLED) with its events; one
        that has not ended is FailedPreconditionError (cancel it first)."""
        self._run(self._client.delete_workflow(workflow_id, timeout=timeout))

    def pause_workflow(
        self, workflow_id: str, *, reason: str = "", timeout: float | None = None
    ) -> workflow_pb2.Workflow:
        """Pause a RUNNING run: no new step starts; running steps finish."""
        return self._run(self._client.pause_workflow(workflow_id, reason=reason, timeout=timeout))

    def resume_workflow(
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
        return self._run(
            self._client.resume_workflow(
                workflow_id,
                auto_approve=auto_approve,
                notify_on_completion=notify_on_completion,
                wait=wait,
                timeout=timeout,
            )
        )

    def cancel_workflow(
        self, workflow_id: str, *, reason: str = "", timeout: float | None = None
    ) -> workflow_pb2.Workflow:
        """Cancel a run that has not ended, stopping its running steps."""
        return self._run(self._client.cancel_workflow(workflow_id, reason=reason, timeout=timeout))

    def approve_gate(
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
        return self._run(
            self._client.approve_gate(
                workflow_id, gate_id, approve=approve, comment=comment, wait=wait, timeout=timeout
            )
        )

    def rerun_workflow(
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
        return self._run(
            self._client.rerun_workflow(
                workflow_id, from_step=from_step, auto_approve=auto_approve,
                notify_on_completion=notify_on_completion, wait=wait, request_id=request_id,
                timeout=timeout,
            )
        )  # fmt: skip

    def retry_step(
        self, workflow_id: str, step_id: str, *, timeout: float | None = None
    ) -> workflow_pb2.Workflow:
        """Start the next attempt of a step waiting out its retry backoff (RETRYING) now."""
        return self._run(self._client.retry_step(workflow_id, step_id, timeout=timeout))

    def watch(
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
    ) -> Iterator[event_pb2.WorkflowEvent]:
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
        return self._iterate(
            self._client.watch(
                workflow_id,
                after_sequence=after_sequence,
                follow=follow,
                reconnect=reconnect,
                initial_backoff=initial_backoff,
                max_backoff=max_backoff,
                give_up_after=give_up_after,
                on_reconnect=on_reconnect,
            )
        )

    def list_workflow_events(
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
        return self._run(
            self._client.list_workflow_events(
                workflow_id,
                types=types,
                step_ids=step_ids,
                after_sequence=after_sequence,
                page_size=page_size,
                page_token=page_token,
                timeout=timeout,
            )
        )

    def iter_workflow_events(
        self,
        workflow_id: str,
        *,
        types: Sequence[EventTypeLike] = (),
        step_ids: Sequence[str] = (),
        after_sequence: int = 0,
        page_size: int = 0,
        timeout: float | None = None,
    ) -> Iterator[event_pb2.WorkflowEvent]:
        """Every matching stored event of the run, oldest first, fetching pages as needed
        (`timeout` is per page); the filters are list_workflow_events'. Ends with the last
        event stored: for live ones, watch."""
        return self._iterate(
            self._client.iter_workflow_events(
                workflow_id,
                types=types,
                step_ids=step_ids,
                after_sequence=after_sequence,
                page_size=page_size,
                timeout=timeout,
            )
        )

    def get_analytics(
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
        return self._run(
            self._client.get_analytics(
                start_time=start_time,
                end_time=end_time,
                template_id=template_id,
                template_version=template_version,
                step_type=step_type,
                timeout=timeout,
            )
        )


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable
