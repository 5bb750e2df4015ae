from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sluice.engine.handlers import PermanentStepError, StepContext
from sluice.steps.analyze import AnalyzeStep
from sluice.steps.generate import CONTENT_TYPES, GenerateStep
from sluice.steps.review import ReviewStep
from tests.unit.steps.conftest import run_step

MakeCtx = Callable[..., StepContext]

LISTING = {
    "listingId": "l-1",
    "address": "123 Main St",
    "price": 500000.0,  # numbers arrive from a Struct as floats
    "bedrooms": 3.0,
    "bathrooms": 2.5,
    "features": ["a renovated kitchen", "a large yard"],
    "location": "Austin, TX",
}
PARAM_SETS: list[dict[str, Any]] = [
    {},
    {"topic": "Spring market update", "platform": "facebook", "tone": "friendly"},
    {"topic": "Mortgage rates", "platform": "instagram", "tone": "professional"},
    {"topic": "Open house tips", "platform": "twitter", "tone": "enthusiastic"},
    {"topic": "Moving checklist", "platform": "linkedin", "tone": "casual"},
    {"topic": "Home staging", "platform": "x", "tone": "no such tone"},
    LISTING,
    {"address": "9 Elm Rd", "price": "", "bedrooms": "", "features": []},
    {"location": "Boise, ID", "timeframe": "30days"},
]


@pytest.mark.parametrize("params", PARAM_SETS)
@pytest.mark.parametrize("content_type", CONTENT_TYPES)
async def test_default_content_passes_review(
    make_ctx: MakeCtx, content_type: str, params: dict[str, Any]
) -> None:
    generated = await run_step(
        GenerateStep(), make_ctx("generate", {"contentType": content_type}, params=params)
    )
    out = generated.output
    assert out["contentType"] == content_type
    assert out["title"]
    assert out["wordCount"] > 0
    assert "None" not in out["content"]
    assert "None" not in out["title"]

    review = await run_step(ReviewStep(), make_ctx("review", inputs={"gen": out}))
    assert review.output["qualityScore"] >= 0.85, review.output["issues"]
    assert not [i for i in review.output["issues"] if i["check"] == "compliance"]
    assert review.output["passed"] is True


async def test_social_post_has_hashtags_and_platform(make_ctx: MakeCtx) -> None:
    ctx = make_ctx(
        "generate", {"contentType": "social-post"}, params={"topic": "Spring market update"}
    )
    out = (await run_step(GenerateStep(), ctx)).output
    assert set(out) == {
        "contentType",
        "title",
        "content",
        "wordCount",
        "tone",
        "platform",
        "hashtags",
    }
    assert out["platform"] == "facebook"
    assert "#SpringMarketUpdate" in out["hashtags"]
    assert all(tag in out["content"] for tag in out["hashtags"])
    assert "Spring market update" in out["content"]


async def test_config_overrides_params(make_ctx: MakeCtx) -> None:
    ctx = make_ctx(
        "generate",
        {"contentType": "social-post", "topic": "From config", "platform": "linkedin"},
        params={"topic": "From params", "platform": "facebook"},
    )
    out = (await run_step(GenerateStep(), ctx)).output
    assert out["platform"] == "linkedin"
    assert "From config" in out["content"]
    assert "From params" not in out["content"]


async def test_listing_facts_are_filled_in(make_ctx: MakeCtx) -> None:
    ctx = make_ctx("generate", {"contentType": "listing-description"}, params=LISTING)
    out = (await run_step(GenerateStep(), ctx)).output
    content = out["content"]
    assert out["title"] == "123 Main St"
    assert "$500,000" in content
    assert "3-bedroom, 2.5-bathroom" in content
    assert "a renovated kitchen and a large yard" in content
    assert "Austin, TX" in content


async def test_missing_facts_are_left_out(make_ctx: MakeCtx) -> None:
    ctx = make_ctx("generate", {"contentType": "email"}, params={"address": "9 Elm Rd"})
    content = (await run_step(GenerateStep(), ctx)).output["content"]
    assert "New listing: 9 Elm Rd" in content
    assert "bedroom" not in content
    assert "$" not in content


@pytest.mark.parametrize(
    ("features", "expected"),
    [
        ('["a pool", "a garden"]', "a pool and a garden"),  # a list substituted into text
        ("a pool, a garden; solar panels", "a pool, a garden and solar panels"),
    ],
)
async def test_features_as_text(make_ctx: MakeCtx, features: str, expected: str) -> None:
    ctx = make_ctx(
        "generate",
        {"contentType": "listing-description"},
        params={"address": "1 A St", "features": features},
    )
    assert expected in (await run_step(GenerateStep(), ctx)).output["content"]


async def test_text_is_used_verbatim(make_ctx: MakeCtx) -> None:
    text = "Big news for #Homeowners today. Rates dropped this week. #RealEstate"
    ctx = make_ctx("generate", {"contentType": "social-post", "text": text, "title": "News"})
    out = (await run_step(GenerateStep(), ctx)).output
    assert out["content"] == text
    assert out["title"] == "News"
    assert out["hashtags"] == ["#Homeowners", "#RealEstate"]
    assert out["wordCount"] == 10


async def test_output_is_deterministic(make_ctx: MakeCtx) -> None:
    ctx = make_ctx("generate", {"contentType": "blog-post"}, params={"topic": "Staging"})
    first, second = await run_step(GenerateStep(), ctx), await run_step(GenerateStep(), ctx)
    assert first == second


async def test_report_uses_upstream_market_figures(make_ctx: MakeCtx) -> None:
    params = {"location": "San Francisco, CA", "timeframe": "90days"}
    market = (
        await run_step(AnalyzeStep(), make_ctx("analyze", {"source": "market"}, params=params))
    ).output
    opportunities = (
        await run_step(
            AnalyzeStep(),
            make_ctx("analyze", {"focus": "opportunities"}, inputs={"trends": market}),
        )
    ).output
    ctx = make_ctx(
        "generate",
        {"contentType": "report"},
        params=params,
        inputs={"opportunities": opportunities},
        upstream={"trends": market},
    )
    out = (await run_step(GenerateStep(), ctx)).output
    assert out["title"] == "San Francisco, CA market report"
    assert f"${market['medianPrice']:,}" in out["content"]
    assert "built-in sample data" in out["content"]
    assert "the last 90 days" in out["content"]
    for item in opportunities["opportunities"]:
        assert item["title"] in out["content"]


async def test_report_lists_performance_metrics(make_ctx: MakeCtx) -> None:
    upstream = {"perf": {"metrics": {"reach": 1234, "engagementRate": 0.0625}}}
    ctx = make_ctx("generate", {"contentType": "report", "topic": "Campaign"}, upstream=upstream)
    content = (await run_step(GenerateStep(), ctx)).output["content"]
    assert "- Reach: 1,234." in content
    assert "- Engagement rate: 0.06." in content


@pytest.mark.parametrize(
    "config", [{}, {"contentType": "tweet"}, {"contentType": 3}, {"contentType": "  "}]
)
async def test_bad_content_type_is_permanent(make_ctx: MakeCtx, config: dict[str, Any]) -> None:
    with pytest.raises(PermanentStepError, match=r"config\.contentType"):
        await run_step(GenerateStep(), make_ctx("generate", config))
