"""Server addresses into one gRPC target: a list, a comma string, a gRPC target as it is."""

from __future__ import annotations

import socket

import pytest

from sluice.client import InvalidArgumentError, UnavailableError
from sluice.client._connect import Endpoint
from sluice.client._targets import Target, parse


@pytest.mark.parametrize(
    "addresses",
    [
        ["127.0.0.1:50051", "127.0.0.1:50052"],
        ("127.0.0.1:50051", "127.0.0.1:50052"),
        "127.0.0.1:50051,127.0.0.1:50052",
        " 127.0.0.1:50051 , 127.0.0.1:50052, ",
        ["127.0.0.1:50051,127.0.0.1:50052", "127.0.0.1:50051"],  # a repeat is dropped
    ],
)
def test_several_ipv4_addresses_make_one_ipv4_target(addresses: str | list[str]) -> None:
    target = parse(addresses)
    assert target.uri == "ipv4:127.0.0.1:50051,127.0.0.1:50052"
    assert target.addresses == ("127.0.0.1:50051", "127.0.0.1:50052")
    # TLS checks certificates against the first address's host.
    assert target.authority == "127.0.0.1:50051"


def test_ipv6_addresses_and_host_names() -> None:
    assert parse("[::1]:1,[::1]:2").uri == "ipv6:[::1]:1,[::1]:2"
    # localhost has an IPv4 address everywhere (and often ::1 too): IPv4 is preferred.
    named = parse(["localhost:1", "127.0.0.2:2"])
    assert named.uri == "ipv4:127.0.0.1:1,127.0.0.2:2"
    assert named.authority == "localhost:1"
    with pytest.raises(InvalidArgumentError, match="only IPv4 addresses and others only IPv6"):
        parse("127.0.0.1:1,[::1]:2")


@pytest.mark.parametrize(
    "single",
    ["127.0.0.1:50051", "sluice.internal:443", "dns:///sluice.internal:50051", "unix:/tmp/s"],
)
def test_one_address_or_a_grpc_target_is_passed_on_as_it_is(single: str) -> None:
    assert parse(single) == Target(single, (single,))
    assert parse([single]) == Target(single, (single,))


def test_one_address_given_twice_is_one_address() -> None:
    assert parse("127.0.0.1:1, 127.0.0.1:1") == Target("127.0.0.1:1", ("127.0.0.1:1",))


def test_a_grpc_target_that_lists_addresses_is_passed_on_whole() -> None:
    given = "ipv4:10.0.0.1:50051,10.0.0.2:50051"
    assert parse(given).uri == given


@pytest.mark.parametrize(
    ("addresses", "problem"),
    [
        ("", "no server address"),
        ([], "no server address"),
        (" , ", "no server address"),
        ("127.0.0.1:1,sluice", "'sluice' is not host:port"),
        ("127.0.0.1:1,127.0.0.1:70000", "'127.0.0.1:70000' is not host:port"),
        (["127.0.0.1:1", "dns:///x:1"], "a list takes host:port addresses"),
    ],
)
def test_bad_addresses_are_invalid_arguments_on_target(
    addresses: str | list[str], problem: str
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        parse(addresses)
    [violation] = caught.value.violations
    assert violation.field == "target" and problem in violation.description


def test_names_that_do_not_resolve_are_left_out_and_none_is_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = socket.getaddrinfo

    def lookup(host: str, *args: object, **kwargs: object) -> object:
        if host.endswith(".gone"):  # no network: the OS resolver fails these names itself
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    assert parse("a.gone:1,127.0.0.1:2,localhost:3").uri == "ipv4:127.0.0.1:2,127.0.0.1:3"
    with pytest.raises(UnavailableError, match=r"no server address resolves: a\.gone: "):
        parse("a.gone:1,b.gone:2")


def test_the_environment_may_hold_several_addresses() -> None:
    env = {"SLUICE_ADDRESS": "127.0.0.1:1,127.0.0.1:2"}
    endpoint = Endpoint.resolve(None, None, None, env)
    assert parse(endpoint.addresses).uri == "ipv4:127.0.0.1:1,127.0.0.1:2"
    assert Endpoint.resolve(["127.0.0.1:3"], None, None, env).addresses == ["127.0.0.1:3"]


def test_channel_options_balance_round_robin_and_name_the_server() -> None:
    options = dict(parse("127.0.0.1:1,127.0.0.1:2").channel_options(None))
    assert '"round_robin"' in str(options["grpc.service_config"])
    assert options["grpc.default_authority"] == "127.0.0.1:1"
    assert dict(parse("127.0.0.1:1").channel_options(None)).get("grpc.default_authority") is None
    named = dict(parse("127.0.0.1:1,127.0.0.1:2").channel_options("sluice.internal"))
    assert named["grpc.default_authority"] == "sluice.internal"
