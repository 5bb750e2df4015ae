from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from sluice.engine.handlers import PermanentStepError, StepContext
from sluice.steps._market import opportunities
from sluice.steps.analyze import RUN_METRICS, AnalyzeStep, parse_days
from tests.unit.steps.conftest import run_step

MakeCtx = Callable[..., StepContext]

RUN = {
    "generate": {
        "contentType": "social-post",
        "content": "One two three four five.",
        "platform": "facebook",
    },
    "review": {"qualityScore": 0.9},
    "post": {"postId": "post_1", "platform": "facebook"},
    "notify": {"notificationId": "ntf_1", "message": "done"},
}


async def analyze(make_ctx: MakeCtx, config: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return (await run_step(AnalyzeStep(), make_ctx("analyze", config, **kw))).output


async def test_run_metrics(make_ctx: MakeCtx) -> None:
    out = await analyze(
        make_ctx,
        {"metrics": ["engagement", "reach", "conversions"], "duration": "7days"},
        upstream=RUN,
    )
    # reach = 1000 (facebook) x (0.5 + 0.5 x 0.9) x sqrt(7 / 7) = 950
    assert out["metrics"] == {"engagement": 57, "reach": 950, "conversions": 1}
    assert out["duration"] == "7days"
    assert out["durationDays"] == 7
    assert out["contentPieces"] == 1
    assert out["wordCount"] == 5
    assert out["posts"] == 1
    assert out["notifications"] == 1
    assert out["meanQualityScore"] == 0.9
    assert out["estimated"] is True
    assert "reach" in out["method"]


async def test_run_metrics_scale_with_duration_and_default_to_all(make_ctx: MakeCtx) -> None:
    out = await analyze(make_ctx, {"duration": "2weeks"}, upstream=RUN)
    assert set(out["metrics"]) == set(RUN_METRICS)
    assert out["metrics"]["reach"] == round(950 * math.sqrt(2))
    assert out["durationDays"] == 14


async def test_run_metrics_without_posts(make_ctx: MakeCtx) -> None:
    out = await analyze(make_ctx, {}, upstream={"g": RUN["generate"]})
    assert out["metrics"]["reach"] == 0
    assert out["metrics"]["engagementRate"] == 0.0
    assert out["meanQualityScore"] is None


@pytest.mark.parametrize(
    ("text", "days"),
    [("7days", 7), ("1 day", 1), ("24h", 1), ("2w", 14), ("3months", 90), ("1.5d", 1.5)],
)
def test_parse_days(text: str, days: float) -> None:
    assert parse_days(text, "x") == days


async def test_market_snapshot_is_deterministic_sample_data(make_ctx: MakeCtx) -> None:
    params = {"location": "San Francisco, CA", "timeframe": "90days"}
    first = await analyze(make_ctx, {"source": "market"}, params=params)
    again = await analyze(make_ctx, {"source": "market"}, params=params)
    elsewhere = await analyze(
        make_ctx, {"source": "market", "location": "Boise, ID"}, params=params
    )
    assert first == again
    assert first["medianPrice"] != elsewhere["medianPrice"]
    assert elsewhere["location"] == "Boise, ID"
    assert first["dataSource"] == "built-in sample data"
    assert {
        "medianPrice",
        "previousMedianPrice",
        "priceChangePct",
        "inventory",
        "daysOnMarket",
        "monthsOfSupply",
        "trend",
        "marketType",
    } <= set(first)
    change = first["priceChangePct"]
    expected = "rising" if change > 2 else "falling" if change < -2 else "stable"
    assert first["trend"] == expected
    assert first["medianPrice"] > 0 and first["inventory"] > 0 and first["daysOnMarket"] > 0


async def test_market_timeframe_defaults_to_90_days(make_ctx: MakeCtx) -> None:
    out = await analyze(make_ctx, {"source": "market"}, params={"location": "Austin, TX"})
    assert out["timeframe"] == "90days"
    assert out["timeframeDays"] == 90


async def test_opportunities_from_upstream_market(make_ctx: MakeCtx) -> None:
    market = await analyze(make_ctx, {"source": "market"}, params={"location": "Austin, TX"})
    out = await analyze(make_ctx, {"focus": "opportunities"}, inputs={"trends": market})
    assert out["basedOn"] == "trends"
    assert out["dataSource"] == "built-in sample data"
    assert out["opportunityCount"] == len(out["opportunities"]) >= 1
    for item in out["opportunities"]:
        assert set(item) == {"type", "title", "rationale", "priority"}


def test_opportunity_rules() -> None:
    hot = opportunities(
        {"trend": "rising", "priceChangePct": 6.5, "monthsOfSupply": 2.1, "daysOnMarket": 12}
    )
    assert [o["title"] for o in hot] == ["Seller demand", "Low inventory", "Fast sales"]
    assert "6.5%" in hot[0]["rationale"]
    cold = opportunities(
        {"trend": "falling", "priceChangePct": -4.0, "monthsOfSupply": 7.2, "daysOnMarket": 75}
    )
    assert [o["title"] for o in cold] == ["Buyer opportunity", "Ample choice", "Room to negotiate"]
    assert [
        o["title"]
        for o in opportunities({"trend": "stable", "monthsOfSupply": 5, "daysOnMarket": 40})
    ] == ["Steady market"]


@pytest.mark.parametrize(
    ("config", "params", "match"),
    [
        ({"metrics": ["reach", "vibes"]}, {}, r"config\.metrics.*vibes"),
        ({"duration": "soon"}, {}, r"config\.duration"),
        ({"duration": "0days"}, {}, r"config\.duration"),
        ({"source": "crystal-ball"}, {}, r"config\.source"),
        ({"focus": "everything"}, {}, r"config\.focus"),
        ({"source": "market"}, {}, r"config\.location"),
        (
            {"source": "market", "timeframe": "forever"},
            {"location": "Austin"},
            r"config\.timeframe",
        ),
        ({"focus": "opportunities"}, {}, "source 'market'"),
    ],
)
async def test_bad_config_is_permanent(
    make_ctx: MakeCtx, config: dict[str, Any], params: dict[str, Any], match: str
) -> None:
    with pytest.raises(PermanentStepError, match=match):
        await analyze(make_ctx, config, params=params, upstream=RUN)
