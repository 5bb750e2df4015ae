"""`sluice events`: a run's stored events, every page of them, without a stream."""

from __future__ import annotations

from typing import Annotated

import typer

from sluice.cli import inputs, render
from sluice.cli.connection import DEFAULT_ADDRESS, Address, CaFile, Connection, Json, Token
from sluice.cli.outcome import ExitCode, run_command
from sluice.client import WorkflowEvent


def events(
    workflow_id: Annotated[str, typer.Argument(metavar="ID", help="Run id.")],
    event_type: Annotated[
        list[str] | None,
        typer.Option(
            "--type",
            metavar="TYPE",
            help=f"Only events of this type (repeatable): {', '.join(inputs.event_type_names())}.",
        ),
    ] = None,
    step: Annotated[
        list[str] | None,
        typer.Option(
            "--step",
            metavar="STEP",
            help="Only events of this step and of the gates on it (repeatable).",
        ),
    ] = None,
    after: Annotated[int, typer.Option(min=0, help="Only events after this sequence number.")] = 0,
    page_size: Annotated[
        int, typer.Option(min=1, max=1000, help="Events fetched per call; every page is read.")
    ] = 100,
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
    json_output: Json = False,
) -> None:
    """List a run's stored events, oldest first: all of them, or those of some types or steps.

    One line per event as `sluice watch --plain` prints them; with --json, one object
    {"events": [...]} of proto-JSON events. Unlike watch it does not wait for more: for a run
    still going, it ends with the last event stored (list again with --after LAST to go on).
    """

    async def command() -> ExitCode:
        types = inputs.parse_event_types(event_type or [])
        found: list[WorkflowEvent] = []
        async with Connection(address, token, ca_file).client() as client:
            pages = client.iter_workflow_events(
                workflow_id, types=types, step_ids=step or [], after_sequence=after,
                page_size=page_size,
            )  # fmt: skip
            async for event in pages:
                if json_output:
                    found.append(event)
                else:  # page by page as they come: a long log starts printing at once
                    print(render.event_line(event), flush=True)
        if json_output:
            print(render.list_json("events", found))
        return ExitCode.OK

    run_command(command(), address=address)
