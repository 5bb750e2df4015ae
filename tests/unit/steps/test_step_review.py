from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sluice.engine.handlers import PermanentStepError, StepContext
from sluice.steps.review import CHECKS, FAIR_HOUSING_PHRASES, ReviewStep
from tests.unit.steps.conftest import run_step

MakeCtx = Callable[..., StepContext]

CLEAN = (
    "Welcome to 123 Main St. This bright home has three bedrooms and a large garden. "
    "Contact us today to arrange a private showing of the property and its grounds."
)


async def review(make_ctx: MakeCtx, text: str, **config: Any) -> dict[str, Any]:
    ctx = make_ctx("review", config, inputs={"gen": {"contentType": "", "content": text}})
    return (await run_step(ReviewStep(), ctx)).output


def messages(out: dict[str, Any], check: str) -> list[str]:
    return [i["message"] for i in out["issues"] if i["check"] == check]


async def test_clean_text_scores_one(make_ctx: MakeCtx) -> None:
    out = await review(make_ctx, CLEAN)
    assert out["qualityScore"] == 1.0
    assert out["checks"] == dict.fromkeys(CHECKS, 1.0)
    assert out["issues"] == []
    assert out["passed"] is True
    assert out["reviewedSteps"] == ["gen"]
    assert out["errorCount"] == 0
    assert out["wordCount"] == 29


async def test_adults_only_is_a_compliance_error(make_ctx: MakeCtx) -> None:
    out = await review(make_ctx, CLEAN + " This quiet building is Adults Only.")
    compliance = [i for i in out["issues"] if i["check"] == "compliance"]
    assert len(compliance) == 1
    assert compliance[0]["severity"] == "error"
    assert "adults only" in compliance[0]["message"]
    assert "Adults Only" in compliance[0]["excerpt"]
    assert compliance[0]["step"] == "gen"
    assert out["qualityScore"] < 0.7
    assert out["passed"] is False
    assert out["errorCount"] == 1


@pytest.mark.parametrize("phrase", sorted(FAIR_HOUSING_PHRASES))
async def test_every_fair_housing_phrase_is_caught(make_ctx: MakeCtx, phrase: str) -> None:
    out = await review(make_ctx, f"{CLEAN} Note: {phrase.upper()}.", checks=["compliance"])
    assert out["checks"]["compliance"] < 1.0
    assert out["passed"] is False


@pytest.mark.parametrize(
    "text",
    [
        "The tenants must be able bodied.",  # hyphen or space
        "Great for a bachelor-pad lifestyle.",
    ],
)
async def test_phrase_variants(make_ctx: MakeCtx, text: str) -> None:
    out = await review(make_ctx, text, checks=["compliance"])
    assert out["passed"] is False


async def test_phrases_match_whole_words_only(make_ctx: MakeCtx) -> None:
    out = await review(make_ctx, "No kidding, this home has no childrenswear shop nearby.")
    assert messages(out, "compliance") == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("This is the the best home.", "doubled word"),
        ("What a home!! Come and see.", "repeated punctuation"),
        ("A fine home.  Come and see.", "double space"),
        ("A fine home (with a garden. Come and see.", "unclosed '('"),
        ("A fine home with a garden). Come and see.", "unmatched ')'"),
        ('A "fine home with a garden. Come and see.', "unbalanced double quotes"),
        ("A fine home. come and see.", "lowercase"),
        ("A home " + "with rooms " * 25 + "to see.", "sentence has"),
    ],
)
async def test_grammar_checks(make_ctx: MakeCtx, text: str, expected: str) -> None:
    out = await review(make_ctx, text, checks=["grammar"])
    found = messages(out, "grammar")
    assert any(expected in m for m in found), found
    assert all(i["severity"] == "warning" for i in out["issues"])
    assert out["checks"]["grammar"] < 1.0


async def test_grammar_ignores_abbreviations_and_list_markers(make_ctx: MakeCtx) -> None:
    text = "Many extras, e.g. a pool and a sauna.\n1) Large kitchen.\n- Two garages."
    out = await review(make_ctx, text, checks=["grammar"])
    assert out["issues"] == []


async def test_brand_terms(make_ctx: MakeCtx) -> None:
    out = await review(
        make_ctx,
        CLEAN + " Call Acme Realty.",
        checks=["brand"],
        brand={"required": ["Sunrise Homes"], "forbidden": ["acme realty"]},
    )
    issues = {(i["severity"], i["message"]) for i in out["issues"]}
    assert ("error", 'forbidden brand term "acme realty"') in issues
    assert ("warning", 'required brand term "Sunrise Homes" is missing') in issues
    assert out["passed"] is False


