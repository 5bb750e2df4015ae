"""A plaintext client that reaches a TLS server is told so, instead of 'Socket closed'."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.client import SyncWorkflowClient, UnavailableError, WorkflowClient
from sluice.client.tls_probe import ServerSpeaksTlsError, speaks_tls
from sluice.server import SluiceServer
from tests.cli.conftest import run_cli
from tests.conftest import ServerFactory
from tests.support.crypto import make_pki, tls_settings
from tests.support.process import free_port


@pytest.fixture
async def tls_server(start_server: ServerFactory, tmp_path: Path) -> SluiceServer:
    return await start_server(**tls_settings(make_pki(tmp_path)))


def _hint(address: str) -> str:
    return f"the server at {address} speaks TLS: pass --ca-file / SLUICE_CA_FILE (or tls=True)"


async def test_a_plaintext_call_to_a_tls_server_says_it_speaks_tls(
    tls_server: SluiceServer,
) -> None:
    async with WorkflowClient(tls_server.address) as client:
        with pytest.raises(ServerSpeaksTlsError) as unary:
            await client.list_templates(timeout=5)
        with pytest.raises(ServerSpeaksTlsError) as stream:
            async for _ in client.watch("00000000-0000-4000-8000-000000000000", reconnect=True):
                pass
    assert unary.value.message == stream.value.message == _hint(tls_server.address)
    assert isinstance(unary.value, UnavailableError)  # still UNAVAILABLE for code that checks that


def test_the_blocking_client_says_so_too(tls_server: SluiceServer) -> None:
    with SyncWorkflowClient(tls_server.address) as client, pytest.raises(ServerSpeaksTlsError):
        client.list_templates(timeout=5)


async def test_the_cli_shows_the_hint(tls_server: SluiceServer) -> None:
    result = await run_cli("templates", address=tls_server.address)
    assert (result.code, result.err.strip()) == (5, f"error: {_hint(tls_server.address)}")


async def test_a_mutual_tls_server_is_recognised(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    server = await start_server(**tls_settings(make_pki(tmp_path), mutual=True))
    assert await speaks_tls(server.address)
    async with WorkflowClient(server.address) as client:
        with pytest.raises(ServerSpeaksTlsError):
            await client.list_templates(timeout=5)


async def test_plaintext_servers_and_closed_ports_keep_their_error(server: SluiceServer) -> None:
    assert not await speaks_tls(server.address)
    assert not await speaks_tls("127.0.0.1:1")
    assert not await speaks_tls("unix:/tmp/nothing-here.sock")
    await server.stop()
    async with WorkflowClient(server.address) as client:
        with pytest.raises(UnavailableError) as down:
            await client.list_templates(timeout=5)
    assert type(down.value) is UnavailableError
    assert "speaks TLS" not in down.value.message


async def test_with_several_addresses_the_hint_names_the_one_that_speaks_tls(
    tls_server: SluiceServer,
) -> None:
    closed = f"127.0.0.1:{free_port()}"
    async with WorkflowClient([closed, tls_server.address]) as client:
        with pytest.raises(ServerSpeaksTlsError) as caught:
            await client.list_templates(timeout=5)
    assert caught.value.message == _hint(tls_server.address)
