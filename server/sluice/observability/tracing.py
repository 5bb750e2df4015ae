"""Traces (OpenTelemetry), when the standard OTEL_* variables ask for them; off otherwise, and
then nothing here runs: no provider, no interceptor, no span object on any path.

What a traced server makes:
- a span per RPC (opentelemetry-instrumentation-grpc), a child of the caller's span when its
  metadata carries a `traceparent`;
- a trace per run, whose root is the run's span ("run <template id>"), from the run's creation
  to its end;
- a span per step attempt ("step <step id>"), a child of the run's span, from the attempt's
  STEP_STARTED to its end as committed (completed, failed, retrying, cancelled), and a span per
  gate decision ("gate <gate id>"), a child of the run's span too.

A run outlives the process that created it (a restart resumes it; another server takes it
over), so its trace id and its span id are made once, as it is created, and stored with it
(`Run.trace_context`), and its spans are emitted from committed events, as the run log and the
metrics are, by whichever server commits them: an attempt's span when its end is committed, the
run's span when the run ends, each with the times its events carry and the ids the run stored
(`trace_ids`). Such a span has ended before it is made, so it is made as the SDK's finished
span (`ReadableSpan`) with those ids and times, after asking the sampler as the SDK's tracer
would, and handed to the span processors (`SpanProcessor.on_end`, what every exporter sits
behind): the same sampling, batching and exporters as any span, at about half the cost of
starting and ending one through a tracer with the ids forced by an IdGenerator, which this did
first (0.55 of its CPU per run, measured interleaved in one process: a live span's locks and
attribute checks serve nothing for a span that is over).

The run's span is the root of its trace and links to the span of the call that created it
(CreateWorkflow, RerunWorkflow) rather than being its child: a run lasts minutes or weeks
while the call lasts milliseconds, other calls act on it later (ExecuteWorkflow, ApproveGate),
and a schedule creates runs with no call at all; as the call's child every run would hang
from some client's trace, sampled and kept by that trace's rules.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from importlib.metadata import entry_points
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.grpc._aio_server import OpenTelemetryAioServerInterceptor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event as SpanEvent
from opentelemetry.sdk.trace import (
    ReadableSpan,
    SpanProcessor,
    SynchronousMultiSpanProcessor,
    TracerProvider,
)
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision, Sampler
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    INVALID_SPAN,
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from sluice.config import ConfigError
from sluice.engine.model import Event, EventType, GateType, Run, RunStatus
from sluice.engine.transitions import REUSED_FROM
from sluice.observability.otel_env import exporter_names
from sluice.observability.outcomes import ATTEMPT_OUTCOMES, GATE_OUTCOMES
from sluice.observability.trace_ids import RunSpan, parse, run_span, traceparent

# What a traced server's spans say, beside their names.
RUN_ID = "sluice.run.id"
TEMPLATE_ID = "sluice.template.id"
TEMPLATE_VERSION = "sluice.template.version"
RUN_STATUS = "sluice.run.status"
RERUN_OF = "sluice.run.rerun_of"
STEP_ID = "sluice.step.id"
STEP_TYPE = "sluice.step.type"
STEP_ATTEMPT = "sluice.step.attempt"
STEP_OUTCOME = "sluice.step.outcome"
TASK_TYPE = "sluice.task.type"
GATE_ID = "sluice.gate.id"
GATE_TYPE = "sluice.gate.type"
GATE_OUTCOME = "sluice.gate.outcome"
GATE_OBSERVED_VALUE = "sluice.gate.observed_value"
GATE_MESSAGE = "sluice.gate.message"
ERROR_TYPE = "error.type"  # OpenTelemetry's own name for the kind of failure

_RUN_ENDS = {
    EventType.WORKFLOW_COMPLETED,
    EventType.WORKFLOW_FAILED,
    EventType.WORKFLOW_CANCELLED,
}
_UNSET = Status()
# Span statuses carry a description; an error's whole text belongs in the run's events.
_MAX_DESCRIPTION = 1000
# OTEL_EXPORTER_OTLP_PROTOCOL -> the exporter's entry point (as the SDK's own configurator
# reads them; Python's OTLP exporter speaks gRPC unless told otherwise).
_OTLP_BY_PROTOCOL = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}
_EXPORTER_PACKAGES = {
    "otlp_proto_grpc": "opentelemetry-exporter-otlp-proto-grpc",
    "otlp_proto_http": "opentelemetry-exporter-otlp-proto-http",
    "zipkin": "opentelemetry-exporter-zipkin",
}


class Tracing:
    """A traced server's spans of runs, step attempts and gates, made from committed events
    (`committed`, one of the driver's observers), and what the driver and dispatchers ask of
    it (`new_run`, `attempt`, `carrier`: `sluice.runtime.dispatch.Tracing`).

    `processors` receive the spans (BatchSpanProcessor over the configured exporters, or a
    test's in-memory exporter); `sampler` None reads OTEL_TRACES_SAMPLER, as the SDK does.
    """

    def __init__(
        self,
        processors: Sequence[SpanProcessor],
        *,
        sampler: Sampler | None = None,
        resource: Resource | None = None,
    ) -> None:
        self.provider = TracerProvider(sampler=sampler, resource=resource or service_resource())
        # The same processors take the calls' spans (through the provider) and the runs' (from
        # `_emit`, directly).
        self._processors = SynchronousMultiSpanProcessor()  # type: ignore[no-untyped-call]
        for processor in processors:
            self.provider.add_span_processor(processor)
            self._processors.add_span_processor(processor)
        self._ids = RandomIdGenerator()
        self._scope = InstrumentationScope("sluice")
        # Attempts under way on this server, by run and step: when each started.
        self._started: dict[str, dict[str, datetime]] = {}
        # Approval gates waiting, by run and gate: since when (the decision's span starts there).
        self._awaiting: dict[str, dict[str, datetime]] = {}

    # --- what the driver and dispatchers ask --------------------------------------------------

    def new_run(self, run: Run) -> dict[str, str]:
        """The trace context to store with a new run: its own trace and span ids (sampled or
        not, as the sampler says for its trace), and the span of the call creating it."""
        trace_id = self._ids.generate_trace_id()
        span_id = self._ids.generate_span_id()
        caller = trace.get_current_span().get_span_context()
        links = [Link(caller)] if caller.is_valid else []
        decision = self.provider.sampler.should_sample(
            None, trace_id, _run_name(run), SpanKind.INTERNAL, None, links
        ).decision
        sampled = decision is Decision.RECORD_AND_SAMPLE
        flags = TraceFlags.RANDOM_TRACE_ID | (TraceFlags.SAMPLED if sampled else 0)
        stored = {"traceparent": traceparent(trace_id, span_id, flags)}
        if caller.is_valid:
            stored["link"] = traceparent(caller.trace_id, caller.span_id, caller.trace_flags)
        return stored

    @contextlib.contextmanager
    def attempt(self, run: Run, step_id: str, attempt: int) -> Iterator[None]:
        """While a local handler runs: the attempt's span is the current one (its log lines and
        outgoing requests carry it; a plugin's own spans are its children). A run with no
        trace runs its handlers under none, rather than under whatever call started them."""
        root = run_span(run.trace_context)
        span = (
            NonRecordingSpan(_attempt_context(root, step_id, attempt))
            if root is not None
            else INVALID_SPAN
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            yield
        finally:
            otel_context.detach(token)

    def carrier(self, run: Run, step_id: str, attempt: int) -> dict[str, str]:
        """The attempt's span context as W3C Trace Context fields (`traceparent`, and
        `tracestate` when there is one), for a worker's task; {} for a run with no trace."""
        root = run_span(run.trace_context)
        if root is None:
            return {}
        fields: dict[str, str] = {}
        span = NonRecordingSpan(_attempt_context(root, step_id, attempt))
        propagate.inject(fields, context=trace.set_span_in_context(span))
        return fields

    # --- spans from committed events ------------------------------------------------------------

    def committed(self, run: Run, events: Sequence[Event]) -> None:
        """Emit the spans that `events`, just committed, end (`run` is its state after them)."""
        root = run_span(run.trace_context)
        if root is None:
            return
        for event in events:
            kind = event.type
            if REUSED_FROM in event.details:
                continue  # a rerun took it over from the run it reruns: nothing ran here
            if kind is EventType.STEP_STARTED:
                self._attempt_started(run, root, event)
            elif kind in ATTEMPT_OUTCOMES:
                self._attempt_ended(run, root, event, ATTEMPT_OUTCOMES[kind])
            elif kind is EventType.GATE_AWAITING_APPROVAL:
                self._awaiting.setdefault(run.id, {})[event.gate_id] = event.time
            elif kind in GATE_OUTCOMES:
                self._gate_decided(run, root, event, GATE_OUTCOMES[kind])
            elif kind in _RUN_ENDS:
                self._run_ended(run, root, event)

    def _attempt_started(self, run: Run, root: RunSpan, event: Event) -> None:
        if event.details.get("recovered") and event.attempt > 1:
            # The attempt before was cut off (its server stopped): its span ends here, so
            # what it started (a webhook, a worker's span) still has a parent.
            begun = self._started.get(run.id, {}).get(event.step_id, event.time)
            self._attempt_span(run, root, event.step_id, event.attempt - 1, begun, event.time,
                               "interrupted", "cut off: its server stopped", "")  # fmt: skip
        self._started.setdefault(run.id, {})[event.step_id] = event.time

    def _attempt_ended(self, run: Run, root: RunSpan, event: Event, outcome: str) -> None:
        begun = self._started.get(run.id, {}).pop(event.step_id, None)
        if begun is None:
            if event.type is EventType.STEP_CANCELLED:
                return  # cancelled while waiting to retry: that attempt's span was emitted
            # Started by another server, or by this one before a restart: a first attempt
            # started when its step did; a later one's start is known only to its events.
            step = run.steps[event.step_id]
            first = event.attempt == 1 and step.started_at is not None
            begun = step.started_at if first and step.started_at else event.time
        details = event.details
        error = str(details.get("error", "")) if outcome in ("failed", "retrying") else ""
        self._attempt_span(run, root, event.step_id, event.attempt, begun, event.time,
                           outcome, error, str(details.get("errorType", "")))  # fmt: skip

    def _attempt_span(
        self,
        run: Run,
        root: RunSpan,
        step_id: str,
        attempt: int,
        begun: datetime,
        ended: datetime,
        outcome: str,
        error: str,
        error_type: str,
    ) -> None:
        spec = run.template.step(step_id)
        attributes: dict[str, Any] = {
            RUN_ID: run.id,
            STEP_ID: step_id,
            STEP_TYPE: spec.type,
            STEP_ATTEMPT: attempt,
            STEP_OUTCOME: outcome,
        }
        if spec.remote:
            attributes[TASK_TYPE] = spec.task_type
        if error_type:
            attributes[ERROR_TYPE] = error_type
        self._emit(
            f"step {step_id}",
            (root.trace_id, root.attempt_span_id(step_id, attempt)),
            _parent(root),
            begun,
            ended,
            attributes,
            error=error,
        )

    def _gate_decided(self, run: Run, root: RunSpan, event: Event, outcome: str) -> None:
        gate = run.template_gate(event.gate_id)
        begun = self._awaiting.get(run.id, {}).pop(event.gate_id, event.time)
        attributes: dict[str, Any] = {
            RUN_ID: run.id,
            GATE_ID: gate.id,
            GATE_TYPE: (gate.type or GateType.THRESHOLD).value.lower(),
            GATE_OUTCOME: outcome,
            STEP_ID: gate.step_id,
        }
        observed = event.details.get("observedValue")
        if isinstance(observed, int | float):
            attributes[GATE_OBSERVED_VALUE] = float(observed)
        message = str(event.details.get("message", ""))
        if message:
            attributes[GATE_MESSAGE] = message[:_MAX_DESCRIPTION]
        self._emit(f"gate {gate.id}", None, _parent(root), begun, event.time, attributes)

    def _run_ended(self, run: Run, root: RunSpan, event: Event) -> None:
        self._started.pop(run.id, None)
        self._awaiting.pop(run.id, None)
        status = event.run_status or run.status
        attributes: dict[str, Any] = {
            RUN_ID: run.id,
            TEMPLATE_ID: run.template.id,
            TEMPLATE_VERSION: run.template.version,
            RUN_STATUS: status.value,
        }
        if run.rerun_of:
            attributes[RERUN_OF] = run.rerun_of
        caller = parse(run.trace_context.get("link", ""))
        links = (
            [Link(SpanContext(caller.trace_id, caller.span_id, True, TraceFlags(caller.flags)))]
            if caller is not None
            else []
        )
        self._emit(
            _run_name(run),
            (root.trace_id, root.span_id),
            None,
            run.created_at,
            event.time,
            attributes,
            links=links,
            error=(run.error or "failed") if status is RunStatus.FAILED else "",
            started=run.started_at,
        )

    def _emit(
        self,
        name: str,
        ids: tuple[int, int] | None,
        parent: SpanContext | None,
        begun: datetime,
        ended: datetime,
        attributes: Mapping[str, Any],
        *,
        links: Sequence[Link] = (),
        error: str = "",
        started: datetime | None = None,
    ) -> None:
        """A span that began and ended in the past, with the ids `ids` (None: a new span id in
        the parent's trace), sampled as the tracer would sample it."""
        trace_id, span_id = ids if ids is not None else (parent.trace_id if parent else 0, 0)
        span_id = span_id or self._ids.generate_span_id()
        context = trace.set_span_in_context(NonRecordingSpan(parent)) if parent else None
        sampling = self.provider.sampler.should_sample(
            context, trace_id, name, SpanKind.INTERNAL, attributes, links
        )
        if sampling.decision is Decision.DROP:
            return
        sampled = TraceFlags.SAMPLED if sampling.decision is Decision.RECORD_AND_SAMPLE else 0
        if sampling.attributes:
            attributes = {**attributes, **sampling.attributes}
        start = _nanos(begun)
        span = ReadableSpan(
            name,
            SpanContext(
                trace_id, span_id, False,
                TraceFlags(TraceFlags.RANDOM_TRACE_ID | sampled), sampling.trace_state,
            ),
            parent,
            self.provider.resource,
            attributes,
            [SpanEvent("started", timestamp=_nanos(started))] if started is not None else (),
            links,
            SpanKind.INTERNAL,
            status=Status(StatusCode.ERROR, error[:_MAX_DESCRIPTION]) if error else _UNSET,
            start_time=start,
            end_time=max(start, _nanos(ended)),
            instrumentation_scope=self._scope,
        )  # fmt: skip
        self._processors.on_end(span)

    # --- the process --------------------------------------------------------------------------

    def rpc_interceptor(self) -> grpc.aio.ServerInterceptor:
        """A span per RPC; OTEL_PYTHON_GRPC_EXCLUDED_SERVICES (comma-separated full service
        names) leaves some out, as the instrumentation reads it elsewhere."""
        from opentelemetry.instrumentation.grpc import filters
        from opentelemetry.instrumentation.grpc.version import __version__

        excluded = [
            s.strip()
            for s in os.environ.get("OTEL_PYTHON_GRPC_EXCLUDED_SERVICES", "").split(",")
            if s.strip()
        ]
        keep = filters.negate(filters.any_of(*(filters.service_name(s) for s in excluded)))
        tracer = trace.get_tracer(
            "opentelemetry.instrumentation.grpc", __version__, self.provider,
            schema_url="https://opentelemetry.io/schemas/1.11.0",
        )  # fmt: skip
        return _RpcSpans(tracer, filter_=keep if excluded else None)  # type: ignore[no-untyped-call]

    def shutdown(self) -> None:
        """Export what is still queued, then stop (blocks: call it off the event loop)."""
        self.provider.shutdown()


class _RpcSpans(OpenTelemetryAioServerInterceptor):
    """The instrumentation's aio server interceptor, also for streams that send with
    `context.write` (a coroutine, as every stream of this server is behind its guard): it
    iterates every streaming handler as an async generator and fails on those
    (opentelemetry-python-contrib#3066, open), where a coroutine needs only awaiting under the
    span, as a unary call's does."""

    def _intercept_aio_server_stream(self, behavior: Any, handler_call_details: Any) -> Any:
        if inspect.isasyncgenfunction(behavior):
            return super()._intercept_aio_server_stream(behavior, handler_call_details)  # type: ignore[no-untyped-call]
        return self._intercept_aio_server_unary(behavior, handler_call_details)  # type: ignore[no-untyped-call]


def _run_name(run: Run) -> str:
    return f"run {run.template.id}"


def _parent(root: RunSpan) -> SpanContext:
    return SpanContext(root.trace_id, root.span_id, True, TraceFlags(root.flags))


def _attempt_context(root: RunSpan, step_id: str, attempt: int) -> SpanContext:
    span_id = root.attempt_span_id(step_id, attempt)
    return SpanContext(root.trace_id, span_id, False, TraceFlags(root.flags))


def _nanos(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000) * 1000


def service_resource() -> Resource:
    """OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES as the SDK reads them; "sluice" when
    neither names the service."""
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "sluice"}))
    return resource


