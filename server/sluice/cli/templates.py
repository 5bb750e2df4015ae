"""`sluice templates`, `sluice template create|validate|show|delete` and `sluice graph`."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from sluice.cli import dag, inputs, render
from sluice.cli.connection import DEFAULT_ADDRESS, Address, CaFile, Connection, Json, Token
from sluice.cli.outcome import ExitCode, run_command
from sluice.client import InvalidArgumentError, NotFoundError, Template, WorkflowClient


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


TemplateFile = Annotated[
    Path,
    typer.Argument(
        metavar="FILE", help="A template in proto JSON, as CreateTemplate takes it.",
        dir_okay=False, show_default=False,
    ),
]  # fmt: skip


def create_template(
    path: TemplateFile,
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
    json_output: Json = False,
) -> None:
    """Register the template in FILE; registering its id again adds a version.

    Prints the id and version it got (--json: the registered Template). A template with
    problems is not registered: each is printed with its field path (exit 2).
    """

    async def command() -> ExitCode:
        template = inputs.load_template(path)
        return await register(Connection(address, token, ca_file), template, json_output)

    run_command(command(), address=address)


async def register(connection: Connection, template: Template, json_output: bool) -> ExitCode:
    """CreateTemplate, then say what it registered (--json: the registered Template)."""
    async with connection.client() as client:
        created = await client.create_template(template)
    if json_output:
        print(render.to_json(created))
    else:
        print(f"registered template {created.id} version {created.version}")
    return ExitCode.OK


def validate_template(
    path: TemplateFile,
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
    json_output: Json = False,
) -> None:
    """Check the template in FILE on the server, registering nothing.

    Prints every problem with its field path. Exits 0 when the template is valid, 2 when not.
    """

    async def command() -> ExitCode:
        template = inputs.load_template(path)
        async with Connection(address, token, ca_file).client() as client:
            result = await client.validate_template(template)
        if json_output:
            print(render.to_json(result))
        elif result.valid:
            print(f"{path}: valid")
        else:
            count = len(result.violations)
            print(f"{path}: {count} problem{'' if count == 1 else 's'}")
            for violation in result.violations:
                print(f"  {violation.field}: {violation.description}")
        return ExitCode.OK if result.valid else ExitCode.USAGE

    run_command(command(), address=address)


def delete_template(
    template_id: Annotated[str, typer.Argument(metavar="ID", help="Registered template id.")],
    version: Annotated[
        int, typer.Option(min=0, help="Delete only this version; 0 deletes every version.")
    ] = 0,
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
) -> None:
    """Delete a registered template (every version, or --version N).

    Runs created from it keep their copy. Predefined templates cannot be deleted (exit 4).
    """

    async def command() -> ExitCode:
        async with Connection(address, token, ca_file).client() as client:
            deleted = await client.delete_template(template_id, version=version)
        which = (
            f"version {version}" if version else f"{deleted} version{'' if deleted == 1 else 's'}"
        )
        print(f"deleted {which} of template {template_id}")
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
        GraphFormat,
        typer.Option(
            "--format",
            help="mermaid: a Mermaid flowchart (GitHub and many editors draw it); dot: Graphviz "
            "DOT, drawn by Graphviz's `dot` (install graphviz, e.g. `apt install graphviz`): "
            "`sluice graph ID --format dot | dot -Tsvg > dag.svg`.",
        ),
    ] = GraphFormat.MERMAID,
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
    json_output: Json = False,
) -> None:
    """Print the DAG of a template or run as Mermaid or Graphviz DOT (text; Graphviz draws it).

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
