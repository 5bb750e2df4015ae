"""The CLI's --token and --ca-file against a server that requires them."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import run_cli
from tests.conftest import ServerFactory
from tests.support.crypto import SECRET, make_pki, token


async def test_token_is_sent_and_required(start_server: ServerFactory) -> None:
    server = await start_server(auth_jwt_secret=SECRET)
    denied = await run_cli("templates", address=server.address)
    assert denied.code == 5
    assert "missing bearer token" in denied.err
    allowed = await run_cli("templates", "--token", token("alice"), address=server.address)
    assert allowed.code == 0, allowed.err
    assert "content-to-social" in allowed.out


async def test_ca_file_turns_on_tls(start_server: ServerFactory, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    server = await start_server(
        tls_cert_file=str(pki.server_cert), tls_key_file=str(pki.server_key)
    )
    trusted = await run_cli("templates", "--ca-file", str(pki.ca), address=server.address)
    assert trusted.code == 0, trusted.err
    untrusted = await run_cli("templates", "--ca-file", str(pki.other_ca), address=server.address)
    assert untrusted.code == 5
