"""The server-side allow-list of where steps may send HTTP requests (`SLUICE_WEBHOOK_ALLOW`).

Templates are user input, so a template must not make the server call arbitrary addresses
(internal services, cloud metadata endpoints, the server itself). Every URL a webhook or an
`http` step names is checked against the operator's list before any connection is made
(`http_client.HttpClient` does it on every request).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sluice.engine.handlers import PermanentStepError, has_reference

ALLOW_ENV = "SLUICE_WEBHOOK_ALLOW"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def _normalize_host(host: str) -> str:
    """Lowercase, no trailing dot, no IPv6 brackets, IP literals in canonical form."""
    host = host.strip().strip("[]").rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def is_loopback(host: str) -> bool:
    host = _normalize_host(host)
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class WebhookAllowList:
    """Hosts (any port) and host:port pairs that webhooks may be sent to.

    Matching is exact on the normalized host name: no wildcards and no DNS look-ups, so what
    the operator lists is exactly what may be called, and a loopback address (127.0.0.0/8,
    ::1, localhost) passes only when that very address is listed. Whoever adds wildcards
    must keep loopback out of them.
    """

    hosts: frozenset[str] = frozenset()
    host_ports: frozenset[tuple[str, int]] = frozenset()

    @classmethod
    def parse(cls, spec: str) -> WebhookAllowList:
        """Parse "host, host:port, [::1]:8080" (the `SLUICE_WEBHOOK_ALLOW` value).

        Raises ValueError for a malformed entry: the server should refuse to start rather
        than run with an allow-list other than the one the operator meant.
        """
        hosts: set[str] = set()
        host_ports: set[tuple[str, int]] = set()
        for raw in spec.split(","):
            entry = raw.strip()
            if not entry:
                continue
            if "/" in entry or "@" in entry:
                raise ValueError(f"{ALLOW_ENV}: {entry!r} is not a host or host:port")
            host, port = _split_host_port(entry)
            if not host:
                raise ValueError(f"{ALLOW_ENV}: {entry!r} has no host")
            if port is None:
                hosts.add(host)
            else:
                host_ports.add((host, port))
        return cls(frozenset(hosts), frozenset(host_ports))

    def allows(self, host: str, port: int) -> bool:
        host = _normalize_host(host)
        return host in self.hosts or (host, port) in self.host_ports

    def check(self, url: str) -> None:
        """PermanentStepError unless `url` is an http(s) URL to an allowed host and port."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise PermanentStepError(f"webhook URL {url!r} is malformed: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise PermanentStepError(
                f"webhook URL must use http or https, got {parts.scheme or 'no scheme'!r}"
            )
        if not parts.hostname:
            raise PermanentStepError(f"webhook URL {url!r} has no host")
        if parts.username is not None or parts.password is not None:
            raise PermanentStepError("webhook URL must not carry credentials (user:password@)")
        port = port if port is not None else _DEFAULT_PORTS[scheme]
        if not self.allows(parts.hostname, port):
            where = "a loopback address" if is_loopback(parts.hostname) else "host"
            raise PermanentStepError(
                f"webhook {where} {parts.hostname}:{port} is not allowed: the server's "
                f"{ALLOW_ENV} must list {parts.hostname} or {parts.hostname}:{port}"
            )


def url_problems(
    allow: WebhookAllowList, config: Mapping[str, Any], key: str = "webhookUrl"
) -> Iterator[tuple[str, str]]:
    """A step's webhook URL that the allow-list refuses, as a config problem: found when the
    template is validated rather than when a run reaches the step. A substituted URL is
    checked once resolved (and again by the client before any connection)."""
    url = config.get(key)
    if isinstance(url, str) and url.strip() and not has_reference(url):
        try:
            allow.check(url.strip())
        except PermanentStepError as exc:
            yield key, str(exc)


def _split_host_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{ALLOW_ENV}: {entry!r} is not [ipv6] or [ipv6]:port")
        port_text = rest[1:] if rest else ""
    elif entry.count(":") == 1:
        host, _, port_text = entry.partition(":")
    else:
        # No colon, or a bare IPv6 address (which cannot carry a port without brackets).
        host, port_text = entry, ""
    if not port_text:
        return _normalize_host(host), None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{ALLOW_ENV}: {entry!r} has an invalid port")
    return _normalize_host(host), int(port_text)
