"""`sluice serve`: the server's settings as typer options, made from config's option table.

`sluice-server` reads the same table with argparse (config.parse), so the two take the same
flags and variables; here they get the CLI's help, with each variable and default shown.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from sluice import config

_HELP = "Start the server (what `make run` calls). Flags win over environment variables."


def serve_command() -> Callable[..., None]:
    """The command function, its parameters built from the table (typer reads the signature)."""
    options = [o for o in config.option_help() if o.flag is not None]

    def serve(ctx: typer.Context, **given: Any) -> None:
        # Defaults are shown in the help but left to config, which also reads *_FILE variables.
        given = {
            name: value
            for name, value in given.items()
            if (source := ctx.get_parameter_source(name)) is None or source.name != "DEFAULT"
        }
        try:
            settings = config.resolve(_raw_values(options, given))
        except config.ConfigError as error:
            print(f"error: {error}", file=sys.stderr)
            raise typer.Exit(2) from None
        # The server, SQLAlchemy and Alembic take half a second to import; other commands
        # should not pay for it.
        from sluice import server

        server.run(settings)

    context = inspect.Parameter(
        "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
    )
    parameters = [context, *(_parameter(o) for o in options)]
    serve.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    serve.__doc__ = _HELP
    return serve


def environment_only_help() -> str:
    """The settings that have no flag (secrets), for the command's epilog."""
    lines = [
        f"{o.env} (or a file named by {o.env}_FILE): {o.help}."
        for o in config.option_help()
        if o.flag is None
    ]
    return "From the environment only: " + " ".join(lines)


def _parameter(option: config.OptionHelp) -> inspect.Parameter:
    flag = option.flag
    assert flag is not None
    if option.switch:
        annotation: Any = Annotated[
            bool, typer.Option(flag, envvar=option.env, help=option.help, show_default=False)
        ]
        default: object = False
    elif option.repeatable:
        annotation = Annotated[
            list[str] | None,
            typer.Option(flag, envvar=option.env, help=option.help, show_default=False),
        ]
        default = None
    else:
        annotation = Annotated[str | None, typer.Option(flag, envvar=option.env, help=option.help)]
        default = option.default
    return inspect.Parameter(
        option.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


def _raw_values(options: list[config.OptionHelp], given: dict[str, Any]) -> dict[str, str]:
    """What was given, as config.resolve takes it: text, as if typed after the flag."""
    values: dict[str, str] = {}
    for option in options:
        value = given.get(option.name)
        if option.switch:
            if value:
                values[option.name] = "1"
        elif option.repeatable:
            if value:
                values[option.name] = ",".join(value)
        elif value is not None:
            values[option.name] = value
    return values
