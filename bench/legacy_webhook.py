"""FOR THE BENCHMARK'S COMPARISON ONLY -- not part of Sluice.

The webhook client Sluice shipped until 2f9f03d (server/sluice/steps/webhook.py there), copied
unchanged below the line: blocking urllib calls run in `asyncio.to_thread`, so at most the
default thread pool's workers (6 on 2 cores) are in flight, and a call's timeout includes its
wait for a thread. `bench/scenarios/webhooks.py` runs it beside the current client in the same
server process, as step type `legacy-notify`: the built-in `notify` handler with this client
in place of the server's shared one, so the two differ only in the client.

Loaded with SLUICE_PLUGINS=bench.legacy_webhook:register; the allow-list is the server's
SLUICE_WEBHOOK_ALLOW, parsed by today's code.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from sluice.engine.handlers import HandlerRegistry, PermanentStepError
from sluice.steps._reply import HttpReply
from sluice.steps.errors import StepError
from sluice.steps.notify import NotifyStep
from sluice.steps.webhook import WebhookAllowList

_RETRYABLE_STATUS = frozenset({408, 429})


def register(registry: HandlerRegistry) -> None:
    legacy = LegacyClient(WebhookAllowList.parse(os.environ.get("SLUICE_WEBHOOK_ALLOW", "")))
    registry.register("legacy-notify", NotifyStep(legacy))  # type: ignore[arg-type]


class LegacyClient:
    """The old client behind the current `post_json` signature (it returned only the status)."""

    def __init__(self, allow: WebhookAllowList) -> None:
        self.allow = allow  # what notify's check_config reads
        self._old = WebhookClient(allow)

    async def post_json(
        self, url: str, payload: Mapping[str, Any], *, idempotency_key: str
    ) -> HttpReply:
        status = await self._old.post_json(url, payload, idempotency_key=idempotency_key)
        return HttpReply(status, {}, None, truncated=False)


# --- copied from 2f9f03d:server/sluice/steps/webhook.py -------------------------------------


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
