"""TLS and mutual TLS."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.client import UnavailableError, WorkflowClient
from tests.conftest import ServerFactory
from tests.support.crypto import make_pki, tls_settings


async def test_tls_client_needs_the_right_ca(start_server: ServerFactory, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    server = await start_server(
        tls_cert_file=str(pki.server_cert), tls_key_file=str(pki.server_key)
    )

    async with WorkflowClient(server.address, ca_file=str(pki.ca)) as client:
        assert len(await client.list_templates()) >= 3
    for wrong in (str(pki.other_ca), None):  # an unrelated CA; the system's roots
        async with WorkflowClient(server.address, ca_file=wrong, tls=True) as client:
            with pytest.raises(UnavailableError):
                await client.list_templates(timeout=5)
    async with WorkflowClient(server.address) as plaintext:
        with pytest.raises(UnavailableError):
            await plaintext.list_templates(timeout=5)


async def test_mutual_tls_rejects_clients_without_a_certificate(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    pki = make_pki(tmp_path)
    server = await start_server(**tls_settings(pki, mutual=True))
    with_cert = WorkflowClient(
        server.address,
        ca_file=str(pki.ca),
        cert_file=str(pki.client_cert),
        key_file=str(pki.client_key),
    )
    async with with_cert as client:
        assert len(await client.list_templates()) >= 3
    async with WorkflowClient(server.address, ca_file=str(pki.ca)) as client:
        with pytest.raises(UnavailableError):
            await client.list_templates(timeout=5)
