"""Where a client's calls go: one server, several, or a DNS name that lists several.

Several servers become one gRPC target (`ipv4:a:p,b:p`, or `dns:///name:port` as given) under
gRPC's own `round_robin` balancer: it keeps a connection to every address, sends each call to
the next ready one and skips those that are down, reconnecting to them in the background. No
balancing is written here; this module only builds the target and the channel options.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from sluice.client.errors import FieldViolation, InvalidArgumentError, UnavailableError

# One string or several; a string may hold several, separated by commas.
Addresses = str | Sequence[str]

# Target schemes of gRPC's resolvers: a string that starts with one is a gRPC target already
# (`dns:///sluice.internal:50051`, `ipv4:10.0.0.1:50051,10.0.0.2:50051`) and is passed on whole.
_SCHEMES = ("dns", "ipv4", "ipv6", "unix", "unix-abstract", "vsock", "xds", "google-c2p")
_SCHEME = re.compile(rf"^(?:{'|'.join(re.escape(s) for s in _SCHEMES)}):(?!\d+$)", re.IGNORECASE)
_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]/,\s]+)):(?P<port>\d{1,5})$")

# round_robin, not gRPC's default pick_first: calls spread over every server, and one that is
# down is left out at once. pick_first would send everything to one server and, when the first
# address does not answer (a silent host rather than a refused port), hold calls 250 ms before
# trying the next one (measured in bench/failover.py: 255 to 274 ms, against 4 ms).
_SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})

# gRPC retries a failed connection after 1 s, growing 1.6x (with jitter) up to 120 s, so a
# server that has been down a while is tried again only every several seconds, then minutes: a
# replacement that comes up at its address waits that long for its first call. Measured with
# bench/failover.py (a watch on A; B, listed but down from the start, serves after A's death):
# the watch went on 0.5 to 16 s after B served with gRPC's backoff, 0.3 to 1.7 s with this one.
# Retrying every 2 s at most costs one refused connect per dead address.
_INITIAL_RECONNECT_BACKOFF_MS = 100
_MAX_RECONNECT_BACKOFF_MS = 2_000
# While calls are in flight (a watch waiting for events, a `wait`), a ping every this many
# seconds, answered within KEEPALIVE_TIMEOUT_SECONDS or the connection is dropped and its calls
# fail UNAVAILABLE: a server that stopped answering without closing the connection (a stopped
# process, a lost machine, a partition) is noticed in seconds rather than never. The servers
# accept a ping a second (sluice.server.KEEPALIVE_OPTIONS).
KEEPALIVE_SECONDS = 20.0
KEEPALIVE_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Target:
    """A gRPC target and the addresses it was made from (for messages and the TLS probe)."""

    uri: str
    addresses: tuple[str, ...]
    # The name TLS checks the servers' certificates against (and :authority), when the URI
    # names none itself: several addresses make one URI that is no host name.
    authority: str | None = None

    def channel_options(
        self, server_name: str | None, keepalive: float | None = KEEPALIVE_SECONDS
    ) -> list[tuple[str, str | int]]:
        options: list[tuple[str, str | int]] = [
            ("grpc.service_config", _SERVICE_CONFIG),
            ("grpc.initial_reconnect_backoff_ms", _INITIAL_RECONNECT_BACKOFF_MS),
            ("grpc.max_reconnect_backoff_ms", _MAX_RECONNECT_BACKOFF_MS),
            # gRPC shares connections between channels to the same address by default, with
            # their state: a new client to a server that had just come back found the shared
            # connection still waiting out its backoff, and round_robin failed its first call
            # at once (UNAVAILABLE, "Connection refused"). Each client keeps its own.
            ("grpc.use_local_subchannel_pool", 1),
        ]
        if keepalive is not None:
            timeout_ms = round(min(keepalive, KEEPALIVE_TIMEOUT_SECONDS) * 1000)
            options += [
                ("grpc.keepalive_time_ms", round(keepalive * 1000)),
                ("grpc.keepalive_timeout_ms", timeout_ms),
                # gRPC 1.85 waits for a ping's answer this long, whatever the keepalive's
                # timeout says (60 s by default; seen with GRPC_TRACE=http2_ping).
                ("grpc.http2.ping_timeout_ms", timeout_ms),
                # gRPC stops pinging after two pings with no data sent between them, and a
                # watcher sends none: without this a quiet watch would be watched no more.
                ("grpc.http2.max_pings_without_data", 0),
            ]
        authority = server_name or self.authority
        if authority:
            options.append(("grpc.default_authority", authority))
        return options


def parse(addresses: Addresses) -> Target:
    """The gRPC target for `addresses`: "host:port", "h1:p1,h2:p2", a list of those, or a
    gRPC target string (`dns:///name:port`), which is passed on as it is.

    Host names in a list of several are looked up here, once (gRPC has no resolver for a list
    of names): a name that does not resolve is left out, and when none does the client cannot
    be made (UnavailableError). A bad address is an InvalidArgumentError on `target`.
    """
    pieces = [addresses] if isinstance(addresses, str) else list(addresses)
    if len(pieces) == 1 and _SCHEME.match(pieces[0].strip()):
        return Target(pieces[0].strip(), (pieces[0].strip(),))
    split = [part.strip() for piece in pieces for part in piece.split(",") if part.strip()]
    if not split:
        raise _invalid(f"no server address in {addresses!r}")
    unique = list(dict.fromkeys(split))
    if len(unique) == 1:
        return Target(unique[0], (unique[0],))
    return _several(unique)


def _several(addresses: list[str]) -> Target:
    resolved: list[list[ipaddress.IPv4Address | ipaddress.IPv6Address]] = []
    ports: list[int] = []
    failures: list[str] = []
    for address in addresses:
        if _SCHEME.match(address):
            raise _invalid(f"{address!r}: a list takes host:port addresses, not gRPC targets")
        match = _HOST_PORT.match(address)
        if match is None or not 0 < int(match["port"]) < 65536:
            raise _invalid(f"{address!r} is not host:port (or [IPv6]:port)")
        host, port = match["v6"] or match["host"], int(match["port"])
        try:
            ips = _lookup(host, port)
        except OSError as error:
            failures.append(f"{host}: {error}")
            continue
        resolved.append(ips)
        ports.append(port)
    if not resolved:
        raise UnavailableError(f"no server address resolves: {'; '.join(failures)}")
    uri = _uri(resolved, ports)
    if uri is None:
        raise _invalid(
            f"{', '.join(addresses)}: some servers have only IPv4 addresses and others only "
            "IPv6 ones; gRPC balances over one family (give a DNS name instead)"
        )
    # The first address's host is the name every certificate is checked against: servers
    # behind one list share a certificate that names it (or pass server_name).
    return Target(uri, tuple(addresses), authority=addresses[0])


def _lookup(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in found))


def _uri(
    resolved: list[list[ipaddress.IPv4Address | ipaddress.IPv6Address]], ports: list[int]
) -> str | None:
    """An `ipv4:` target when every server has an IPv4 address (preferred: Sluice listens on
    IPv4 by default), else an `ipv6:` one when each has an IPv6 address, else None."""
    for version, scheme in ((4, "ipv4"), (6, "ipv6")):
        chosen = [[ip for ip in ips if ip.version == version] for ips in resolved]
        if all(chosen):
            endpoints = [
                f"[{ip}]:{port}" if version == 6 else f"{ip}:{port}"
                for ips, port in zip(chosen, ports, strict=True)
                for ip in ips
            ]
            return f"{scheme}:{','.join(dict.fromkeys(endpoints))}"
    return None


def _invalid(description: str) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"invalid server address: {description}", [FieldViolation("target", description)]
    )
