"""Webhook delivery: a server-side allow-list and a small JSON POST client.

Templates are user input, so a template must not make the server call arbitrary addresses
(internal services, cloud metadata endpoints, the server itself). Every URL is checked
against the operator's `SLUICE_WEBHOOK_ALLOW` list before any connection is made.
"""

from __future__ import annotations

import asyncio
import http.client
import ipaddress
import json
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sluice.engine.handlers import PermanentStepError, has_reference
from sluice.steps.errors import StepError

ALLOW_ENV = "SLUICE_WEBHOOK_ALLOW"
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Answers that may well be different next time: the engine retries these.
_RETRYABLE_STATUS = frozenset({408, 429})
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


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """An allowed host must not bounce the request to one that is not: redirects are errors."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class WebhookClient:
    """POSTs JSON to allowed URLs without blocking the event loop.

    The standard library's blocking client runs in a worker thread (`asyncio.to_thread`);
    `timeout_seconds` bounds each socket operation there and the whole call here. A call
    abandoned at the deadline leaves its thread to end at its own socket timeout.
    """

    def __init__(self, allow: WebhookAllowList, timeout_seconds: float = 5.0) -> None:
        if not timeout_seconds > 0:
            raise ValueError("timeout_seconds must be positive")
        self.allow = allow
        self.timeout_seconds = timeout_seconds
        # No proxies from the environment: the allow-list is about where requests go.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)

    async def post_json(self, url: str, payload: Mapping[str, Any], *, idempotency_key: str) -> int:
        """The 2xx status; PermanentStepError for a refused URL or a final answer (4xx, 3xx);
        StepError for what a retry may fix (5xx, 408, 429, connection errors, timeouts)."""
        self.allow.check(url)
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str).encode()
        host = urlsplit(url).hostname
        try:
            async with asyncio.timeout(self.timeout_seconds):
                return await asyncio.to_thread(self._post, url, body, idempotency_key)
        except TimeoutError:
            raise StepError(
                f"webhook POST to {host} timed out after {self.timeout_seconds:g}s"
            ) from None

    def _post(self, url: str, body: bytes, idempotency_key: str) -> int:
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": idempotency_key,
                "User-Agent": "sluice-webhook/1",
            },
        )
        host = request.host
        try:
            with self._opener.open(request, timeout=self.timeout_seconds) as response:
                # Read (a bounded amount of) the body so the server sees a clean exchange.
                response.read(65536)
                status: int = response.status
                return status
        except urllib.error.HTTPError as exc:
            exc.close()
            status = exc.code
            if status in _RETRYABLE_STATUS or status >= 500:
                raise StepError(f"webhook POST to {host} answered {status}") from None
            raise PermanentStepError(
                f"webhook POST to {host} answered {status}"
                + (" (redirects are not followed)" if 300 <= status < 400 else "")
            ) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            # URLError wraps refused connections, DNS failures and connect timeouts;
            # TimeoutError and ConnectionResetError (OSError) come from reads.
            reason = getattr(exc, "reason", exc)
            raise StepError(f"webhook POST to {host} failed: {reason}") from None
