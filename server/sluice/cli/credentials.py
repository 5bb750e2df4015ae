"""`sluice token` and `sluice cert`: development credentials for a server with auth or TLS on."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from sluice.config import ConfigError
from sluice.credentials import certificates, tokens


def token(
    user: Annotated[
        str, typer.Option("--user", show_default=False, help="The user: the token's `sub` claim.")
    ],
    ttl: Annotated[
        str, typer.Option("--ttl", help="How long it is valid: 90s, 30m, 1h, 7d (at most 365d).")
    ] = "1h",
) -> None:
    """Print a development token (HS256 JWT) for USER, signed with the server's secret.

    Reads SLUICE_AUTH_JWT_SECRET (or SLUICE_AUTH_JWT_SECRET_FILE), SLUICE_AUTH_JWT_AUDIENCE,
    SLUICE_AUTH_JWT_ISSUER and SLUICE_AUTH_JWT_ALGORITHMS as the server does. Use the token as
    SLUICE_TOKEN or --token: `export SLUICE_TOKEN=$(sluice token --user alice)`.

    Exit codes: 0 printed; 2 the settings or an option are wrong.
    """
    try:
        issuer = tokens.TokenIssuer.from_environment(os.environ)
        lifetime = tokens.parse_ttl(ttl)
        minted = issuer.mint(user, lifetime)
    except ConfigError as error:
        _fail(error)
    typer.echo(minted)


def cert(
    out: Annotated[
        Path,
        typer.Option("--out", show_default=False, help="Folder to write the files to (created)."),
    ],
    hosts: Annotated[
        list[str] | None,
        typer.Option(
            "--host",
            show_default=False,
            help="Another name or IP address the server is reached by; repeatable.",
        ),
    ] = None,
    days: Annotated[int, typer.Option("--days", help="How long the files are valid.")] = 365,
    force: Annotated[bool, typer.Option("--force", help="Replace files already there.")] = False,
) -> None:
    """Write a development CA and a server certificate it signed, for TLS on this machine.

    Writes ca.pem (the CA clients trust), server.pem and server-key.pem (valid for localhost,
    127.0.0.1, ::1 and each --host) to --out, then prints the settings that use them. The CA's
    key is not kept, so the CA vouches for nothing else.

    Exit codes: 0 written; 2 an option is wrong or the folder cannot be written.
    """
    try:
        written = certificates.write_development_certificates(
            out, extra_hosts=hosts or (), days=days, overwrite=force
        )
    except ConfigError as error:
        _fail(error)
    typer.echo(
        f"Wrote {written.ca_file} (the CA), {written.cert_file} and {written.key_file}\n"
        f"for {', '.join(written.hosts)}, valid until {written.not_after:%Y-%m-%d}.\n"
        "\n"
        "Server:\n"
        f"  export SLUICE_TLS_CERT_FILE={written.cert_file}\n"
        f"  export SLUICE_TLS_KEY_FILE={written.key_file}\n"
        "Clients (sluice --ca-file, WorkflowClient(ca_file=...), grpcurl -cacert):\n"
        f"  export SLUICE_CA_FILE={written.ca_file}"
    )


def _fail(error: ConfigError) -> NoReturn:
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(2)
