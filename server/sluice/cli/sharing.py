"""`sluice template export|import`: a template as a JSON file people can share.

The file is the proto-JSON form CreateTemplate takes (camelCase), without the fields a server
sets (version, predefined, createTime): exported from one server, it registers on another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sluice.cli import inputs, render, templates
from sluice.cli.connection import DEFAULT_ADDRESS, Address, CaFile, Connection, Json, Token
from sluice.cli.outcome import ExitCode, InputError, run_command
from sluice.client import AlreadyExistsError, Template


def shareable(template: Template) -> Template:
    """The template as CreateTemplate takes it: without the fields a server sets (a shared
    file that carried them would claim a version or a predefined status the receiving server
    never gave it)."""
    copy = Template()
    copy.CopyFrom(template)
    copy.ClearField("version")
    copy.ClearField("predefined")
    copy.ClearField("create_time")
    return copy


def export_template(
    template_id: Annotated[str, typer.Argument(metavar="ID", help="Template id.")],
    version: Annotated[int, typer.Option(help="Version; 0 is the latest.", min=0)] = 0,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            dir_okay=False,
            help="Write the template to FILE instead of standard output.",
        ),
    ] = None,
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
) -> None:
    """Write a template (predefined or registered) as a JSON file to share.

    The file is the proto JSON that `sluice template import` and CreateTemplate take, without
    version, predefined and createTime.
    """

    async def command() -> ExitCode:
        async with Connection(address, token, ca_file).client() as client:
            template = await client.get_template(template_id, version=version)
        text = render.to_json(shareable(template)) + "\n"
        if output is None:
            print(text, end="")
            return ExitCode.OK
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as error:
            raise InputError(f"cannot write {output}: {error.strerror}") from None
        print(f"exported template {template.id} version {template.version} to {output}")
        return ExitCode.OK

    run_command(command(), address=address)


def import_template(
    path: templates.TemplateFile,
    new_id: Annotated[
        str | None,
        typer.Option(
            "--id",
            metavar="NEW_ID",
            help="Register it under this id instead of the file's (required for a predefined "
            "template's export: predefined ids cannot be registered).",
        ),
    ] = None,
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
    json_output: Json = False,
) -> None:
    """Register the template in FILE (as `template create` does), under --id if given.

    Fields a server sets (version, predefined, createTime) are ignored, so the JSON of
    `template show --json` imports too. Importing an id that exists adds a version. A template
    with problems is not registered: each is printed with its field path (exit 2).
    """

    async def command() -> ExitCode:
        template = shareable(inputs.load_template(path))
        if new_id is not None:
            template.id = new_id
        try:
            return await templates.register(
                Connection(address, token, ca_file), template, json_output
            )
        except AlreadyExistsError as error:
            # The one id a registration refuses is a predefined one: say how to import it.
            raise InputError(f"{error.message}: pass it as --id NEW_ID") from None

    run_command(command(), address=address)