async def test_seo_bounds_and_keywords(make_ctx: MakeCtx) -> None:
    out = await review(
        make_ctx, CLEAN, checks=["seo"], seo={"minWords": 50.0, "keywords": ["garden", "pool"]}
    )
    found = messages(out, "seo")
    assert "too short for SEO: 29 words (minimum 50)" in found
    assert 'keyword "pool" does not appear' in found
    assert not any("garden" in m for m in found)
    assert out["checks"] == {"seo": 0.8}
    assert out["qualityScore"] == 0.8
    assert out["passed"] is True  # warnings only

    too_long = await review(make_ctx, CLEAN, checks=["seo"], seo={"maxWords": 10})
    assert any("too long" in m for m in messages(too_long, "seo"))


async def test_seo_bounds_default_by_content_type(make_ctx: MakeCtx) -> None:
    ctx = make_ctx(
        "review", {"checks": ["seo"]}, inputs={"g": {"contentType": "blog-post", "content": CLEAN}}
    )
    out = (await run_step(ReviewStep(), ctx)).output
    assert "too short for SEO: 29 words (minimum 150)" in messages(out, "seo")


async def test_seo_readability(make_ctx: MakeCtx) -> None:
    long_sentences = " ".join(["This home " + "has rooms " * 13 + "inside."] * 3)
    out = await review(make_ctx, long_sentences, checks=["seo"])
    assert any("hard to read" in m for m in messages(out, "seo"))


async def test_score_formula(make_ctx: MakeCtx) -> None:
    # One grammar warning: grammar 0.9, the others 1.0, mean 0.975.
    out = await review(make_ctx, CLEAN.replace("Contact us", "Contact  us"))
    assert out["checks"]["grammar"] == 0.9
    assert out["qualityScore"] == 0.975


async def test_scores_are_averaged_over_pieces(make_ctx: MakeCtx) -> None:
    inputs = {
        "a": {"content": CLEAN},
        "b": {"content": CLEAN.replace("Contact us", "Contact  us")},
        "c": {"no": "content"},
    }
    out = (
        await run_step(ReviewStep(), make_ctx("review", {"checks": ["grammar"]}, inputs=inputs))
    ).output
    assert out["reviewedSteps"] == ["a", "b"]
    assert out["checks"]["grammar"] == 0.95
    assert [i["step"] for i in out["issues"]] == ["b"]


async def test_falls_back_to_upstream_content(make_ctx: MakeCtx) -> None:
    ctx = make_ctx(
        "review",
        inputs={"schedule": {"scheduledTime": "2025-03-05T09:00:00+00:00"}},
        upstream={"generate": {"content": CLEAN}},
    )
    assert (await run_step(ReviewStep(), ctx)).output["reviewedSteps"] == ["generate"]


async def test_config_content(make_ctx: MakeCtx) -> None:
    ctx = make_ctx("review", {"content": ["No kids allowed.", CLEAN]}, step_id="rev")
    out = (await run_step(ReviewStep(), ctx)).output
    assert out["reviewedSteps"] == ["rev"]
    assert out["passed"] is False


async def test_checks_subset(make_ctx: MakeCtx) -> None:
    out = await review(make_ctx, CLEAN, checks=["grammar", "seo"])
    assert set(out["checks"]) == {"grammar", "seo"}


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"checks": ["grammar", "spelling"]}, r"config\.checks.*spelling"),
        ({"checks": []}, r"config\.checks"),
        ({"checks": 3}, r"config\.checks"),
        ({"seo": {"minWords": 100, "maxWords": 10}}, r"config\.seo\.maxWords.*minWords"),
        ({"seo": {"minWords": "many"}}, r"config\.seo\.minWords"),
        ({"brand": ["acme"]}, r"config\.brand"),
        ({"content": 5}, r"config\.content"),
    ],
)
async def test_bad_config_is_permanent(
    make_ctx: MakeCtx, config: dict[str, Any], match: str
) -> None:
    ctx = make_ctx("review", config, inputs={"g": {"content": CLEAN}})
    with pytest.raises(PermanentStepError, match=match):
        await run_step(ReviewStep(), ctx)


async def test_no_content_is_permanent(make_ctx: MakeCtx) -> None:
    ctx = make_ctx("review", inputs={"a": {"qualityScore": 1.0}})
    with pytest.raises(PermanentStepError, match="no content"):
        await run_step(ReviewStep(), ctx)
