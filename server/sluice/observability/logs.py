"""Where log lines go and how they look; only the process's entry point calls `configure`.

Sluice's own lines are emitted with structlog (`structlog.get_logger(__name__)`, fields as
keywords) and rendered by structlog itself: about 10 us a line, a third of what the standard
library's record machinery costs, which matters for the few lines every run logs. Lines of the
libraries underneath (gRPC, SQLAlchemy, asyncio) and any `logging` call come through the
standard library and get the same rendering. Both write whole lines to the same stream.

The rendering is JSON lines (one object per line: timestamp, level, logger, message, fields)
when the stream is not a terminal, so a collector can parse them, and coloured key=value on a
terminal, for a person.

On a traced server (OTEL_* variables), a line logged under a span (a step's handler, a call)
carries that span's `trace_id` and `span_id` (`add_trace_ids`), and the run log's lines name
their run's trace (`run_log`), so a line leads to its trace.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

import structlog
from opentelemetry import trace
from structlog.typing import EventDict, Processor


def configure(
    level: str = "INFO",
    output: str = "auto",
    stream: TextIO | None = None,
    *,
    trace_ids: bool = False,
) -> None:
    """Send every log line at `level` or above to `stream` (stderr), as JSON lines or console
    text (`output` "json", "console", or "auto": console on a terminal). `trace_ids`: the
    server traces; lines carry the current span's ids."""
    stream = stream or sys.stderr
    terminal = stream.isatty()
    as_json = output == "json" or (output == "auto" and not terminal)
    threshold = logging.getLevelNamesMapping()[level.upper()]
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    render: list[Processor] = (
        [
            structlog.processors.format_exc_info,
            _json_fields,
            structlog.processors.JSONRenderer(),
        ]
        if as_json
        else [structlog.dev.ConsoleRenderer(colors=terminal)]
    )
    # Sluice's own JSON lines take one processor instead of six: every run logs a few lines,
    # and the chain cost 30 us a line under load (8 % of the server's time at 500 runs/s).
    # The span's ids only when tracing is on: otherwise no line pays for the look-up.
    traced: list[Processor] = [add_trace_ids] if trace_ids else []
    own: list[Processor] = (
        [_drop_unset, *traced, _render_json]
        if as_json
        else [_drop_unset, *traced, structlog.stdlib.add_logger_name,
              structlog.processors.add_log_level, stamp, *render]
    )  # fmt: skip
    structlog.configure(
        processors=own,
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=lambda name="sluice", *_: _NamedWriter(stream, name),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.stdlib.add_log_level,
                structlog.stdlib.ExtraAdder(),
                _drop_unset,
                *traced,
                stamp,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *render],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(threshold)
    # Alembic announces its context and every migration at INFO on each start; the store logs
    # one line of its own when it creates or upgrades the schema.
    logging.getLogger("alembic").setLevel(max(threshold, logging.WARNING))


class _NamedWriter(structlog.WriteLogger):
    """structlog's writer, named as `get_logger(name)` was called (add_logger_name reads it)."""

    def __init__(self, stream: TextIO, name: str) -> None:
        super().__init__(stream)
        self.name = name


def add_trace_ids(_logger: object, _method: str, event: EventDict) -> EventDict:
    """The current span's `trace_id` and `span_id` on a line logged under one (a step's
    handler, a call), unless the line names its own (the run log's name their run's)."""
    if "trace_id" not in event:
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            event["trace_id"] = f"{span.trace_id:032x}"
            event["span_id"] = f"{span.span_id:016x}"
    return event


def _drop_unset(_logger: object, _method: str, event: EventDict) -> EventDict:
    """Fields given as None are left out: callers pass optional fields unconditionally."""
    if None in event.values():
        return {key: value for key, value in event.items() if value is not None}
    return event


def _render_json(logger: object, method: str, event: EventDict) -> str:
    """The whole JSON line at once: the common fields first, then the line's own."""
    if "exc_info" in event:
        event = structlog.processors.format_exc_info(logger, method, event)
    text = event.pop("event", "")
    line = {
        "timestamp": datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "level": _LEVELS.get(method, method),
        "logger": getattr(logger, "name", None),
        "message": text,
    }
    line.update(event)
    return _ENCODE(line)


# Built once: json.dumps with an argument builds an encoder on every call.
_ENCODE = json.JSONEncoder(default=repr).encode


# structlog calls the method "warn" or "exception" for some levels; the line says the level.
_LEVELS = {"warn": "warning", "exception": "error", "critical": "critical"}


def _json_fields(_logger: object, _method: str, event: EventDict) -> EventDict:
    """The common fields first, and the line's text as "message", as collectors expect."""
    return {
        "timestamp": event.pop("timestamp", None),
        "level": event.pop("level", None),
        "logger": event.pop("logger", None),
        "message": event.pop("event", ""),
        **event,
    }
