from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from sluice.engine.handlers import PermanentStepError, StepContext
from sluice.steps.schedule import ScheduleStep
from tests.unit.steps.conftest import run_step

MakeCtx = Callable[..., StepContext]
NOW = datetime(2025, 3, 4, 15, 7, tzinfo=UTC)  # Tuesday


async def schedule(make_ctx: MakeCtx, config: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return (await run_step(ScheduleStep(), make_ctx("schedule", config, **kw))).output


async def test_next_slot_in_utc(make_ctx: MakeCtx) -> None:
    # Facebook's Tuesday slots (09:00, 13:00) have passed: Wednesday 09:00.
    out = await schedule(make_ctx, {"platform": "facebook"})
    assert out == {
        "platform": "facebook",
        "scheduledTime": "2025-03-05T09:00:00+00:00",
        "timezone": "UTC",
        "slot": "wed 09:00",
    }


async def test_next_slot_in_the_users_zone(make_ctx: MakeCtx) -> None:
    # 10:07 in New York: the 13:00 slot today, at New York's offset.
    out = await schedule(make_ctx, {"platform": "facebook", "timezone": "America/New_York"})
    assert out["scheduledTime"] == "2025-03-04T13:00:00-05:00"
    assert out["slot"] == "tue 13:00"
    when = datetime.fromisoformat(out["scheduledTime"])
    assert when > NOW
    assert (
        when.utcoffset()
        == datetime(2025, 3, 4, 13, tzinfo=ZoneInfo("America/New_York")).utcoffset()
    )


async def test_slot_is_strictly_after_now_plus_lead(make_ctx: MakeCtx) -> None:
    now = datetime(2025, 3, 4, 8, 45, tzinfo=UTC)  # 09:00 is exactly now + 15 minutes
    out = await schedule(make_ctx, {"platform": "facebook"}, now=now)
    assert out["slot"] == "tue 13:00"
    out = await schedule(make_ctx, {"platform": "facebook", "minLeadMinutes": 0}, now=now)
    assert out["slot"] == "tue 09:00"
    out = await schedule(make_ctx, {"platform": "facebook", "minLeadMinutes": 300.0}, now=now)
    assert out["slot"] == "wed 09:00"


async def test_wraps_to_next_week(make_ctx: MakeCtx) -> None:
    thursday_noon = datetime(2025, 3, 6, 12, 0, tzinfo=UTC)
    out = await schedule(make_ctx, {"platform": "email"}, now=thursday_noon)
    assert out["scheduledTime"] == "2025-03-11T10:00:00+00:00"  # next Tuesday


async def test_custom_slots(make_ctx: MakeCtx) -> None:
    out = await schedule(make_ctx, {"platform": "mastodon", "slots": {"sunday": ["07:30", "7:00"]}})
    assert out["scheduledTime"] == "2025-03-09T07:00:00+00:00"
    assert out["slot"] == "sun 07:00"
    assert out["platform"] == "mastodon"


async def test_skips_a_slot_lost_to_daylight_saving(make_ctx: MakeCtx) -> None:
    # 2025-03-09 02:30 does not exist in New York (clocks jump from 02:00 to 03:00).
    config = {"slots": {"sun": ["02:30"]}, "timezone": "America/New_York"}
    out = await schedule(make_ctx, config)
    assert out["scheduledTime"] == "2025-03-16T02:30:00-04:00"


@pytest.mark.parametrize(
    ("config", "params", "upstream", "expected"),
    [
        (
            {"platform": "auto"},
            {},
            {"gen": {"contentType": "social-post", "platform": "instagram"}},
            "instagram",
        ),
        ({}, {"platform": "linkedin"}, {}, "linkedin"),
        ({"platform": "auto"}, {}, {"other": {"platform": "email"}}, "facebook"),
        ({"platform": "X"}, {}, {}, "twitter"),
    ],
)
async def test_platform_choice(
    make_ctx: MakeCtx,
    config: dict[str, Any],
    params: dict[str, Any],
    upstream: dict[str, Any],
    expected: str,
) -> None:
    out = await schedule(make_ctx, config, params=params, upstream=upstream)
    assert out["platform"] == expected


@pytest.mark.parametrize(
    "platform", ["facebook", "instagram", "twitter", "linkedin", "email", "blog"]
)
async def test_every_platform_has_a_slot_within_a_week(make_ctx: MakeCtx, platform: str) -> None:
    when = datetime.fromisoformat(
        (await schedule(make_ctx, {"platform": platform}))["scheduledTime"]
    )
    assert NOW < when <= NOW + timedelta(days=8)


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, r"config\.timezone"),
        ({"timezone": "../etc/passwd"}, r"config\.timezone"),
        ({"platform": "myspace"}, r"config\.platform"),
        ({"slots": {"mon": ["25:00"]}}, r"config\.slots\.mon"),
        ({"slots": {"funday": ["09:00"]}}, r"config\.slots"),
        ({"slots": {"mon": []}}, r"config\.slots"),
        ({"slots": ["09:00"]}, r"config\.slots"),
        ({"minLeadMinutes": -5}, r"config\.minLeadMinutes"),
        ({"platform": ["facebook"]}, r"config\.platform"),
    ],
)
async def test_bad_config_is_permanent(
    make_ctx: MakeCtx, config: dict[str, Any], match: str
) -> None:
    with pytest.raises(PermanentStepError, match=match):
        await schedule(make_ctx, config)
