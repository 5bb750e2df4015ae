"""Outgoing HTTP for steps: one shared async client behind the webhook allow-list.

Every request of the server (webhooks of `post` and `notify`, `http` steps) goes through one
`HttpClient` so they share a connection pool sized by `SLUICE_HTTP_MAX_CONNECTIONS` (by
default as many connections as steps may run at once).

The client is aiohttp's. httpx was the first choice, but its connection pool (httpcore 1.0.9,
the latest release) reassigns connections in quadratic time: 200 concurrent requests to a
receiver answering after 200 ms took 1.5 s on fresh connections and 5.6 s on kept-alive ones,
4.4 s of it CPU in `_assign_requests_to_connections` (encode/httpcore#1035, unmerged).
aiohttp did the same in 0.27 s with 0.03 s of CPU. The guarantees:

- the URL is checked against `SLUICE_WEBHOOK_ALLOW` before any connection is made (loopback
  only when listed, no credentials in URLs);
- proxies and credentials from the environment (HTTP_PROXY, .netrc) are ignored
  (`trust_env=False`): the allow-list is about where requests go;
- redirects are not followed: an allowed host must not bounce a request to one that is not;
- each request is bounded by its timeout from the moment it has a connection slot to the end
  of its response: a request waiting for a slot behind slow endpoints does not lose its time;
- every request carries `Idempotency-Key: <run id>/<step id>`, and on a traced server the W3C
  `traceparent` (and `tracestate`) of the step attempt's span (`inject`, from the server);
- a connection refused, reset or dropped before any answer came is tried again at once, up to
  3 tries within the request's timeout (tenacity): a transient fault of the network or of a
  kept-alive connection the receiver closed, not worth failing the attempt and waiting out
  the step's backoff. An answer, whatever its status, is never requested again here: the
  step's retry policy decides, with its durable timer;
- the response body is read as a stream up to `SLUICE_HTTP_MAX_RESPONSE_BYTES` and kept
  (see `_reply.py`); past the limit it is cut and marked truncated.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDict
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from sluice.steps._reply import HttpReply, read_reply
from sluice.steps.errors import PermanentStepError, StepError
from sluice.steps.webhook import WebhookAllowList

DEFAULT_TIMEOUT_SECONDS = 5.0
DEFAULT_MAX_CONNECTIONS = 256
# Far below the 1 MiB step-output limit even when every byte becomes a 6-character JSON escape.
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024
WEBHOOK_USER_AGENT = "sluice-webhook/1"
# Answers that may well be different next time: a retry may get another.
_RETRYABLE_STATUS = frozenset({408, 429})
# No answer came: refused, reset, or closed by the receiver before it answered.
_TRANSIENT = (aiohttp.ClientConnectorError, aiohttp.ClientOSError, aiohttp.ServerDisconnectedError)
TRIES = 3

# Adds the current trace context's headers to a request's (OpenTelemetry's propagate.inject).
Inject = Callable[[CIMultiDict[str]], None]


class HttpClient:
    """Sends requests to allowed URLs and returns the receiver's answer, whatever its status.

    `max_connections` bounds the requests in flight (and the sockets open): further requests
    wait for a slot before their `timeout_seconds` starts. The aiohttp session is made on the
    first request to an allowed URL (in the event loop that will use it), so a client that
    only ever refuses opens nothing.
    """

    def __init__(
        self,
        allow: WebhookAllowList,
        *,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        inject: Inject | None = None,
    ) -> None:
        if not timeout_seconds > 0:
            raise ValueError("timeout_seconds must be positive")
        if max_connections < 1 or max_response_bytes < 1:
            raise ValueError("max_connections and max_response_bytes must be at least 1")
        self.allow = allow
        self.timeout_seconds = timeout_seconds
        self.max_connections = max_connections
        self.max_response_bytes = max_response_bytes
        self._inject = inject
        # aiohttp's own pool has the same size, so a request holding a slot finds a
        # connection: the wait happens here, outside the request's deadline.
        self._slots = asyncio.Semaphore(max_connections)
        self._session: aiohttp.ClientSession | None = None

    async def send(
        self,
        method: str,
        url: str,
        *,
        idempotency_key: str,
        user_agent: str,
        label: str,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str | list[str]] | None = None,
        content: bytes | None = None,
        timeout_seconds: float | None = None,
        keep_headers: Collection[str] = (),
    ) -> HttpReply:
        """The receiver's answer, whatever its status (see `status_error`).

        PermanentStepError when the URL is refused; StepError when no answer came (connection
        errors, timeouts): a retry may reach the receiver. `headers` may replace the
        User-Agent but never the Idempotency-Key; `label` names the request in messages.
        """
        self.allow.check(url)
        timeout = timeout_seconds or self.timeout_seconds
        host = urlsplit(url).hostname
        # Case-insensitive: a step's "user-agent" replaces ours rather than adding a second.
        request_headers = CIMultiDict({"User-Agent": user_agent})
        request_headers.update(headers or {})
        if self._inject is not None:
            self._inject(request_headers)  # the step attempt's span: the receiver joins its trace
        request_headers["Idempotency-Key"] = idempotency_key
        session = self._client()
        tries = AsyncRetrying(
            retry=retry_if_exception_type(_TRANSIENT),
            stop=stop_after_attempt(TRIES),
            wait=wait_exponential(multiplier=0.05, max=0.5),
        )
        async with self._slots:
            try:
                async with asyncio.timeout(timeout):
                    async for attempt in tries:
                        with attempt:
                            async with session.request(
                                method, url, params=query, headers=request_headers,
                                data=content, allow_redirects=False,
                            ) as response:  # fmt: skip
                                return await read_reply(
                                    response, self.max_response_bytes, keep_headers
                                )
            except TimeoutError:
                raise StepError(
                    f"{label} to {host} timed out after {timeout:g}s", error_type="Timeout"
                ) from None
            except aiohttp.InvalidURL as exc:
                raise PermanentStepError(f"URL {url!r} is malformed: {exc}") from None
            except RetryError as exc:
                last = exc.last_attempt.exception()
                raise StepError(
                    f"{label} to {host} failed ({TRIES} tries): {last or type(last).__name__}",
                    error_type="ConnectionFailed",
                ) from None
            except aiohttp.ClientError as exc:
                # DNS failures, malformed answers.
                raise StepError(
                    f"{label} to {host} failed: {exc or type(exc).__name__}",
                    error_type="ConnectionFailed",
                ) from None
        raise AssertionError("unreachable: tenacity returns or raises")

    async def post_json(
        self, url: str, payload: Mapping[str, Any], *, idempotency_key: str
    ) -> HttpReply:
        """POST `payload` as JSON (a webhook of `post` or `notify`): the 2xx reply, else the
        failure `status_error` describes."""
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str).encode()
        reply = await self.send(
            "POST",
            url,
            idempotency_key=idempotency_key,
            user_agent=WEBHOOK_USER_AGENT,
            label="webhook POST",
            headers={"Content-Type": "application/json"},
            content=body,
        )
        if not 200 <= reply.status < 300:
            raise status_error("webhook POST", url, reply, "2xx")
        return reply

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            # No aiohttp timeouts: the deadline in send() bounds the whole exchange, not each
            # socket operation, so a receiver dripping its answer cannot stretch it.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections),
                timeout=aiohttp.ClientTimeout(total=None),
                trust_env=False,
            )
        return self._session


def status_error(label: str, url: str, reply: HttpReply, expected: str) -> Exception:
    """The failure for an answer other than `expected`: retryable (StepError) for 5xx, 408 and
    429, which another attempt may not get; PermanentStepError for every other status, which
    the same request would get again (including 3xx: redirects are not followed)."""
    status = reply.status
    message = f"{label} to {urlsplit(url).hostname} answered {status}, expected {expected}"
    if 300 <= status < 400:
        message += " (redirects are not followed)"
    if reply.body is not None:
        message += f": {reply.excerpt()}"
    # The error type names the status ("HTTP503"): a retry policy may refuse some of them.
    if status in _RETRYABLE_STATUS or status >= 500:
        return StepError(message, error_type=f"HTTP{status}")
    return PermanentStepError(message, error_type=f"HTTP{status}")
