"""`sluice cert` and `sluice token`: the files and tokens they make work with a real server."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import stat
from pathlib import Path

import jwt
import pytest
from cryptography import x509

from sluice.api.auth import check_hs256_secret
from sluice.client import UnauthenticatedError, WorkflowClient
from sluice.config import ConfigError
from sluice.credentials.tokens import parse_ttl
from tests.cli.conftest import run_cli
from tests.conftest import ServerFactory

SECRET = "a-development-secret-of-40-bytes-or-so!!"
NO_SERVER = "127.0.0.1:1"  # these commands call no server


def _subject_alternative_names(path: Path) -> x509.SubjectAlternativeName:
    certificate = x509.load_pem_x509_certificate(path.read_bytes())
    return certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def _setting(output: str, name: str) -> str:
    return next(line.split("=", 1)[1] for line in output.splitlines() if f"export {name}=" in line)


async def test_cert_makes_a_ca_and_a_server_certificate_clients_connect_with(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    made = await run_cli("cert", "--out", str(tmp_path / "certs"), address=NO_SERVER)
    assert made.code == 0, made.err
    cert_file = _setting(made.out, "SLUICE_TLS_CERT_FILE")
    key_file = _setting(made.out, "SLUICE_TLS_KEY_FILE")
    ca_file = _setting(made.out, "SLUICE_CA_FILE")
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    names = _subject_alternative_names(Path(cert_file))
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]

    # "localhost" binds both loopback families on one port: every name in the certificate.
    server = await start_server(
        listen="localhost:0", tls_cert_file=cert_file, tls_key_file=key_file
    )
    for host in ("localhost", "127.0.0.1", "[::1]"):
        async with WorkflowClient(f"{host}:{server.port}", ca_file=ca_file) as client:
            assert len(await client.list_templates(timeout=10)) >= 3, host
    cli = await run_cli("templates", "--ca-file", ca_file, address=f"127.0.0.1:{server.port}")
    assert cli.code == 0, cli.err
    assert "content-to-social" in cli.out


async def test_cert_refuses_to_overwrite_and_bad_hosts(tmp_path: Path) -> None:
    out = str(tmp_path)
    assert (await run_cli("cert", "--out", out, address=NO_SERVER)).code == 0
    ca = (tmp_path / "ca.pem").read_bytes()
    again = await run_cli("cert", "--out", out, address=NO_SERVER)
    assert again.code == 2
    assert "already exist: pass --force" in again.err
    assert (tmp_path / "ca.pem").read_bytes() == ca
    bad = await run_cli("cert", "--out", out, "--force", "--host", "not a host", address=NO_SERVER)
    assert (bad.code, bad.err.strip()) == (
        2,
        "error: --host 'not a host' is neither an IP address nor a host name",
    )
    extra = await run_cli(
        "cert", "--out", out, "--force", "--host", "sluice.test", "--host", "10.1.2.3",
        address=NO_SERVER,
    )  # fmt: skip
    assert extra.code == 0, extra.err
    assert "for localhost, 127.0.0.1, ::1, sluice.test, 10.1.2.3," in extra.out


async def test_token_is_accepted_by_a_server_with_that_secret(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    env = {
        "SLUICE_AUTH_JWT_SECRET_FILE": str(secret_file),
        "SLUICE_AUTH_JWT_AUDIENCE": "sluice",
        "SLUICE_AUTH_JWT_ISSUER": "dev",
    }
    minted = await run_cli("token", "--user", "alice", "--ttl", "90s", address=NO_SERVER, env=env)
    assert minted.code == 0, minted.err
    token = minted.out.strip()
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="sluice", issuer="dev")
    assert claims["sub"] == "alice"
    assert claims["exp"] - claims["iat"] == 90

    server = await start_server(
        auth_jwt_secret=SECRET, auth_jwt_audience="sluice", auth_jwt_issuer="dev"
    )
    async with WorkflowClient(server.address, token=token) as client:
        run = await client.create_workflow("content-to-social", {"topic": "t"})
        assert run.owner == "alice"
    cli = await run_cli("list", "--token", token, "--json", address=server.address)
    assert cli.code == 0, cli.err
    assert run.id in cli.out
    other = await start_server(auth_jwt_secret=SECRET.upper())
    async with WorkflowClient(other.address, token=token) as client:
        with pytest.raises(UnauthenticatedError):
            await client.list_templates()


async def test_token_refuses_a_short_secret_like_the_server() -> None:
    with pytest.raises(ConfigError) as refused:
        check_hs256_secret("x" * 31)
    check_hs256_secret("x" * 32)
    short = await run_cli(
        "token", "--user", "alice", address=NO_SERVER, env={"SLUICE_AUTH_JWT_SECRET": "x" * 31}
    )
    assert (short.code, short.out) == (2, "")
    assert short.err.strip() == f"error: {refused.value}"
    assert "31 bytes" in short.err and "at least 32 bytes" in short.err


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("--user", "alice"), {}, "set SLUICE_AUTH_JWT_SECRET (or SLUICE_AUTH_JWT_SECRET_FILE)"),
        (("--user", "alice"), {"SLUICE_AUTH_JWT_SECRET_FILE": "/nonexistent"}, "cannot read SLUICE_AUTH_JWT_SECRET_FILE /nonexistent"),
        (("--user", "alice"), {"SLUICE_AUTH_JWT_PUBLIC_KEY_FILE": "k.pem"}, "sign them with its private key"),
        (("--user", "alice"), {"SLUICE_AUTH_JWT_SECRET": SECRET, "SLUICE_AUTH_JWT_ALGORITHMS": "RS256"}, "add HS256 to it"),
        (("--user", ""), {"SLUICE_AUTH_JWT_SECRET": SECRET}, "--user must be 1-200 characters"),
        (("--user", "a", "--ttl", "1y"), {"SLUICE_AUTH_JWT_SECRET": SECRET}, "--ttl '1y': give a number with s, m, h or d"),
        (("--user", "a", "--ttl", "400d"), {"SLUICE_AUTH_JWT_SECRET": SECRET}, "at most 365d"),
    ],
)  # fmt: skip
async def test_token_explains_what_is_wrong(
    args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    result = await run_cli("token", *args, address=NO_SERVER, env=env)
    assert (result.code, result.out) == (2, "")
    assert result.err.startswith("error: ") and message in result.err, result.err


def test_ttl_units() -> None:
    assert [parse_ttl(t) for t in ("90", "90s", "30m", "1h", "7d", "1.5h")] == [
        dt.timedelta(seconds=90),
        dt.timedelta(seconds=90),
        dt.timedelta(minutes=30),
        dt.timedelta(hours=1),
        dt.timedelta(days=7),
        dt.timedelta(minutes=90),
    ]
