"""`generate`: content from built-in text templates filled with the run's params.

Deterministic on purpose: the same params give the same text, so a re-run after a restart
reproduces the output, and review scores are stable. Values come from the step's config
first, then the run's params; anything missing is left out or worded neutrally.
`config.text` replaces the template with the given text (handy for custom templates and
tests that need known content).

Output: contentType, title, content, wordCount, tone, plus platform (social-post, email,
blog-post) and hashtags (social-post).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from sluice.engine.handlers import PermanentStepError, StepContext, StepResult
from sluice.engine.model import JsonObject
from sluice.steps import _copy, _schema
from sluice.steps._config import get_str, number, setting, text
from sluice.steps._copy import Facts
from sluice.steps._text import word_count

CONTENT_TYPES = ("blog-post", "social-post", "email", "report", "listing-description")
_FIXED_PLATFORM = {"email": "email", "blog-post": "blog"}


def _fact(description: str) -> _schema.Schema:
    return _schema.text(f"{description}; default: the run's param of the same name")


CONFIG_SCHEMA = _schema.obj(
    {
        "contentType": _schema.choice(CONTENT_TYPES, "the kind of content to write"),
        "text": _schema.text("text to use as the content instead of a built-in template"),
        "title": _schema.text("the title; default: the template's, or the text's first line"),
        "topic": _fact("what the content is about"),
        "tone": _fact("the voice: friendly, professional, enthusiastic, casual, informative"),
        "platform": _fact("the social platform a social post is for"),
        "address": _fact("the property's address"),
        "price": _fact("the asking price, a number or text"),
        "bedrooms": _fact("the number of bedrooms"),
        "bathrooms": _fact("the number of bathrooms"),
        "features": _schema.strings(
            "the property's highlights; default: the run's param of the same name"
        ),
        "location": _fact("the market a report covers"),
        "timeframe": _fact("the period a report covers, e.g. 90days"),
    },
    required=["contentType"],
)

_Renderer = Callable[[Facts, Mapping[str, Any]], tuple[str, str, list[str]]]
_RENDERERS: dict[str, _Renderer] = {
    "blog-post": _copy.blog_post,
    "social-post": _copy.social_post,
    "email": _copy.email,
    "report": _copy.report,
    "listing-description": _copy.listing_description,
}


@dataclass(frozen=True, slots=True)
class GenerateStep:
    config_schema: ClassVar[Mapping[str, Any]] = CONFIG_SCHEMA

    async def run(self, ctx: StepContext) -> StepResult:
        content_type = str(ctx.config["contentType"])
        facts = _facts(ctx, content_type)
        given = get_str(ctx.config, "text", "")
        if given:
            title = get_str(ctx.config, "title", "") or _first_line(given)
            content, hashtags = given, re.findall(r"#\w+", given)
        else:
            title, content, hashtags = _RENDERERS[content_type](facts, ctx.upstream)
            title = get_str(ctx.config, "title", "") or title
        output: JsonObject = {
            "contentType": content_type,
            "title": title,
            "content": content,
            "wordCount": word_count(content),
            "tone": facts.tone,
        }
        if content_type in ("social-post", "email", "blog-post"):
            output["platform"] = facts.platform
        if content_type == "social-post":
            output["hashtags"] = hashtags
        return StepResult(output=output)


def _facts(ctx: StepContext, content_type: str) -> Facts:
    platform = _FIXED_PLATFORM.get(content_type) or text(setting(ctx, "platform")) or "facebook"
    return Facts(
        topic=text(setting(ctx, "topic")),
        tone=(text(setting(ctx, "tone")) or "friendly").lower(),
        platform=platform.lower(),
        address=text(setting(ctx, "address")),
        price=_price(setting(ctx, "price")),
        bedrooms=text(setting(ctx, "bedrooms")),
        bathrooms=text(setting(ctx, "bathrooms")),
        features=_features(setting(ctx, "features")),
        location=text(setting(ctx, "location")),
        timeframe=text(setting(ctx, "timeframe")),
    )


def _price(value: Any) -> str | None:
    """500000, 500000.0 and "500,000" all read "$500,000"; other text ("500k") is kept."""
    if value is None:
        return None
    try:
        amount = number(value, "price")
    except PermanentStepError:
        return text(value)
    return f"${amount:,.0f}" if amount >= 1000 or amount.is_integer() else f"${amount:,.2f}"


def _features(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) and value.strip().startswith("["):
        # A list param substituted into a longer string arrives as JSON text.
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    if isinstance(value, str):
        value = re.split(r"[,;]", value)
    if isinstance(value, list | tuple):
        return tuple(t for t in (text(v) for v in value) if t)
    return ()


def _first_line(content: str) -> str:
    for line in content.splitlines():
        if line.strip():
            return line.strip().lstrip("#").strip()[:120]
    return ""
