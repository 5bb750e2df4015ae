from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from sluice.engine.handlers import PermanentStepError, StepContext
from sluice.steps._reply import HttpReply
from sluice.steps.http_client import HttpClient
from sluice.steps.notify import NotifyStep
from sluice.steps.post import PostStep
from sluice.steps.webhook import WebhookAllowList
from tests.unit.steps.conftest import run_step

MakeCtx = Callable[..., StepContext]

SOCIAL = {
    "contentType": "social-post",
    "title": "Hi",
    "content": "Hello world. #News",
    "hashtags": ["#News"],
    "platform": "facebook",
}
EMAIL = {"contentType": "email", "title": "Mail", "content": "Subject: Mail\n\nHello by email."}
SCHEDULE = {
    "platform": "facebook",
    "scheduledTime": "2025-03-05T09:00:00+00:00",
    "slot": "wed 09:00",
}


REPLY = HttpReply(202, {"content-type": "application/json"}, {"id": "r-1"}, truncated=False)


class RecordingWebhooks(HttpClient):
    """Records calls instead of making them (the real client is tested on a real server)."""

    def __init__(self) -> None:
        super().__init__(WebhookAllowList.parse("hooks.example.com"))
        self.calls: list[tuple[str, Mapping[str, Any], str]] = []

    async def post_json(
        self, url: str, payload: Mapping[str, Any], *, idempotency_key: str
    ) -> HttpReply:
        self.allow.check(url)
        self.calls.append((url, payload, idempotency_key))
        return REPLY


async def test_post_publishes_upstream_content(make_ctx: MakeCtx) -> None:
    ctx = make_ctx(
        "post",
        {"platform": "facebook"},
        inputs={"schedule": SCHEDULE},
        upstream={"generate": SOCIAL},
        step_id="post-content",
    )
    result = await run_step(PostStep(), ctx)
    out = result.output
    assert out["platform"] == "facebook"
    assert out["postId"].startswith("post_")
    assert out["publishedAt"] == "2025-03-04T15:07:00+00:00"
    assert out["scheduledTime"] == SCHEDULE["scheduledTime"]
    assert out["contentPreview"] == "Hello world. #News"
    assert "webhookStatus" not in out
    (publication,) = result.publications
    assert publication.kind == "post"
    assert publication.channel == "facebook"
    assert publication.payload["content"] == SOCIAL["content"]
    assert publication.payload["hashtags"] == ["#News"]
    assert publication.payload["postId"] == out["postId"]
    assert publication.payload["sourceStep"] == "generate"


async def test_post_id_is_stable_across_attempts(make_ctx: MakeCtx) -> None:
    first = await run_step(PostStep(), make_ctx("post", upstream={"g": SOCIAL}, attempt=1))
    again = await run_step(PostStep(), make_ctx("post", upstream={"g": SOCIAL}, attempt=2))
    other = await run_step(PostStep(), make_ctx("post", upstream={"g": SOCIAL}, run_id="run-2"))
    assert first.output["postId"] == again.output["postId"]
    assert first.output["postId"] != other.output["postId"]


async def test_post_picks_content_for_the_platform(make_ctx: MakeCtx) -> None:
    upstream = {"a-email": EMAIL, "b-social": SOCIAL}
    by_email = await run_step(
        PostStep(), make_ctx("post", {"platform": "email"}, upstream=upstream)
    )
    assert by_email.publications[0].payload["sourceStep"] == "a-email"
    social = await run_step(
        PostStep(), make_ctx("post", {"platform": "instagram"}, upstream=upstream)
    )
    assert social.publications[0].payload["sourceStep"] == "b-social"
    chosen = await run_step(
        PostStep(),
        make_ctx("post", {"platform": "instagram", "sourceStep": "a-email"}, upstream=upstream),
    )
    assert chosen.publications[0].payload["sourceStep"] == "a-email"


async def test_post_platform_auto_follows_the_schedule(make_ctx: MakeCtx) -> None:
    ctx = make_ctx(
        "post",
        {"platform": "auto"},
        upstream={"g": SOCIAL, "s": {**SCHEDULE, "platform": "linkedin"}},
    )
    assert (await run_step(PostStep(), ctx)).output["platform"] == "linkedin"


async def test_post_config_content(make_ctx: MakeCtx) -> None:
    ctx = make_ctx("post", {"content": "Direct text.", "platform": "blog"}, step_id="p")
    result = await run_step(PostStep(), ctx)
    assert result.publications[0].payload["content"] == "Direct text."
    assert result.output["scheduledTime"] is None