def from_environment(environ: Mapping[str, str] | None = None) -> Tracing | None:
    """The server's tracing as the OTEL_* variables configure it, or None (off). ConfigError
    for an exporter that is not installed or a protocol the OTLP exporter does not speak."""
    environ = os.environ if environ is None else environ
    names = exporter_names(environ)
    if not names:
        return None
    exporters = [_exporter(name, environ) for name in names]
    # Each exporter behind a batch (OTEL_BSP_* tune it): spans are handed to a thread, never
    # exported on the event loop.
    return Tracing([BatchSpanProcessor(exporter) for exporter in exporters])


def _exporter(name: str, environ: Mapping[str, str]) -> SpanExporter:
    entry = name
    if name == "otlp":
        protocol = (
            environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "grpc"
        ).strip()
        if protocol not in _OTLP_BY_PROTOCOL:
            raise ConfigError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not an OTLP protocol: use "
                "grpc (the default) or http/protobuf"
            )
        entry = _OTLP_BY_PROTOCOL[protocol]
    installed = {e.name: e for e in entry_points(group="opentelemetry_traces_exporter")}
    if entry not in installed:
        package = _EXPORTER_PACKAGES.get(entry)
        hint = f": install {package}" if package else ""
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER: no span exporter {name!r} is installed{hint} (installed: "
            f"{', '.join(sorted({'otlp', 'none', *installed}))})"
        )
    exporter: SpanExporter = installed[entry].load()()
    return exporter
