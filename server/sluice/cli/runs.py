"""`sluice run`, `watch`, `list` and `show`: starting runs and following them."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from sluice.cli import follow, inputs, render
from sluice.cli.connection import DEFAULT_ADDRESS, Address, CaFile, Connection, Json, Token
from sluice.cli.outcome import ExitCode, exit_code_for_status, run_command
from sluice.cli.state import RunView
from sluice.client import Workflow, WorkflowClient

Live = Annotated[
    bool | None,
    typer.Option(
        "--live/--plain", show_default=False,
        help="Force the live view, or plain lines; default: live on a terminal.",
    ),
]  # fmt: skip


def run(
    template: Annotated[
        str,
        typer.Argument(metavar="TEMPLATE", help="A template id, or a JSON template file path."),
    ],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            metavar="NAME=VALUE",
            help='A param; VALUE is JSON when it parses (500000, true, ["a"]), else text.',
        ),
    ] = None,
    params_file: Annotated[
        Path | None, typer.Option(help="A JSON object of params; --param values win.")
    ] = None,
    auto_approve: Annotated[bool, typer.Option(help="Pass approval gates at once.")] = False,
    notify: Annotated[bool, typer.Option(help="Notify when the run completes.")] = False,
    detach: Annotated[
        bool, typer.Option(help="Return once started; print the run id (or its JSON).")
    ] = False,
    request_id: Annotated[
        str | None,
        typer.Option(help="Idempotency key: rerunning with it returns the same run, started once."),
    ] = None,
    live: Live = None,
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
    json_output: Json = False,
) -> None:
    """Create a run of TEMPLATE, start it and follow it until it rests.

    Exits 0 when it completes, 1 when it fails or is cancelled, 6 when it pauses on a gate
    (continue with `sluice approve ID GATE` or `sluice resume ID`).
    """

    async def command() -> ExitCode:
        source = inputs.template_file(template) or template
        params = inputs.parse_params(param or [], params_file)
        async with Connection(address, token, ca_file).client() as client:
            created = await client.create_workflow(source, params, request_id=request_id)
            started = await client.execute_workflow(
                created.id, auto_approve=auto_approve, notify_on_completion=notify,
                request_id=request_id,
            )  # fmt: skip
            if detach:
                print(render.to_json(started) if json_output else started.id)
                return ExitCode.OK
            json_sink = follow.FinalJsonSink() if json_output else None
            final = await _follow(client, started, live, json_sink, stop_when_paused=True)
        return exit_code_for_status(final.status)

    run_command(command(), address=address)


def watch(
    workflow_id: Annotated[str, typer.Argument(metavar="ID", help="Run id.")],
    after: Annotated[int, typer.Option(min=0, help="Only events after this sequence number.")] = 0,
    follow_: Annotated[
        bool, typer.Option("--follow", help="Keep watching after the run ends (until Ctrl-C).")
    ] = False,
    live: Live = None,
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
    json_output: Json = False,
) -> None:
    """Follow a run's events (stored, then live) until it ends; a pause keeps it waiting.

    With --json, one proto-JSON object per event. Exits 0 when the run completed, 1 when it
    failed or was cancelled.
    """

    async def command() -> ExitCode:
        async with Connection(address, token, ca_file).client() as client:
            workflow = await client.get_workflow(workflow_id)
            json_sink = follow.JsonLinesSink() if json_output else None
            final = await _follow(
                client, workflow, live, json_sink, after=after, follow_ended=follow_
            )
        return exit_code_for_status(final.status)

    run_command(command(), address=address)


async def _follow(
    client: WorkflowClient,
    workflow: Workflow,
    live: bool | None,
    json_sink: follow.Sink | None,
    *,
    after: int = 0,
    follow_ended: bool = False,
    stop_when_paused: bool = False,
) -> Workflow:
    """Follow in the form asked for: JSON (`json_sink`), the live view or plain lines."""

    async def to(sink: follow.Sink) -> Workflow:
        return await follow.follow_run(
            client, workflow, sink,
            after=after, follow=follow_ended, stop_when_paused=stop_when_paused,
        )  # fmt: skip

    if json_sink is not None:
        return await to(json_sink)
    if _wants_live(live):
        # --live into a pipe still draws (tests and `script` recordings rely on that).
        with follow.LiveSink(
            workflow, render.console(force_terminal=bool(live)), after=after
        ) as sink:
            return await to(sink)
    return await to(follow.PlainSink(hint_on_pause=not stop_when_paused))


def _wants_live(live: bool | None) -> bool:
    return live if live is not None else sys.stdout.isatty()


class View(StrEnum):
    BASIC = "basic"
    FULL = "full"


def list_runs(
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            metavar="STATUS",
            help=f"Only runs in this status (repeatable): {', '.join(inputs.status_names())}.",
        ),
    ] = None,
    template: Annotated[str, typer.Option(help="Only runs of this template id.")] = "",
    created_after: Annotated[
        str | None,
        typer.Option(
            metavar="TIME",
            show_default=False,
            help="Only runs created at or after TIME: ISO 8601 (2025-03-01, "
            "2025-03-01T09:30:00Z; local time without a zone) or an age (30m, 24h, 7d).",
        ),
    ] = None,
    created_before: Annotated[
        str | None,
        typer.Option(
            metavar="TIME",
            show_default=False,
            help="Only runs created before TIME (same forms as --created-after).",
        ),
    ] = None,
    view: Annotated[
        View,
        typer.Option(help="full adds each run's template and step outputs (for --json)."),
    ] = View.BASIC,
    limit: Annotated[int, typer.Option(min=1, help="At most this many runs.")] = 20,
    all_pages: Annotated[
        bool, typer.Option("--all", help="Every matching run, page after page (no --limit).")
    ] = False,
    page_token: Annotated[
        str,
        typer.Option(
            metavar="TOKEN",
            show_default=False,
            help="Continue a listing from the token printed after its last page (same filters).",
        ),
    ] = "",
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
    json_output: Json = False,
) -> None:
    """List your runs, newest first.

    When more runs match, the token of the next page follows the table (`nextPageToken` in
    --json); pass it to --page-token to go on.
    """

    async def command() -> ExitCode:
        statuses = inputs.parse_statuses(status or [])
        start = inputs.parse_time(created_after, "--created-after")
        end = inputs.parse_time(created_before, "--created-before")
        found: list[Workflow] = []
        next_token = page_token
        async with Connection(address, token, ca_file).client() as client:
            while True:
                page = await client.list_workflows(
                    statuses=statuses, template_id=template, view=view.value,
                    create_time_start=start, create_time_end=end, page_token=next_token,
                    page_size=_MAX_PAGE if all_pages else min(limit - len(found), _MAX_PAGE),
                )  # fmt: skip
                found.extend(page.workflows)
                next_token = page.next_page_token
                if not next_token or (not all_pages and len(found) >= limit):
                    break
        if json_output:
            print(render.list_json("workflows", found, next_token))
            return ExitCode.OK
        render.console().print(render.runs_table(found))
        if next_token:
            print(f"next page: --page-token {next_token}")
        return ExitCode.OK

    run_command(command(), address=address)


# The largest page the server serves.
_MAX_PAGE = 1000


def show(
    workflow_id: Annotated[str, typer.Argument(metavar="ID", help="Run id.")],
    outputs: Annotated[
        bool, typer.Option("--outputs", help="Print each step's output whole, not cut short.")
    ] = False,
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
    json_output: Json = False,
) -> None:
    """Show a run: its steps (with errors and outputs), gates and metrics."""

    async def command() -> ExitCode:
        async with Connection(address, token, ca_file).client() as client:
            workflow = await client.get_workflow(workflow_id)
        if json_output:
            print(render.to_json(workflow))
            return ExitCode.OK
        out = render.console()
        out.print(render.run_view(RunView.of(workflow)))
        out.print()
        lines = render.run_params(workflow) + render.step_details(workflow, full_outputs=outputs)
        if lines:
            lines.append("")
        lines += render.metrics_lines(workflow) + render.next_step_hint(workflow)
        for line in lines:
            out.print(line, markup=False, soft_wrap=True)
        return ExitCode.OK

    run_command(command(), address=address)


def delete(
    workflow_id: Annotated[str, typer.Argument(metavar="ID", help="Run id.")],
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
) -> None:
    """Delete a run that has ended (COMPLETED, FAILED or CANCELLED) with its events.

    A run that has not ended exits 4: cancel it first.
    """

    async def command() -> ExitCode:
        async with Connection(address, token, ca_file).client() as client:
            await client.delete_workflow(workflow_id)
        print(f"deleted run {workflow_id}")
        return ExitCode.OK

    run_command(command(), address=address)
