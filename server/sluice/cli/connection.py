"""The options every remote command takes, and the client they configure."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from sluice.client import DEFAULT_TARGET, WorkflowClient

_PANEL = "Connection and output"

Address = Annotated[
    str,
    typer.Option(
        "--address", envvar="SLUICE_ADDRESS", rich_help_panel=_PANEL,
        help="host:port of the Sluice server; several, separated by commas, are called in turn.",
    ),
]  # fmt: skip
Token = Annotated[
    str | None,
    typer.Option(
        "--token", envvar="SLUICE_TOKEN", rich_help_panel=_PANEL, show_default=False,
        help="Bearer token, sent as `authorization: Bearer <token>`.",
    ),
]  # fmt: skip
CaFile = Annotated[
    Path | None,
    typer.Option(
        "--ca-file", envvar="SLUICE_CA_FILE", rich_help_panel=_PANEL, show_default=False,
        exists=True, dir_okay=False, readable=True,
        help="PEM root certificates; when set, the connection uses TLS.",
    ),
]  # fmt: skip
Json = Annotated[
    bool,
    typer.Option(
        "--json", rich_help_panel=_PANEL,
        help="Machine output: proto JSON (camelCase field names).",
    ),
]  # fmt: skip

DEFAULT_ADDRESS = DEFAULT_TARGET


@dataclass(frozen=True, slots=True)
class Connection:
    address: str
    token: str | None = None
    ca_file: Path | None = None

    def client(self) -> WorkflowClient:
        # typer has read the SLUICE_* variables already: say "none" rather than let the
        # client read them again.
        return WorkflowClient(
            self.address,
            token=self.token or "",
            ca_file=str(self.ca_file) if self.ca_file is not None else "",
        )
