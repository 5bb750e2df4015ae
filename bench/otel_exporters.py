"""Span exporters for the tracing-on servers of `bench.ab_observability`: the server's real
configuration path (OTEL_TRACES_EXPORTER names an entry point; a BatchSpanProcessor hands the
spans to its thread) with no network behind it.

- `bench_noop`: drops the spans: what making and batching them costs.
- `bench_encode`: encodes each batch as an OTLP export request (protobuf, as the otlp exporter
  does before it sends), then drops it: that plus the encoding, which runs in the batch
  processor's thread and so competes with the server's loop for the interpreter.

They are found through `bench/otel/sluice_bench_otel-0.dist-info/entry_points.txt`, which the
benchmark puts on the traced servers' PYTHONPATH.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class Noop(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class Encode(SpanExporter):
    def __init__(self) -> None:
        self.bytes = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.bytes += len(encode_spans(spans).SerializeToString())
        return SpanExportResult.SUCCESS
