"""A receiver's answer as step output: status, a few headers, the body, whether it was cut.

The body is read as a stream and never past the limit, so a large or endless answer costs at
most the limit. It becomes parsed JSON when the response says it is JSON (`application/json`
or any `+json` type) and parses into something a step output can hold (finite numbers, no NUL
characters, nested at most as deep as step config may be); otherwise text, decoded with the
response's charset (UTF-8 when it names none or one Python does not know). A cut body stays
text: half a JSON document does not parse. An empty body is null.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from sluice.engine.model import JsonObject
from sluice.engine.validation import JsonLimits, check_json

# Kept in every reply: what the body is, where a created resource lives, its version.
KEPT_HEADERS = ("content-type", "location", "etag")
# Parsed bodies are checked for depth and content, not size: the byte limit came first.
_PARSED_LIMITS = JsonLimits(max_bytes=1 << 40)


@dataclass(frozen=True, slots=True)
class HttpReply:
    status: int
    # Lowercase names: KEPT_HEADERS and those a step asked for, when the response has them.
    headers: Mapping[str, str]
    # Parsed JSON, text, or None for an empty body.
    body: Any
    truncated: bool

    def output(self) -> JsonObject:
        return {
            "status": self.status,
            "headers": dict(self.headers),
            "body": self.body,
            "truncated": self.truncated,
        }

    def excerpt(self, limit: int = 200) -> str:
        """The start of the body, for an error message."""
        text = self.body if isinstance(self.body, str) else json.dumps(self.body)
        return text if len(text) <= limit else text[:limit] + "..."


async def read_reply(
    response: aiohttp.ClientResponse, limit: int, keep_headers: Collection[str] = ()
) -> HttpReply:
    """Read at most `limit` bytes of `response`'s body (after any content decoding, so a
    compressed answer cannot expand past it) and describe the answer."""
    data = bytearray()
    truncated = False
    async for chunk in response.content.iter_any():
        room = limit - len(data)
        if len(chunk) > room:
            data += chunk[:room]
            truncated = True
            break
        data += chunk
    wanted = sorted({*KEPT_HEADERS, *(name.lower() for name in keep_headers)})
    headers = {
        name: ", ".join(response.headers.getall(name))
        for name in wanted
        if name in response.headers
    }
    content_type = response.headers.get("content-type", "")
    body = decode_body(bytes(data), content_type, response.charset, truncated=truncated)
    return HttpReply(response.status, headers, body, truncated)


def decode_body(data: bytes, content_type: str, charset: str | None, *, truncated: bool) -> Any:
    if not data:
        return None
    text = _text(data, charset, final=not truncated)
    if not truncated and _is_json(content_type):
        try:
            value = json.loads(text, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):
            return text
        if not check_json(value, "body", _PARSED_LIMITS):
            return value
    return text


def _is_json(content_type: str) -> bool:
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime in ("application/json", "text/json") or mime.endswith("+json")


def _text(data: bytes, charset: str | None, *, final: bool) -> str:
    try:
        decoder = codecs.getincrementaldecoder(charset or "utf-8")(errors="replace")
    except LookupError:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    # Not final when cut: a character split by the cut is dropped, not shown as garbage.
    # NUL characters cannot be stored (PostgreSQL refuses them in JSON).
    return decoder.decode(data, final=final).replace("\x00", "\ufffd")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON data a step output can hold")
