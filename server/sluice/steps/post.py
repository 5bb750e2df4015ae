"""`post`: publishes upstream content to a platform.

The publication is written to the store's outbox with the step's completion (the engine
commits `StepResult.publications` in the same transaction), so a post is recorded exactly
when its step completes. With `config.webhookUrl` the payload is also POSTed there first; a
failed delivery fails the attempt and the engine retries it under the step's policy, with
the same Idempotency-Key so the receiver can drop duplicates.

Content: `config.content` if given; else the upstream piece from `config.sourceStep`; else
the upstream piece that suits the platform (email for email, blog-post for blog, otherwise
a social post), falling back to the first by step id.

Output: platform, postId, publishedAt, scheduledTime (null without an upstream schedule),
title, contentPreview, and with a webhook URL: webhookStatus (the receiver's 2xx status) and
webhookResponse (status, headers, body, truncated: the receiver's answer, see `_reply.py`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sluice.engine.handlers import PermanentStepError, StepContext, StepResult
from sluice.engine.model import JsonObject, Publication
from sluice.steps import _schema
from sluice.steps._config import get_str, iso, stable_id, text
from sluice.steps._text import Piece, outputs_with, pieces, preview
from sluice.steps.http_client import HttpClient
from sluice.steps.webhook import WebhookAllowList, url_problems

_PREFERRED_TYPE = {"email": "email", "blog": "blog-post"}

CONFIG_SCHEMA = _schema.obj(
    {
        "platform": _schema.string(
            "where to publish; auto: the platform of the schedule upstream, else the run's "
            "platform param, else facebook",
            default="auto",
        ),
        "content": _schema.text("the text to publish instead of upstream content"),
        "title": _schema.text("the title of config.content"),
        "sourceStep": _schema.string("the upstream step whose content to publish"),
        "webhookUrl": _schema.WEBHOOK_URL,
    }
)


def _no_webhooks() -> HttpClient:
    # Without a configured client every URL is refused, with a message naming the env var.
    return HttpClient(WebhookAllowList())


@dataclass(frozen=True, slots=True)
class PostStep:
    webhooks: HttpClient = field(default_factory=_no_webhooks)
    config_schema: ClassVar[Mapping[str, Any]] = CONFIG_SCHEMA

    def check_config(self, config: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
        return url_problems(self.webhooks.allow, config)

    async def run(self, ctx: StepContext) -> StepResult:
        schedules = [out for _, out in outputs_with(ctx.upstream, "scheduledTime")]
        platform = get_str(ctx.config, "platform", "auto").lower()
        if platform == "auto":
            platform = (
                (text(schedules[0].get("platform")) if schedules else None)
                or text(ctx.params.get("platform"))
                or "facebook"
            ).lower()
        schedule = next(
            (s for s in schedules if s.get("platform") == platform),
            schedules[0] if schedules else None,
        )
        piece = _choose(ctx, platform)
        post_id = stable_id("post", ctx.idempotency_key)
        scheduled = text(schedule.get("scheduledTime")) if schedule else None
        payload: JsonObject = {
            "postId": post_id,
            "runId": ctx.run_id,
            "stepId": ctx.step_id,
            "platform": platform,
            "title": piece.title,
            "content": piece.text,
            "hashtags": list(piece.hashtags),
            "scheduledTime": scheduled,
            "publishedAt": iso(ctx.now),
            "sourceStep": piece.step_id,
        }
        output: JsonObject = {
            "platform": platform,
            "postId": post_id,
            "publishedAt": payload["publishedAt"],
            "scheduledTime": scheduled,
            "title": piece.title,
            "contentPreview": preview(piece.text),
        }
        url = get_str(ctx.config, "webhookUrl", "")
        if url:
            reply = await self.webhooks.post_json(url, payload, idempotency_key=ctx.idempotency_key)
            output["webhookStatus"] = reply.status
            output["webhookResponse"] = reply.output()
        return StepResult(
            output=output,
            publications=(Publication(kind="post", channel=platform, payload=payload),),
        )


def _choose(ctx: StepContext, platform: str) -> Piece:
    given = get_str(ctx.config, "content", "")
    if given:
        return Piece(ctx.step_id, given, title=get_str(ctx.config, "title", ""))
    found = pieces(ctx.upstream)
    source = get_str(ctx.config, "sourceStep", "")
    if source:
        match = [p for p in found if p.step_id == source]
        if not match:
            raise PermanentStepError(
                f"config.sourceStep {source!r} is not an upstream step with a `content` output"
            )
        return match[0]
    if not found:
        raise PermanentStepError(
            "post found nothing to publish: set config.content or depend (directly or "
            "through other steps) on a step whose output has `content`, such as generate"
        )
    wanted = _PREFERRED_TYPE.get(platform, "social-post")
    return next((p for p in found if p.content_type == wanted), found[0])
