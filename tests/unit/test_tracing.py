"""Tracing without a server: what the OTEL_* variables turn on, the ids a run's spans get, and
spans made from events (sampled as the run's trace was)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, DEFAULT_ON

from sluice.config import ConfigError
from sluice.engine.model import Event, EventType, RunStatus, StepSpec, StepStatus, Template
from sluice.engine.model import Run as RunModel
from sluice.observability import trace_ids
from sluice.observability.otel_env import exporter_names
from sluice.observability.tracing import Tracing, from_environment, service_resource

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({}, []),
        ({"OTEL_SERVICE_NAME": "sluice"}, []),  # naming the service alone exports nothing
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp, Console"}, ["otlp", "console"]),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_SDK_DISABLED": "TRUE"}, []),
    ],
)
def test_tracing_is_on_only_when_the_variables_ask_for_an_exporter(
    env: dict[str, str], names: list[str]
) -> None:
    assert exporter_names(env) == names
    if not names:
        assert from_environment(env) is None


def test_exporters_are_found_by_their_standard_names() -> None:
    for env in ({"OTEL_TRACES_EXPORTER": "console"}, {"OTEL_TRACES_EXPORTER": "otlp"}):
        tracing = from_environment(env)
        assert tracing is not None
        processors = tracing.provider._active_span_processor._span_processors
        assert [type(p) for p in processors] == [BatchSpanProcessor]
        tracing.shutdown()


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaegerx"}, "no span exporter 'jaegerx' is installed"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
            "install opentelemetry-exporter-otlp-proto-http",
        ),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"},
            "'carrier-pigeon' is not an OTLP protocol",
        ),
    ],
)
def test_an_exporter_that_cannot_be_made_is_a_config_error(env: dict[str, str], said: str) -> None:
    with pytest.raises(ConfigError, match=said):
        from_environment(env)


def test_the_service_is_sluice_unless_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    assert service_resource().attributes["service.name"] == "sluice"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "sluice-eu")
    assert service_resource().attributes["service.name"] == "sluice-eu"


def test_a_traceparent_is_read_strictly() -> None:
    span = trace_ids.parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03")
    assert span == trace_ids.RunSpan(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, 3)
    for bad in (
        "",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "00-0af7651916cd43dd8448eb211c80319z-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319-cb7ad6b7169203331-01",
    ):
        assert trace_ids.parse(bad) is None, bad
    assert trace_ids.run_span({}) is None


def test_an_attempts_span_id_is_the_same_everywhere_and_its_own() -> None:
    run = trace_ids.RunSpan(1, 2, 1)
    ids = {run.attempt_span_id(step, n) for step in ("a", "b", "a/1") for n in (1, 2, 11)}
    assert len(ids) == 9 and 0 not in ids
    assert run.attempt_span_id("a", 1) == trace_ids.RunSpan(1, 2, 1).attempt_span_id("a", 1)
    assert run.attempt_span_id("a", 1) != trace_ids.RunSpan(1, 3, 1).attempt_span_id("a", 1)


def _run(tracing: Tracing) -> RunModel:
    template = Template(id="t", steps=(StepSpec(id="a", type="sleep"),))
    run = RunModel.new(id="r1", owner="alice", template=template, params={}, now=T0)
    run.trace_context = tracing.new_run(run)
    return run


def _through_the_end(tracing: Tracing, run: RunModel) -> None:
    run.status, run.started_at = RunStatus.RUNNING, T0 + timedelta(seconds=1)
    started = Event(EventType.STEP_STARTED, T0 + timedelta(seconds=1), "a", attempt=1)
    tracing.committed(run, [started])
    run.steps["a"].status = StepStatus.COMPLETED
    run.status = RunStatus.COMPLETED
    ended = T0 + timedelta(seconds=3)
    tracing.committed(
        run,
        [
            Event(EventType.STEP_COMPLETED, ended, "a", attempt=1),
            Event(EventType.WORKFLOW_COMPLETED, ended, run_status=RunStatus.COMPLETED),
        ],
    )


def test_spans_are_emitted_with_the_stored_ids_and_the_events_times() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing([SimpleSpanProcessor(exporter)], sampler=DEFAULT_ON)
    run = _run(tracing)
    _through_the_end(tracing, run)
    stored = trace_ids.run_span(run.trace_context)
    assert stored is not None and stored.flags == 0x03  # sampled, random trace id
    attempt, root = exporter.get_finished_spans()
    assert (root.context.trace_id, root.context.span_id) == (stored.trace_id, stored.span_id)
    assert root.start_time == int(T0.timestamp()) * 10**9
    assert root.end_time == int(T0.timestamp() + 3) * 10**9
    assert attempt.context.span_id == stored.attempt_span_id("a", 1)
    assert attempt.start_time == int(T0.timestamp() + 1) * 10**9
    [began] = root.events
    assert (began.name, began.timestamp) == ("started", int(T0.timestamp() + 1) * 10**9)
    # The stored ids were handed out for these spans only: others get random ones.
    other = tracing.provider.get_tracer("t").start_span("other")
    assert other.get_span_context().span_id not in (stored.span_id, attempt.context.span_id)


def test_a_run_its_sampler_left_out_emits_no_span() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing([SimpleSpanProcessor(exporter)], sampler=ALWAYS_OFF)
    run = _run(tracing)
    stored = trace_ids.run_span(run.trace_context)
    assert stored is not None and stored.flags == 0x02  # not sampled: workers see that too
    assert tracing.carrier(run, "a", 1)["traceparent"].endswith("-02")
    _through_the_end(tracing, run)
    assert exporter.get_finished_spans() == ()
