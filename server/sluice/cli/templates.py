"""`sluice templates`, `sluice template show` and `sluice graph`."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from sluice.cli import dag, inputs, render
from sluice.cli.connection import DEFAULT_ADDRESS, Address, CaFile, Connection, Json, Token
from sluice.cli.outcome import ExitCode, run_command
from sluice.client import InvalidArgumentError, NotFoundError, WorkflowClient


def templates(
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
    json_output: Json = False,
) -> None:
    """List the templates: the predefined ones and those registered on the server."""

    async def command() -> ExitCode:
        async with Connection(address, token, ca_file).client() as client:
            found = await client.list_templates()
        if json_output:
            print(render.list_json("templates", found))
        else:
            render.console().print(render.templates_table(found))
        return ExitCode.OK

    run_command(command(), address=address)


def show_template(
    template_id: Annotated[str, typer.Argument(metavar="ID", help="Template id.")],
    version: Annotated[int, typer.Option(help="Version; 0 is the latest.", min=0)] = 0,
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
    json_output: Json = False,
) -> None:
    """Show a template: params, steps and quality gates."""

    async def command() -> ExitCode:
        async with Connection(address, token, ca_file).client() as client:
            template = await client.get_template(template_id, version=version)
        if json_output:
            print(render.to_json(template))
        else:
            render.console().print(render.template_detail(template))
        return ExitCode.OK

    run_command(command(), address=address)


class GraphFormat(StrEnum):
    MERMAID = "mermaid"
    DOT = "dot"


def graph(
    reference: Annotated[
        str,
        typer.Argument(
            metavar="ID|TEMPLATE",
            help="A run id (labels show step status), a template id or a template JSON file.",
        ),
    ],
    fmt: Annotated[
        GraphFormat, typer.Option("--format", help="Mermaid flowchart or Graphviz DOT.")
    ] = GraphFormat.MERMAID,
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
    json_output: Json = False,
) -> None:
    """Print the DAG of a template or run as Mermaid or Graphviz DOT.

    Steps are nodes (optional ones dashed), dependencies are edges, and each gate sits on the
    edges leaving its step (or is a node after it when nothing depends on that step).
    """

    async def command() -> ExitCode:
        found = await _dag(Connection(address, token, ca_file), reference)
        print(dag.to_json(found) if json_output else dag.render(found, fmt.value))
        return ExitCode.OK

    run_command(command(), address=address)


async def _dag(connection: Connection, reference: str) -> dag.Dag:
    if (template := inputs.template_file(reference)) is not None:
        return dag.Dag.of_template(template)
    async with connection.client() as client:
        return await _dag_by_id(client, reference)


async def _dag_by_id(client: WorkflowClient, reference: str) -> dag.Dag:
    # Template ids and run ids share one argument; a template is the likelier intent.
    try:
        return dag.Dag.of_template(await client.get_template(reference))
    except (NotFoundError, InvalidArgumentError):
        pass
    try:
        return dag.Dag.of_run(await client.get_workflow(reference))
    except (NotFoundError, InvalidArgumentError):
        raise NotFoundError(f"no template or run {reference!r}") from None
