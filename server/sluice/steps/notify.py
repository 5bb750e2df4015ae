"""`notify`: tells people the run got this far.

The notification becomes a NOTIFICATION event and an outbox record, both committed with the
step's completion; with `config.webhookUrl` it is also POSTed there (failures retry like any
step, with the same Idempotency-Key).

Config: message (default: a summary of what the run produced), recipients (default: the
run's owner), channel (default "in-app"), webhookUrl.

Output: notificationId, message, recipients, channel, sentAt, and with a webhook URL:
webhookStatus (the receiver's 2xx status) and webhookResponse (status, headers, body,
truncated: the receiver's answer, see `_reply.py`; left out of the outbox record).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sluice.engine.handlers import StepContext, StepResult
from sluice.engine.model import JsonObject, Publication
from sluice.steps import _schema
from sluice.steps._config import get_str, get_str_list, iso, stable_id
from sluice.steps._text import outputs_with, pieces
from sluice.steps.http_client import HttpClient
from sluice.steps.webhook import WebhookAllowList, url_problems

CONFIG_SCHEMA = _schema.obj(
    {
        "message": _schema.text("the message; default: a summary of what the run produced"),
        "recipients": _schema.strings("who to notify; default: the run's owner"),
        "channel": _schema.string("the channel to notify on", default="in-app"),
        "webhookUrl": _schema.WEBHOOK_URL,
    }
)


def _no_webhooks() -> HttpClient:
    return HttpClient(WebhookAllowList())


@dataclass(frozen=True, slots=True)
class NotifyStep:
    webhooks: HttpClient = field(default_factory=_no_webhooks)
    config_schema: ClassVar[Mapping[str, Any]] = CONFIG_SCHEMA

    def check_config(self, config: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
        return url_problems(self.webhooks.allow, config)

    async def run(self, ctx: StepContext) -> StepResult:
        message = get_str(ctx.config, "message", "") or _summary(ctx)
        recipients = get_str_list(ctx.config, "recipients", [ctx.owner] if ctx.owner else [])
        channel = get_str(ctx.config, "channel", "in-app")
        notification: JsonObject = {
            "notificationId": stable_id("ntf", ctx.idempotency_key),
            "message": message,
            "recipients": recipients,
            "channel": channel,
        }
        output: JsonObject = {**notification, "sentAt": iso(ctx.now)}
        url = get_str(ctx.config, "webhookUrl", "")
        if url:
            payload = {**output, "runId": ctx.run_id, "stepId": ctx.step_id}
            reply = await self.webhooks.post_json(url, payload, idempotency_key=ctx.idempotency_key)
            output["webhookStatus"] = reply.status
            output["webhookResponse"] = reply.output()
        # The outbox records the notification; the receiver's answer stays in the output.
        record = {key: value for key, value in output.items() if key != "webhookResponse"}
        return StepResult(
            output=output,
            publications=(Publication(kind="notification", channel=channel, payload=record),),
            notifications=(notification,),
        )


def _summary(ctx: StepContext) -> str:
    """A default message from what the run produced: content, scores, schedules, posts."""
    parts = [f"Workflow run {ctx.run_id} is ready for you."]
    content = pieces(ctx.upstream)
    if content:
        parts.append(f"It produced {len(content)} piece(s) of content.")
    scores = [
        float(out["qualityScore"])
        for _, out in outputs_with(ctx.upstream, "qualityScore")
        if isinstance(out["qualityScore"], int | float)
    ]
    if scores:
        parts.append(f"Review quality score: {min(scores):.2f}.")
    for step_id, out in outputs_with(ctx.upstream, "scheduledTime"):
        parts.append(f"{step_id} is scheduled for {out['scheduledTime']}.")
    posts = sum(1 for _ in outputs_with(ctx.upstream, "postId"))
    if posts:
        parts.append(f"{posts} post(s) published.")
    return " ".join(parts)
