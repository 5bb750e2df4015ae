"""`sluice schedule create|list|get|update|pause|resume|trigger|delete`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sluice.cli import inputs, render
from sluice.cli.connection import DEFAULT_ADDRESS, Address, CaFile, Connection, Json, Token
from sluice.cli.outcome import ExitCode, run_command
from sluice.v1 import schedule_pb2

ScheduleId = Annotated[str, typer.Argument(metavar="ID", help="Schedule id.")]
# The params of each run (update: all of them, replacing the current ones).
Param = Annotated[
    list[str] | None,
    typer.Option(
        "--param", "-p", metavar="NAME=VALUE",
        help="A param of each run; VALUE is JSON when it parses, else text.",
    ),
]  # fmt: skip
ParamsFile = Annotated[
    Path | None, typer.Option(help="A JSON object of params; --param values win.")
]


class Overlap(StrEnum):
    skip = "skip"
    allow = "allow"
    cancel_previous = "cancel_previous"


def create_schedule(
    schedule_id: ScheduleId,
    template: Annotated[str, typer.Argument(metavar="TEMPLATE", help="Template id.")],
    cron: Annotated[
        str,
        typer.Argument(
            metavar="CRON",
            help='5 fields ("30 2 * * *"), or 6 with seconds first ("*/10 * * * * *").',
        ),
    ],
    time_zone: Annotated[
        str, typer.Option("--time-zone", "--tz", help="IANA time zone the cron is read in.")
    ] = "UTC",
    param: Param = None,
    params_file: ParamsFile = None,
    overlap: Annotated[
        Overlap, typer.Option(help="A slot while the previous run has not ended.")
    ] = Overlap.skip,
    catchup: Annotated[
        float | None,
        typer.Option(
            "--catchup-seconds",
            min=0,
            help="After downtime, slots missed no longer ago than this still fire (default 60).",
        ),
    ] = None,
    version: Annotated[int, typer.Option(help="Template version; 0 is the latest.", min=0)] = 0,
    auto_approve: Annotated[bool, typer.Option(help="Runs pass approval gates at once.")] = False,
    notify: Annotated[bool, typer.Option(help="Notify when each run completes.")] = False,
    paused: Annotated[bool, typer.Option(help="Create it paused.")] = False,
    description: Annotated[str, typer.Option(help="A sentence for people.")] = "",
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
    json_output: Json = False,
) -> None:
    """Create schedule ID: a run of TEMPLATE at every slot of CRON.

    Prints its next fire time (--json: the Schedule). Problems are printed with their field
    path (exit 2).
    """

    async def command() -> ExitCode:
        params = inputs.parse_params(param or [], params_file)
        async with Connection(address, token, ca_file).client() as client:
            created = await client.create_schedule(
                schedule_id, template, cron, params=params, time_zone=time_zone,
                overlap=overlap.value, template_version=version, auto_approve=auto_approve,
                notify_on_completion=notify, paused=paused, description=description,
                catchup_window=timedelta(seconds=catchup) if catchup is not None else None,
            )  # fmt: skip
        if json_output:
            print(render.to_json(created))
        else:
            print(f"created schedule {created.schedule_id}; {_next(created)}")
        return ExitCode.OK

    run_command(command(), address=address)


def list_schedules(
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
    json_output: Json = False,
) -> None:
    """List your schedules."""

    async def command() -> ExitCode:
        async with Connection(address, token, ca_file).client() as client:
            found = await client.list_schedules()
        if json_output:
            print(render.list_json("schedules", found))
            return ExitCode.OK
        table = Table("ID", "TEMPLATE", "CRON", "TIME ZONE", "OVERLAP", "NEXT FIRE", "LAST RUN")
        for s in found:
            table.add_row(
                s.schedule_id, s.template_id, s.cron, s.time_zone, _overlap(s),
                "paused" if s.paused else _time(s, "next_fire_time"), s.last_workflow_id or "-",
            )  # fmt: skip
        render.console().print(table)
        return ExitCode.OK

    run_command(command(), address=address)


def get_schedule(
    schedule_id: ScheduleId,
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
    json_output: Json = False,
) -> None:
    """Show a schedule and its latest slots."""

    async def command() -> ExitCode:
        async with Connection(address, token, ca_file).client() as client:
            found = await client.get_schedule(schedule_id)
        if json_output:
            print(render.to_json(found))
            return ExitCode.OK
        print(f"schedule {found.schedule_id}: template {found.template_id}, cron "
              f"{found.cron!r} in {found.time_zone}, overlap {_overlap(found)}")  # fmt: skip
        if found.description:
            print(f"  {found.description}")
        paused = f"paused: {found.pause_reason}" if found.pause_reason else "paused"
        print(f"  {paused if found.paused else _next(found)}")
        for fire in found.recent_fires:
            status = schedule_pb2.ScheduleFireStatus.Name(fire.status).removeprefix(
                "SCHEDULE_FIRE_STATUS_"
            )
            detail = fire.workflow_id or fire.message
            print(f"  {_time(fire, 'slot_time')}  {status:<8} {detail}")
        return ExitCode.OK

    run_command(command(), address=address)


def update_schedule(
    schedule_id: ScheduleId,
    cron: Annotated[str | None, typer.Option(help="A new cron expression.")] = None,
    time_zone: Annotated[
        str | None, typer.Option("--time-zone", "--tz", help="A new IANA time zone.")
    ] = None,
    param: Param = None,
    params_file: ParamsFile = None,
    overlap: Annotated[Overlap | None, typer.Option(help="A new overlap policy.")] = None,
    catchup: Annotated[
        float | None, typer.Option("--catchup-seconds", min=0, help="A new catch-up window.")
    ] = None,
    template: Annotated[str | None, typer.Option(help="Another template id.")] = None,
    version: Annotated[int | None, typer.Option(min=0, help="Template version; 0 latest.")] = None,
    auto_approve: Annotated[
        bool | None, typer.Option("--auto-approve/--no-auto-approve", show_default=False)
    ] = None,
    notify: Annotated[bool | None, typer.Option("--notify/--no-notify", show_default=False)] = None,
    description: Annotated[str | None, typer.Option(help="A new description.")] = None,
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
    json_output: Json = False,
) -> None:
    """Change the settings given of schedule ID; the others keep their values.

    Params given replace all of the current ones. A new cron or time zone counts from the first slot after now. Prints its next fire time
    (--json: the Schedule).
    """

    async def command() -> ExitCode:
        params = inputs.parse_params(param or [], params_file) if param or params_file else None
        async with Connection(address, token, ca_file).client() as client:
            changed = await client.update_schedule(
                schedule_id, cron=cron, time_zone=time_zone, params=params,
                overlap=overlap.value if overlap is not None else None,
                catchup_window=timedelta(seconds=catchup) if catchup is not None else None,
                template_id=template, template_version=version, auto_approve=auto_approve,
                notify_on_completion=notify, description=description,
            )  # fmt: skip
        if json_output:
            print(render.to_json(changed))
        else:
            print(f"updated schedule {changed.schedule_id}; {_next(changed)}")
        return ExitCode.OK

    run_command(command(), address=address)


def pause_schedule(
    schedule_id: ScheduleId,
    reason: Annotated[str, typer.Option(help="Why; shown with the schedule.")] = "",
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
) -> None:
    """Pause a schedule: no slot fires until `sluice schedule resume`."""

    async def command() -> ExitCode:
        async with Connection(address, token, ca_file).client() as client:
            await client.pause_schedule(schedule_id, reason=reason)
        print(f"paused schedule {schedule_id}")
        return ExitCode.OK

    run_command(command(), address=address)


def resume_schedule(
    schedule_id: ScheduleId,
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
) -> None:
    """Resume a paused schedule from the first slot after now."""

    async def command() -> ExitCode:
        async with Connection(address, token, ca_file).client() as client:
            resumed = await client.resume_schedule(schedule_id)
        print(f"resumed schedule {schedule_id}; {_next(resumed)}")
        return ExitCode.OK

    run_command(command(), address=address)


def trigger_schedule(
    schedule_id: ScheduleId,
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
) -> None:
    """Fire a schedule now, once, under its overlap policy; prints the run id."""

    async def command() -> ExitCode:
        async with Connection(address, token, ca_file).client() as client:
            fire = await client.trigger_schedule(schedule_id)
        if fire.status == schedule_pb2.SCHEDULE_FIRE_STATUS_STARTED:
            print(fire.workflow_id)
            return ExitCode.OK
        status = schedule_pb2.ScheduleFireStatus.Name(fire.status)
        print(f"{status.removeprefix('SCHEDULE_FIRE_STATUS_').lower()}: {fire.message}")
        return ExitCode.FAILED_PRECONDITION  # skipped by the overlap policy, or failed

    run_command(command(), address=address)


def delete_schedule(
    schedule_id: ScheduleId,
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
) -> None:
    """Delete a schedule; the runs it started are kept."""

    async def command() -> ExitCode:
        async with Connection(address, token, ca_file).client() as client:
            await client.delete_schedule(schedule_id)
        print(f"deleted schedule {schedule_id}")
        return ExitCode.OK

    run_command(command(), address=address)


def _overlap(s: schedule_pb2.Schedule) -> str:
    name = schedule_pb2.OverlapPolicy.Name(s.overlap_policy)
    return name.removeprefix("OVERLAP_POLICY_").lower()


def _time(message: schedule_pb2.Schedule | schedule_pb2.ScheduleFire, field: str) -> str:
    if not message.HasField(field):  # type: ignore[arg-type]
        return "-"
    value: datetime = getattr(message, field).ToDatetime(tzinfo=UTC)
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


def _next(s: schedule_pb2.Schedule) -> str:
    return f"next fire {_time(s, 'next_fire_time')}" if s.HasField("next_fire_time") else "no slot"
