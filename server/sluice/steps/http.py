"""`http`: one HTTP request to an allowed URL; the answer becomes the step's output.

Config (after the engine's `{{ ... }}` substitution):
- `url` (required): http(s), to a host `SLUICE_WEBHOOK_ALLOW` lists, like webhooks;
- `method`: GET (default), POST, PUT, PATCH, DELETE or HEAD;
- `headers`: names to values (strings; numbers are written as numbers). Host,
  Content-Length, Transfer-Encoding, Connection and Idempotency-Key are the server's;
- `query`: names to a value or a list of values, added to the URL's query;
- `body`: any JSON, sent as `application/json` (whole numbers without a `.0`: step config
  holds every number as a float), or `bodyText`: a string sent as is (`text/plain` unless the
  headers say otherwise); not both;
- `expectedStatuses`: codes (201) and classes ("2xx"); default ["2xx"];
- `timeoutSeconds`: for this request, at most 60 (default `SLUICE_HTTP_TIMEOUT_SECONDS`);
- `responseHeaders`: names of response headers to keep besides content-type, location, etag.

Every request carries `Idempotency-Key: <run id>/<step id>`, the same on every attempt, so
the receiver can tell a retry from a new request.

Output: `status`, `headers` (lowercase names), `body` (parsed JSON when the response says
JSON, else text, null when empty; cut at `SLUICE_HTTP_MAX_RESPONSE_BYTES`), `truncated`.

A status outside `expectedStatuses` fails the attempt. 5xx, 408 (timeout) and 429 (too many
requests) say the receiver could not answer now, so the attempt is retried under the step's
retry policy, as are connection errors and timeouts; any other status is the receiver's
answer to this very request (a 404 stays a 404; redirects are not followed) and fails the
step at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

from sluice.engine.handlers import PermanentStepError, StepContext, StepResult
from sluice.json_numbers import whole_numbers
from sluice.steps import _schema
from sluice.steps._config import fmt_number
from sluice.steps._schema import Schema
from sluice.steps.http_client import HttpClient, status_error
from sluice.steps.webhook import WebhookAllowList

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
MAX_TIMEOUT_SECONDS = 60
USER_AGENT = "sluice-http/1"
# Framing and routing are the client's; the idempotency key is the engine's.
RESERVED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "idempotency-key"}
)
_TOKEN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
_SCALAR: Schema = {"type": ["string", "number", "boolean"]}
_HEADER_NAME: Schema = {"pattern": _TOKEN, "description": "a header name (letters, digits, -)"}

CONFIG_SCHEMA: Schema = _schema.obj(
    {
        "url": _schema.string(
            "the http(s) URL; its host must be listed in the server's SLUICE_WEBHOOK_ALLOW",
            minLength=1,
        ),
        "method": _schema.choice(METHODS, "the request method", default="GET"),
        "headers": _schema.formed(
            "request headers; Host, Content-Length, Transfer-Encoding, Connection and "
            "Idempotency-Key are the server's",
            {
                "type": "object",
                "propertyNames": _HEADER_NAME,
                "additionalProperties": {
                    "type": ["string", "number"],
                    "allOf": [
                        {"pattern": "^[\t\x20-\x7e]*$", "description": "printable ASCII text"}
                    ],
                },
                "description": "an object of header names to texts or numbers",
            },
        ),
        "query": _schema.formed(
            'added to the URL\'s query: {"page": 2, "tag": ["a", "b"]} gives ?page=2&tag=a&tag=b',
            {
                "type": "object",
                "additionalProperties": {"anyOf": [_SCALAR, {"type": "array", "items": _SCALAR}]},
                "description": "an object of names to a text, number, true or false, or a "
                "list of them",
            },
        ),
        "body": {
            "description": "sent as application/json (whole numbers without .0); not "
            "together with bodyText"
        },
        "bodyText": _schema.string(
            "sent as is, as text/plain; charset=utf-8 unless headers names a Content-Type"
        ),
        "expectedStatuses": _schema.formed(
            "the statuses that complete the step; any other fails it",
            {
                "type": "array",
                "minItems": 1,
                "items": {
                    "anyOf": [
                        {"type": "integer", "minimum": 100, "maximum": 599},
                        {"type": "string", "pattern": "^[1-5]xx$"},
                    ]
                },
                "description": 'a non-empty list of codes (201) and classes ("2xx")',
            },
            default=["2xx"],
        ),
        "timeoutSeconds": _schema.formed(
            "how long the request may take; default SLUICE_HTTP_TIMEOUT_SECONDS",
            {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": MAX_TIMEOUT_SECONDS,
                "description": f"a number of seconds above 0, at most {MAX_TIMEOUT_SECONDS}",
            },
        ),
        "responseHeaders": _schema.formed(
            "further response headers to keep in the output's headers",
            {"type": "array", "items": _HEADER_NAME, "description": "a list of header names"},
        ),
    },
    required=["url"],
)


def _no_requests() -> HttpClient:
    # Without a configured client every URL is refused, with a message naming the env var.
    return HttpClient(WebhookAllowList())


@dataclass(frozen=True, slots=True)
class HttpStep:
    http: HttpClient = field(default_factory=_no_requests)

    config_schema: ClassVar[Mapping[str, Any]] = CONFIG_SCHEMA

    def check_config(self, config: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
        """What the schema cannot say: the URL against the allow-list (unless its host comes
        from a substitution), header names the server owns, body and bodyText together."""
        url = config.get("url")
        if isinstance(url, str) and (origin := _literal_origin(url)):
            try:
                self.http.allow.check(origin)
            except PermanentStepError as exc:
                yield "url", str(exc)
        headers = config.get("headers")
        if isinstance(headers, Mapping):
            for name in headers:
                if str(name).lower() in RESERVED_HEADERS:
                    yield f"headers.{name}", "is set by the server: remove it"
        if config.get("body") is not None and "bodyText" in config:
            yield "bodyText", "give either body (sent as JSON) or bodyText, not both"

    async def run(self, ctx: StepContext) -> StepResult:
        # The engine has checked the resolved config against CONFIG_SCHEMA and check_config.
        config = ctx.config
        method = str(config.get("method", "GET"))
        url = str(config["url"])
        headers = {str(k): _text(v) for k, v in config.get("headers", {}).items()}
        content: bytes | None = None
        content_type = ""
        if config.get("body") is not None:
            content = json.dumps(whole_numbers(config["body"]), separators=(",", ":")).encode()
            content_type = "application/json"
        elif "bodyText" in config:
            content = str(config["bodyText"]).encode()
            content_type = "text/plain; charset=utf-8"
        if content_type and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = content_type
        expected = [_status_spec(s) for s in config.get("expectedStatuses", ["2xx"])]
        label = f"http {method}"
        timeout = config.get("timeoutSeconds")
        reply = await self.http.send(
            method,
            url,
            idempotency_key=ctx.idempotency_key,
            user_agent=USER_AGENT,
            label=label,
            headers=headers,
            query={str(k): _query_value(v) for k, v in config.get("query", {}).items()},
            content=content,
            timeout_seconds=float(timeout) if timeout is not None else None,
            keep_headers=[str(name) for name in config.get("responseHeaders", [])],
        )
        if not any(_matches(reply.status, spec) for spec in expected):
            raise status_error(label, url, reply, " or ".join(expected))
        return StepResult(output=reply.output())


def _literal_origin(url: str) -> str | None:
    """The URL to check before the run: all of it, or its scheme and host when only its path
    or query come from substitutions; None when the host itself is substituted."""
    if "{{" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not parts.netloc or "{{" in parts.scheme + parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}/"


def _status_spec(spec: Any) -> str:
    return spec if isinstance(spec, str) else fmt_number(spec)


def _matches(status: int, spec: str) -> bool:
    return spec == str(status) or (spec.endswith("xx") and spec[0] == str(status)[0])


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return fmt_number(value) if isinstance(value, int | float) else str(value)


def _query_value(value: Any) -> str | list[str]:
    return [_text(item) for item in value] if isinstance(value, list) else _text(value)
