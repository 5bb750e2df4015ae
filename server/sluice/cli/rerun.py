"""`sluice rerun` and `sluice retry`: a new run from a failed one, a retry without its wait."""

from __future__ import annotations

from typing import Annotated

import typer

from sluice.cli import render
from sluice.cli.connection import DEFAULT_ADDRESS, Address, CaFile, Connection, Json, Token
from sluice.cli.outcome import ExitCode, exit_code_for_status, run_command

RunId = Annotated[str, typer.Argument(metavar="ID", help="Run id.")]


def rerun(
    workflow_id: Annotated[
        str, typer.Argument(metavar="ID", help="The FAILED or CANCELLED run to rerun.")
    ],
    from_step: Annotated[
        str,
        typer.Option(
            "--from",
            metavar="STEP",
            help="Run this step and every step downstream of it again, even if they completed.",
        ),
    ] = "",
    auto_approve: Annotated[
        bool | None,
        typer.Option(
            "--auto-approve/--no-auto-approve",
            show_default=False,
            help="Whether approval gates pass at once; default: the original run's options.",
        ),
    ] = None,
    wait: Annotated[
        bool, typer.Option(help="Return once the new run rests; exit code as for `run`.")
    ] = False,
    request_id: Annotated[
        str | None,
        typer.Option(help="Idempotency key: repeating the command with it gets the same run."),
    ] = None,
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
    json_output: Json = False,
) -> None:
    """Rerun a FAILED or CANCELLED run as a new run, started at once.

    The new run keeps the original's params and template, takes over the outputs of the steps
    that completed (they do not run again) and runs the rest. Prints the new run's id.
    """

    async def command() -> ExitCode:
        async with Connection(address, token, ca_file).client() as client:
            workflow = await client.rerun_workflow(
                workflow_id, from_step=from_step, auto_approve=auto_approve, wait=wait,
                request_id=request_id,
            )  # fmt: skip
        if json_output:
            print(render.to_json(workflow))
        else:
            reused = ", ".join(workflow.reused_step_ids) or "none"
            print(
                f"rerun of {workflow.rerun_of}: run {workflow.id} is "
                f"{render.run_status(workflow.status)} (steps reused: {reused})"
            )
        return exit_code_for_status(workflow.status) if wait else ExitCode.OK

    run_command(command(), address=address)


def retry(
    workflow_id: RunId,
    step: Annotated[
        str, typer.Argument(metavar="STEP", help="A step waiting out its retry backoff.")
    ],
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
    json_output: Json = False,
) -> None:
    """Start the next attempt of a RETRYING step now instead of at its retry time."""

    async def command() -> ExitCode:
        async with Connection(address, token, ca_file).client() as client:
            workflow = await client.retry_step(workflow_id, step)
        if json_output:
            print(render.to_json(workflow))
        else:
            attempt = next(s.attempt for s in workflow.steps if s.step_id == step)
            print(f"retrying step {step} now (attempt {attempt}): run {workflow.id} is "
                  f"{render.run_status(workflow.status)}")  # fmt: skip
        return ExitCode.OK

    run_command(command(), address=address)
