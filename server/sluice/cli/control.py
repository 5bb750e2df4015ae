"""`sluice approve`, `pause`, `resume` and `cancel`: one call each, the run's new state out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import typer

from sluice.cli import render
from sluice.cli.connection import DEFAULT_ADDRESS, Address, CaFile, Connection, Json, Token
from sluice.cli.outcome import ExitCode, run_command
from sluice.client import Workflow, WorkflowClient

RunId = Annotated[str, typer.Argument(metavar="ID", help="Run id.")]
Reason = Annotated[str, typer.Option(help="Why; recorded in the run's events.")]
Call = Callable[[WorkflowClient], Awaitable[Workflow]]


def approve(
    workflow_id: RunId,
    gate: Annotated[str, typer.Argument(metavar="GATE", help="The gate the run waits on.")],
    reject: Annotated[bool, typer.Option(help="Reject instead: the run fails.")] = False,
    comment: Annotated[str, typer.Option(help="Recorded with the decision.")] = "",
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
    json_output: Json = False,
) -> None:
    """Approve (or --reject) the gate a paused run waits on; approving continues the run."""
    _control(
        lambda c: c.approve_gate(workflow_id, gate, approve=not reject, comment=comment),
        f"{'rejected' if reject else 'approved'} gate {gate}",
        Connection(address, token, ca_file), json_output,
    )  # fmt: skip


def pause(
    workflow_id: RunId,
    reason: Reason = "",
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
    json_output: Json = False,
) -> None:
    """Pause a RUNNING run: no new step starts; running ones finish."""
    _control(
        lambda c: c.pause_workflow(workflow_id, reason=reason),
        "paused", Connection(address, token, ca_file), json_output,
    )  # fmt: skip


def resume(
    workflow_id: RunId,
    auto_approve: Annotated[
        bool | None,
        typer.Option(
            "--auto-approve/--no-auto-approve",
            show_default=False,
            help="Change whether approval gates pass at once; default: keep the run's setting.",
        ),
    ] = None,
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
    json_output: Json = False,
) -> None:
    """Resume a PAUSED run from where it stopped."""
    _control(
        lambda c: c.resume_workflow(workflow_id, auto_approve=auto_approve),
        "resumed", Connection(address, token, ca_file), json_output,
    )  # fmt: skip


def cancel(
    workflow_id: RunId,
    reason: Reason = "",
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
    json_output: Json = False,
) -> None:
    """Cancel a run that has not ended: running steps are stopped."""
    _control(
        lambda c: c.cancel_workflow(workflow_id, reason=reason),
        "cancelled", Connection(address, token, ca_file), json_output,
    )  # fmt: skip


def _control(call: Call, done: str, connection: Connection, json_output: bool) -> None:
    async def command() -> ExitCode:
        async with connection.client() as client:
            workflow = await call(client)
        if json_output:
            print(render.to_json(workflow))
        else:
            print(f"{done}: run {workflow.id} is {render.run_status(workflow.status)}")
        return ExitCode.OK

    run_command(command(), address=connection.address)
