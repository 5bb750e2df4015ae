"""Whether the standard OTEL_* variables ask the server to trace, read without loading the
OpenTelemetry SDK (a server that does not trace never imports it: `tracing` does)."""

from __future__ import annotations

from collections.abc import Mapping


def exporter_names(environ: Mapping[str, str]) -> list[str]:
    """The span exporters the environment asks for; [] when tracing is off: OTEL_SDK_DISABLED
    is true, or neither OTEL_TRACES_EXPORTER nor an OTLP endpoint is set (the SDK would export
    to localhost:4317 by default; a server traces only when asked to)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    listed = environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if not listed:
        endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        return ["otlp"] if endpoint else []
    return [n for n in (p.strip().lower() for p in listed.split(",")) if n and n != "none"]
