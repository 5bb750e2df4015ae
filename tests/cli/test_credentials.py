"""`sluice cert` and `sluice token`: the files and tokens they make work with a real server."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import stat
from pathlib import Path

import jwt
import pytest
from cryptography import x509

from sluice.client import UnauthenticatedError, WorkflowClient
from sluice.config import ConfigError, check_hmac_secret
from sluice.credentials.certificates import write_development_certificates
from sluice.credentials.tokens import TokenIssuer, parse_ttl
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


def test_cert_refuses_to_overwrite_and_checks_hosts(tmp_path: Path) -> None:
    write_development_certificates(tmp_path)
    ca = (tmp_path / "ca.pem").read_bytes()
    with pytest.raises(ConfigError, match="already exist: pass --force to replace them"):
        write_development_certificates(tmp_path)
    assert (tmp_path / "ca.pem").read_bytes() == ca
    extra = write_development_certificates(
        tmp_path, extra_hosts=["Sluice.test", "10.1.2.3"], overwrite=True
    )
    assert extra.hosts == ("localhost", "127.0.0.1", "::1", "sluice.test", "10.1.2.3")
    assert (tmp_path / "ca.pem").read_bytes() != ca
    for bad in ("not a host", "-x.example", "a..b"):
        with pytest.raises(ConfigError, match="is neither an IP address nor a host name"):
            write_development_certificates(tmp_path, extra_hosts=[bad], overwrite=True)


async def test_cert_reports_a_bad_option_in_one_line(tmp_path: Path) -> None:
    bad = await run_cli("cert", "--out", str(tmp_path), "--host", "not a host", address=NO_SERVER)
    assert (bad.code, bad.out, bad.err.strip()) == (
        2,
        "",
        "error: --host 'not a host' is neither an IP address nor a host name",
    )
    assert os.listdir(tmp_path) == []  # nothing written


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
    # Its own database: SQLite serves one server.
    other = await start_server(
        auth_jwt_secret=SECRET.upper(), database_url=f"sqlite:///{tmp_path / 'other.db'}"
    )
    async with WorkflowClient(other.address, token=token) as client:
        with pytest.raises(UnauthenticatedError):
            await client.list_templates()


async def test_token_refuses_a_short_secret_like_the_server() -> None:
    with pytest.raises(ConfigError) as refused:
        check_hmac_secret("x" * 31)
    check_hmac_secret("x" * 32)
    short = await run_cli(
        "token", "--user", "alice", address=NO_SERVER, env={"SLUICE_AUTH_JWT_SECRET": "x" * 31}
    )
    assert (short.code, short.out) == (2, "")
    assert short.err.strip() == f"error: {refused.value}"
    assert "31 bytes" in short.err and "at least 32 bytes" in short.err


@pytest.mark.parametrize(
    ("env", "user", "ttl", "message"),
    [
        ({}, "alice", "1h", "set SLUICE_AUTH_JWT_SECRET (or SLUICE_AUTH_JWT_SECRET_FILE)"),
        ({"SLUICE_AUTH_JWT_SECRET_FILE": "/nonexistent"}, "alice", "1h", "cannot read SLUICE_AUTH_JWT_SECRET_FILE /nonexistent: No such file"),
        ({"SLUICE_AUTH_JWT_PUBLIC_KEY_FILE": "k.pem"}, "alice", "1h", "sign them with its private key"),
        ({"SLUICE_AUTH_JWT_SECRET": SECRET, "SLUICE_AUTH_JWT_ALGORITHMS": "RS256"}, "alice", "1h", "add HS256 to it"),
        ({"SLUICE_AUTH_JWT_SECRET": SECRET}, "", "1h", "--user must be 1-200 characters"),
        ({"SLUICE_AUTH_JWT_SECRET": SECRET}, "a" * 201, "1h", "--user must be 1-200 characters"),
        ({"SLUICE_AUTH_JWT_SECRET": SECRET}, "alice", "1y", "--ttl '1y': give a number with s, m, h or d"),
        ({"SLUICE_AUTH_JWT_SECRET": SECRET}, "alice", "400d", "must be more than 0 and at most 365d"),
        ({"SLUICE_AUTH_JWT_SECRET": SECRET}, "alice", "0s", "must be more than 0 and at most 365d"),
    ],
)  # fmt: skip
def test_token_explains_what_is_wrong(
    env: dict[str, str], user: str, ttl: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        TokenIssuer.from_environment(env).mint(user, parse_ttl(ttl))


def test_ttl_units() -> None:
    assert [parse_ttl(t) for t in ("90", "90s", "30m", "1h", "7d", "1.5h")] == [
        dt.timedelta(seconds=90),
        dt.timedelta(seconds=90),
        dt.timedelta(minutes=30),
        dt.timedelta(hours=1),
        dt.timedelta(days=7),
        dt.timedelta(minutes=90),
    ]
