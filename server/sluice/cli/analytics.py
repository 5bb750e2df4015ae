"""`sluice analytics`: GetAnalytics' figures as tables: templates, step types, gate types."""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Annotated

import typer
from google.protobuf.duration_pb2 import Duration
from rich.console import Group
from rich.table import Table

from sluice.cli import inputs, render
from sluice.cli.connection import DEFAULT_ADDRESS, Address, CaFile, Connection, Json, Token
from sluice.cli.outcome import ExitCode, run_command
from sluice.client import GateType
from sluice.v1.analytics_pb2 import DurationStats
from sluice.v1.workflow_service_pb2 import GetAnalyticsResponse


def analytics(
    since: Annotated[
        str | None,
        typer.Option(
            metavar="TIME",
            show_default=False,
            help="Count the runs that ended at or after TIME: an age (30m, 24h, 7d) or ISO 8601 "
            "(2025-03-01, 2025-03-01T09:30:00Z; local time without a zone), rounded down to the "
            "hour; default: the 24 hours up to the end of --until's hour.",
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            metavar="TIME",
            show_default=False,
            help="... and before TIME (same forms); default: the end of the current hour.",
        ),
    ] = None,
    template: Annotated[str, typer.Option(help="Only runs of this template id.")] = "",
    version: Annotated[
        int, typer.Option(min=0, help="With --template: only runs of this version (0: all).")
    ] = 0,
    step_type: Annotated[str, typer.Option(help="Only this step type in the step table.")] = "",
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
    json_output: Json = False,
) -> None:
    """Your runs that ended in a window: per template, step type and gate type, counts by
    outcome, success rates and duration percentiles.

    The window is whole hours (UTC); percentiles are within 9.1 % (means are exact).
    """

    async def command() -> ExitCode:
        start = inputs.parse_time(since, "--since")
        end = inputs.parse_time(until, "--until")
        async with Connection(address, token, ca_file).client() as client:
            figures = await client.get_analytics(
                start_time=start, end_time=end, template_id=template,
                template_version=version, step_type=step_type,
            )  # fmt: skip
        if json_output:
            print(render.to_json(figures))
        else:
            render.console().print(view(figures))
        return ExitCode.OK

    run_command(command(), address=address)


def view(figures: GetAnalyticsResponse) -> Group:
    start = figures.start_time.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M")
    end = figures.end_time.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M")
    header = f"runs that ended from {start} to {end} UTC"
    if not figures.templates:
        return Group(header, "no run ended in this window")
    durations = ("p50", "p95", "p99", "mean")
    runs = _table("template", "runs", "completed", "failed", "cancelled", "success", *durations)
    for t in figures.templates:
        runs.add_row(
            t.template_id, str(t.runs), str(t.completed), str(t.failed), str(t.cancelled),
            _rate(t.success_rate if t.HasField("success_rate") else None), *_durations(t.duration),
        )  # fmt: skip
    steps = _table(
        "step type", "steps", "completed", "failed", "skipped", "cancelled", "attempts",
        "success", *durations,
    )  # fmt: skip
    for s in figures.step_types:
        steps.add_row(
            s.step_type, str(s.steps), str(s.completed), str(s.failed), str(s.skipped),
            str(s.cancelled), str(s.attempts), _rate(s.success_rate if s.HasField("success_rate") else None), *_durations(s.duration),
        )  # fmt: skip
    parts: list[str | Table] = [header, "", runs, "", steps]
    if figures.gate_types:
        gates = _table(
            "gate type", "gates", "passed", "failed", "approved", "rejected", "skipped",
            "undecided", "pass rate",
        )  # fmt: skip
        for g in figures.gate_types:
            gates.add_row(
                GateType.Name(g.gate_type).removeprefix("GATE_TYPE_").lower(), str(g.gates),
                str(g.passed), str(g.failed), str(g.approved), str(g.rejected), str(g.skipped),
                str(g.undecided), _rate(g.pass_rate if g.HasField("pass_rate") else None),
            )  # fmt: skip
        parts += ["", gates]
    return Group(*parts)


def _table(*columns: str) -> Table:
    table = Table(*columns, box=None, header_style="bold")
    table.columns[0].no_wrap = True
    for column in table.columns[1:]:
        column.justify = "right"
    return table


def _rate(value: float | None) -> str:
    return f"{value:.1%}" if value is not None else "-"


def _durations(stats: DurationStats) -> tuple[str, ...]:
    if not stats.count:
        return ("-",) * 4
    return tuple(_short(getattr(stats, name)) for name in ("p50", "p95", "p99", "mean"))


def _short(value: Duration) -> str:
    """Milliseconds below a second (step durations often are), else as `render.duration`."""
    td = value.ToTimedelta()
    if td < timedelta(seconds=1):
        return f"{td.total_seconds() * 1000:.1f}ms"
    return render.duration(td)