async def test_post_sends_the_webhook(make_ctx: MakeCtx) -> None:
    hooks = RecordingWebhooks()
    ctx = make_ctx("post", {"webhookUrl": "https://hooks.example.com/in"}, upstream={"g": SOCIAL})
    result = await run_step(PostStep(hooks), ctx)
    assert result.output["webhookStatus"] == 202
    assert result.output["webhookResponse"] == {
        "status": 202,
        "headers": {"content-type": "application/json"},
        "body": {"id": "r-1"},
        "truncated": False,
    }
    ((url, payload, key),) = hooks.calls
    assert url == "https://hooks.example.com/in"
    assert payload == result.publications[0].payload
    assert key == "run-1/step"


@pytest.mark.parametrize(
    ("config", "upstream", "match"),
    [
        ({}, {}, "nothing to publish"),
        ({"sourceStep": "missing"}, {"g": SOCIAL}, r"config\.sourceStep"),
        ({"webhookUrl": "https://hooks.example.com/"}, {"g": SOCIAL}, "SLUICE_WEBHOOK_ALLOW"),
        ({"platform": {"name": "x"}, "content": "x"}, {}, r"config\.platform"),
    ],
)
async def test_post_permanent_errors(
    make_ctx: MakeCtx, config: dict[str, Any], upstream: dict[str, Any], match: str
) -> None:
    # The default PostStep has no allow-list: every webhook URL is refused.
    with pytest.raises(PermanentStepError, match=match):
        await run_step(PostStep(), make_ctx("post", config, upstream=upstream))


async def test_notify_records_a_notification(make_ctx: MakeCtx) -> None:
    config = {"message": "Done!", "recipients": ["bob", "carol"], "channel": "email"}
    result = await run_step(NotifyStep(), make_ctx("notify", config, step_id="notify-user"))
    out = result.output
    assert out["message"] == "Done!"
    assert out["recipients"] == ["bob", "carol"]
    assert out["channel"] == "email"
    assert out["sentAt"] == "2025-03-04T15:07:00+00:00"
    assert out["notificationId"].startswith("ntf_")
    (notification,) = result.notifications
    assert notification == {
        "notificationId": out["notificationId"],
        "message": "Done!",
        "recipients": ["bob", "carol"],
        "channel": "email",
    }
    (publication,) = result.publications
    assert (publication.kind, publication.channel) == ("notification", "email")
    assert publication.payload["message"] == "Done!"


async def test_notify_defaults(make_ctx: MakeCtx) -> None:
    upstream = {
        "generate": SOCIAL,
        "review": {"qualityScore": 0.93},
        "schedule": SCHEDULE,
    }
    result = await run_step(NotifyStep(), make_ctx("notify", upstream=upstream))
    out = result.output
    assert out["recipients"] == ["alice"]  # the run's owner
    assert out["channel"] == "in-app"
    assert "run-1" in out["message"]
    assert "0.93" in out["message"]
    assert SCHEDULE["scheduledTime"] in out["message"]


async def test_notify_id_is_stable_and_recipients_may_be_text(make_ctx: MakeCtx) -> None:
    config = {"recipients": "bob, carol"}
    first = await run_step(NotifyStep(), make_ctx("notify", config, attempt=1))
    again = await run_step(NotifyStep(), make_ctx("notify", config, attempt=3))
    assert first.output["notificationId"] == again.output["notificationId"]
    assert first.output["recipients"] == ["bob", "carol"]


async def test_notify_sends_the_webhook(make_ctx: MakeCtx) -> None:
    hooks = RecordingWebhooks()
    config = {"message": "Done", "webhookUrl": "http://hooks.example.com/n"}
    result = await run_step(NotifyStep(hooks), make_ctx("notify", config))
    assert result.output["webhookStatus"] == 202
    assert result.output["webhookResponse"]["body"] == {"id": "r-1"}
    # The outbox keeps the notification, not the receiver's answer.
    (publication,) = result.publications
    assert publication.payload["webhookStatus"] == 202
    assert "webhookResponse" not in publication.payload
    ((_, payload, key),) = hooks.calls
    assert payload["message"] == "Done"
    assert payload["runId"] == "run-1"
    assert key == "run-1/step"


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"webhookUrl": "http://elsewhere.example.org/"}, "SLUICE_WEBHOOK_ALLOW"),
        ({"recipients": [{"id": 1}]}, r"config\.recipients\[0\]"),
        ({"message": ["a"]}, r"config\.message"),
    ],
)
async def test_notify_permanent_errors(
    make_ctx: MakeCtx, config: dict[str, Any], match: str
) -> None:
    with pytest.raises(PermanentStepError, match=match):
        await run_step(NotifyStep(RecordingWebhooks()), make_ctx("notify", config))
