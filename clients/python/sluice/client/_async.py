"""The async client: the seed's verbs over sluice.v1.WorkflowService."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format, struct_pb2

from sluice.client.errors import SluiceError, from_rpc_error
from sluice.client.tls_probe import ServerSpeaksTlsError, explain_unavailable
from sluice.v1 import event_pb2, template_pb2, workflow_pb2
from sluice.v1 import workflow_service_pb2 as pb
from sluice.v1 import workflow_service_pb2_grpc as pb_grpc

DEFAULT_TARGET = "127.0.0.1:50051"
T = TypeVar("T")

TemplateLike = template_pb2.Template | Mapping[str, Any]


class WorkflowClient:
    """Async client. Use `async with WorkflowClient(target) as client:` or call `close()`."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        token: str | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        tls: bool = False,
        channel: grpc.aio.Channel | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Connect to a Sluice server.

        token: a JWT sent as `authorization: Bearer <token>` on every call.
        ca_file: PEM CA bundle to verify the server with; turns TLS on (as does `tls=True`,
        which trusts the system's roots). cert_file / key_file: a client certificate for
        servers that require mutual TLS. `credentials` or a ready `channel` override all that.
        """
        plaintext = channel is None and credentials is None and not (tls or ca_file or cert_file)
        self._plaintext_target = target if plaintext else None
        if channel is None:
            if credentials is None and (tls or ca_file or cert_file):
                credentials = grpc.ssl_channel_credentials(
                    root_certificates=_read(ca_file),
                    private_key=_read(key_file),
                    certificate_chain=_read(cert_file),
                )
            channel = (
                grpc.aio.secure_channel(target, credentials)
                if credentials is not None
                else grpc.aio.insecure_channel(target)
            )
        self._channel = channel
        self._stub = pb_grpc.WorkflowServiceStub(channel)
        auth = (("authorization", f"Bearer {token}"),) if token else ()
        self._metadata = (*auth, *metadata)

    async def close(self) -> None:
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
        error = from_rpc_error(exc)
        if self._plaintext_target is None:
            return error
        return await explain_unavailable(error, self._plaintext_target)

    # --- templates ------------------------------------------------------------------------------

    async def list_templates(self, *, timeout: float | None = None) -> list[template_pb2.Template]:
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
        request = pb.GetTemplateRequest(template_id=template_id, version=version)
        return (await self._call(self._stub.GetTemplate, request, timeout)).template

    async def create_template(
        self, template: TemplateLike, *, timeout: float | None = None
    ) -> template_pb2.Template:
        request = pb.CreateTemplateRequest(template=_template(template))
        return (await self._call(self._stub.CreateTemplate, request, timeout)).template

    async def validate_template(
        self, template: TemplateLike, *, timeout: float | None = None
    ) -> pb.ValidateTemplateResponse:
        request = pb.ValidateTemplateRequest(template=_template(template))
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
        created instead of creating a second one.
        """
        request = pb.CreateWorkflowRequest(template_version=version, request_id=request_id or "")
        if isinstance(template, str):
            request.template_id = template
        else:
            request.template.CopyFrom(_template(template))
        request.params.CopyFrom(_struct(params))
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
        request = pb.GetWorkflowRequest(workflow_id=workflow_id)
        return (await self._call(self._stub.GetWorkflow, request, timeout)).workflow

    async def list_workflows(
        self,
        *,
        statuses: Sequence[workflow_pb2.WorkflowStatus.ValueType] = (),
        template_id: str = "",
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> pb.ListWorkflowsResponse:
        """One page of the caller's runs, newest first; pass next_page_token for the next."""
        request = pb.ListWorkflowsRequest(
            statuses=statuses, template_id=template_id, page_size=page_size, page_token=page_token
        )
        return await self._call(self._stub.ListWorkflows, request, timeout)

    async def iter_workflows(
        self,
        *,
        statuses: Sequence[workflow_pb2.WorkflowStatus.ValueType] = (),
        template_id: str = "",
        page_size: int = 0,
    ) -> AsyncGenerator[workflow_pb2.Workflow, None]:
        """Every matching run, fetching pages as needed."""
        token = ""
        while True:
            page = await self.list_workflows(
                statuses=statuses, template_id=template_id, page_size=page_size, page_token=token
            )
            for workflow in page.workflows:
                yield workflow
            token = page.next_page_token
            if not token:
                return

    async def pause_workflow(
        self, workflow_id: str, *, reason: str = "", timeout: float | None = None
    ) -> workflow_pb2.Workflow:
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
        request = pb.ApproveGateRequest(
            workflow_id=workflow_id, gate_id=gate_id, approve=approve, comment=comment, wait=wait
        )
        return (await self._call(self._stub.ApproveGate, request, timeout)).workflow

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
    ) -> AsyncGenerator[event_pb2.WorkflowEvent, None]:
        """The run's events after `after_sequence`, stored then live; ends after the terminal
        event unless `follow`.

        With `reconnect`, a stream broken by the server going away (UNAVAILABLE, a server-side
        cancel) is opened again from the last sequence received, with exponential backoff
        (`initial_backoff` doubling up to `max_backoff`), so the caller sees every event once
        and in order. It gives up, raising the last error, after `give_up_after` seconds without
        an event (None: never).
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
            finally:
                call.cancel()
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_backoff)


# Codes a restarting or unreachable server answers with; anything else is the caller's to see.
_RECONNECT_ON = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as file:
        return file.read()


def _template(template: TemplateLike) -> template_pb2.Template:
    if isinstance(template, template_pb2.Template):
        return template
    return json_format.ParseDict(dict(template), template_pb2.Template())


def _struct(data: Mapping[str, Any] | None) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    if data:
        struct.update(dict(data))
    return struct
