"""A client given several servers: calls go round-robin over those that answer, whatever form
the addresses take (list, comma string, SLUICE_ADDRESS), and one that is down is skipped.

The two servers here have databases of their own, and a template only A has, so each answer
says which server gave it. (Servers sharing one database are the server side's business.)
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sluice.client import (
    Addresses,
    EventType,
    NotFoundError,
    SyncWorkflowClient,
    UnavailableError,
    WorkflowClient,
    WorkflowStatus,
)
from sluice.server import SluiceServer
from tests.conftest import ServerFactory
from tests.support.crypto import SECRET, make_pki, tls_settings, token
from tests.support.process import free_port
from tests.support.templates import step, template

ONLY_ON_A = template("only-on-a", step("a"))


async def start_pair(
    start_server: ServerFactory, tmp_path: Path, **settings: Any
) -> tuple[SluiceServer, SluiceServer]:
    a = await start_server(**settings)
    b = await start_server(database_url=f"sqlite+aiosqlite:///{tmp_path / 'b.db'}", **settings)
    return a, b


@pytest.fixture
async def pair(start_server: ServerFactory, tmp_path: Path) -> tuple[SluiceServer, SluiceServer]:
    a, b = await start_pair(start_server, tmp_path)
    async with WorkflowClient(a.address) as only_a:
        await only_a.create_template(ONLY_ON_A)
    return a, b


async def answered_by(client: WorkflowClient, calls: int) -> dict[str, int]:
    """Which server answered each of `calls` calls, once both have answered one (until then
    B may still be connecting); fails the test when B never does."""

    async def one() -> str:
        try:
            await client.get_template("only-on-a", timeout=5)
            return "A"
        except NotFoundError:
            return "B"

    async def both() -> None:
        seen: set[str] = set()
        while len(seen) < 2:
            seen.add(await one())

    await asyncio.wait_for(both(), 10)
    counts = {"A": 0, "B": 0}
    for _ in range(calls):
        counts[await one()] += 1
    return counts


def assert_round_robin(counts: dict[str, int]) -> None:
    assert abs(counts["A"] - counts["B"]) <= 2, counts


@pytest.mark.parametrize("form", ["list", "tuple", "commas", "SLUICE_ADDRESS"])
async def test_calls_go_round_robin_over_every_form_of_address_list(
    pair: tuple[SluiceServer, SluiceServer], form: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pair
    addresses: Addresses | None = {
        "list": [a.address, b.address],
        "tuple": (a.address, b.address),
        "commas": f"{a.address},{b.address}",
        "SLUICE_ADDRESS": None,
    }[form]
    monkeypatch.setenv("SLUICE_ADDRESS", f"{a.address}, {b.address}")
    async with WorkflowClient(addresses) as client:
        assert_round_robin(await answered_by(client, 20))


@pytest.fixture
def silent_address() -> Iterator[str]:
    """A socket that accepts connections and never says a word, as a hung server would."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        yield f"127.0.0.1:{silent.getsockname()[1]}"


@pytest.mark.parametrize("dead", ["refused", "silent"])
async def test_a_dead_address_first_still_serves_calls(
    server: SluiceServer, silent_address: str, dead: str
) -> None:
    down = f"127.0.0.1:{free_port()}" if dead == "refused" else silent_address
    async with WorkflowClient([down, server.address]) as client:
        run = await client.create_workflow(template("quick", step("a"), step("b", "sleep", "a")))
        done = await client.execute_workflow(run.id, wait=True, timeout=10)
        events = [e async for e in client.watch(run.id)]
        for _ in range(10):  # every call, not only the first
            assert (await client.get_workflow(run.id, timeout=5)).id == run.id
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
    assert [e.sequence for e in events] == list(range(1, done.last_sequence + 1))
    assert events[-1].type == EventType.EVENT_TYPE_WORKFLOW_COMPLETED


async def test_every_address_down_is_unavailable() -> None:
    async with WorkflowClient(f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}") as client:
        with pytest.raises(UnavailableError):
            await client.list_templates(timeout=5)


async def test_the_blocking_client_takes_several_addresses(
    pair: tuple[SluiceServer, SluiceServer],
) -> None:
    a, b = pair
    dead = f"127.0.0.1:{free_port()}"

    def drive() -> dict[str, int]:
        counts = {"A": 0, "B": 0}
        with SyncWorkflowClient(f"{dead},{a.address},{b.address}") as client:
            while not all(counts.values()):  # bounded by the test's timeout
                try:
                    client.get_template("only-on-a", timeout=5)
                    counts["A"] += 1
                except NotFoundError:
                    counts["B"] += 1
            counts = {"A": 0, "B": 0}
            for _ in range(20):
                try:
                    client.get_template("only-on-a", timeout=5)
                    counts["A"] += 1
                except NotFoundError:
                    counts["B"] += 1
            return counts

    assert_round_robin(await asyncio.wait_for(asyncio.to_thread(drive), 20))


async def test_tls_and_tokens_with_several_servers(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    pki = make_pki(tmp_path)  # the servers' certificate names 127.0.0.1 and localhost
    a, b = await start_pair(start_server, tmp_path, auth_jwt_secret=SECRET, **tls_settings(pki))
    alice = token("alice")
    async with WorkflowClient(a.address, ca_file=str(pki.ca), token=alice) as only_a:
        await only_a.create_template(ONLY_ON_A)
    names = [f"localhost:{a.port}", f"localhost:{b.port}"]
    for addresses, server_name in (
        ([a.address, b.address], None),  # checked against 127.0.0.1, the first host
        (names, None),  # against localhost
        ([a.address, b.address], "localhost"),
    ):
        secure = WorkflowClient(
            addresses, ca_file=str(pki.ca), token=alice, server_name=server_name
        )
        async with secure as client:
            assert_round_robin(await answered_by(client, 10))

    async with WorkflowClient(
        [a.address, b.address], ca_file=str(pki.ca), token=alice, server_name="sluice.example"
    ) as misnamed:
        with pytest.raises(UnavailableError):  # no certificate names it
            await misnamed.list_templates(timeout=5)


async def test_a_dns_target_goes_through_grpcs_resolver(server: SluiceServer) -> None:
    # localhost may name 127.0.0.1 and ::1: round_robin uses the one the server listens on.
    async with WorkflowClient(f"dns:///localhost:{server.port}") as client:
        for _ in range(4):
            assert await client.list_templates(timeout=5)
