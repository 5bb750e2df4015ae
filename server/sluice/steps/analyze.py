"""`analyze`: metrics over what the run produced and published, or a market snapshot.

`config.source` "run" (default) counts the upstream content, posts and review scores and
estimates reach and engagement (these are estimates, not measurements; the formula is in
`METHOD` and in the output). `config.source` "market" builds the sample market snapshot of
`sluice.steps._market` for `location` / `timeframe` (config, else params). `config.focus`
"opportunities" turns an upstream market snapshot into a list of opportunities.

Output (run): source, duration, durationDays, metrics {selected by config.metrics},
contentPieces, wordCount, posts, notifications, meanQualityScore, estimated, method.
Output (market): source, dataSource, location, timeframe, timeframeDays, sampleSize,
medianPrice, previousMedianPrice, priceChangePct, inventory, daysOnMarket, monthsOfSupply,
trend, marketType, note.
Output (opportunities): source, focus, basedOn, location, dataSource, opportunities
[{type, title, rationale, priority}], opportunityCount.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import mean
from typing import Any, ClassVar

from sluice.engine.handlers import PermanentStepError, StepContext, StepResult
from sluice.engine.model import JsonObject
from sluice.steps import _market, _schema
from sluice.steps._config import get_str, get_str_list, setting, text
from sluice.steps._text import outputs_with, pieces, word_count

# Followers a post reaches on a typical small-business account, and the share who engage.
AUDIENCE = {"facebook": 1000, "instagram": 1200, "twitter": 800, "linkedin": 600, "email": 500}
ENGAGEMENT_RATE = {"facebook": 0.06, "instagram": 0.08, "twitter": 0.04, "linkedin": 0.05}
DEFAULT_AUDIENCE, DEFAULT_RATE, CONVERSION_RATE, ASSUMED_QUALITY = 400, 0.05, 0.02, 0.8
METHOD = (
    "estimate: reach = sum over posts of audience(platform) x (0.5 + 0.5 x mean review "
    "quality, 0.8 if unreviewed) x sqrt(days / 7); impressions = 1.6 x reach; engagement = "
    "reach x rate(platform); conversions = 2% of engagement"
)
RUN_METRICS = (
    "reach",
    "impressions",
    "engagement",
    "engagementRate",
    "conversions",
    "contentPieces",
    "posts",
    "wordCount",
    "qualityScore",
)
_UNITS = {"h": 1 / 24, "d": 1, "w": 7, "m": 30, "y": 365}
_PERIOD = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(h|hours?|d|days?|w|weeks?|m|months?|y|years?)\s*$")


_PERIOD_FORM: _schema.Schema = {
    "type": "string",
    # _PERIOD, lowercase, and not zero.
    "pattern": r"^\s*(?!0*(\.0*)?\s*[a-z])\d+(\.\d+)?\s*(h|hours?|d|days?|w|weeks?|m|months?|y|years?)\s*$",
    "description": "a period like 24h, 7days, 2weeks, 3months or 1year (more than zero)",
}


CONFIG_SCHEMA = _schema.obj(
    {
        "focus": _schema.choice(
            ("performance", "opportunities"),
            "performance: metrics of the run (or of the market, with source market); "
            "opportunities: opportunities in the market snapshot of an upstream analyze step",
            default="performance",
        ),
        "source": _schema.choice(
            ("run", "market"),
            "run: what the run produced and published; market: a sample market snapshot",
            default="run",
        ),
        "metrics": _schema.names(
            RUN_METRICS, "the run metrics to output", default=list(RUN_METRICS)
        ),
        "duration": _schema.formed(
            "the period the run's estimates cover", _PERIOD_FORM, default="7days"
        ),
        "location": _schema.text(
            "the market of a snapshot; default: the run's param of the same name"
        ),
        "timeframe": _schema.formed(
            "the period of a market snapshot; default: the run's param of the same name, else "
            "90days",
            _PERIOD_FORM,
        ),
    }
)


def parse_days(value: str, where: str) -> float:
    """ "7days", "2 weeks", "24h", "3months" -> days (a month is 30 days)."""
    match = _PERIOD.match(value.lower())
    if match is None or float(match[1]) <= 0:
        raise PermanentStepError(f"{where} {value!r} is not a period like '7days' or '2weeks'")
    days = float(match[1]) * _UNITS[match[2][0]]
    return int(days) if days.is_integer() else round(days, 3)


@dataclass(frozen=True, slots=True)
class AnalyzeStep:
    config_schema: ClassVar[Mapping[str, Any]] = CONFIG_SCHEMA

    async def run(self, ctx: StepContext) -> StepResult:
        if ctx.config.get("focus") == "opportunities":
            return StepResult(output=_opportunities(ctx))
        if ctx.config.get("source") == "market":
            return StepResult(output=_market_snapshot(ctx))
        return StepResult(output=_run_metrics(ctx))


def _run_metrics(ctx: StepContext) -> JsonObject:
    selected = get_str_list(ctx.config, "metrics", RUN_METRICS)
    duration = get_str(ctx.config, "duration", "7days")
    days = parse_days(duration, "config.duration")
    content = pieces(ctx.upstream)
    scores = [
        float(out["qualityScore"])
        for _, out in outputs_with(ctx.upstream, "qualityScore")
        if isinstance(out["qualityScore"], int | float)
    ]
    quality = mean(scores) if scores else ASSUMED_QUALITY
    platforms = [str(out.get("platform", "")) for _, out in outputs_with(ctx.upstream, "postId")]
    reach_by_post = [
        AUDIENCE.get(p, DEFAULT_AUDIENCE) * (0.5 + 0.5 * quality) * math.sqrt(days / 7)
        for p in platforms
    ]
    reach = round(sum(reach_by_post))
    engagement = round(
        sum(
            r * ENGAGEMENT_RATE.get(p, DEFAULT_RATE)
            for r, p in zip(reach_by_post, platforms, strict=True)
        )
    )
    values: dict[str, Any] = {
        "reach": reach,
        "impressions": round(reach * 1.6),
        "engagement": engagement,
        "engagementRate": round(engagement / reach, 4) if reach else 0.0,
        "conversions": round(engagement * CONVERSION_RATE),
        "contentPieces": len(content),
        "posts": len(platforms),
        "wordCount": sum(word_count(p.text) for p in content),
        "qualityScore": round(quality, 4),
    }
    return {
        "source": "run",
        "duration": duration,
        "durationDays": days,
        "metrics": {key: values[key] for key in dict.fromkeys(selected)},
        "contentPieces": len(content),
        "wordCount": values["wordCount"],
        "posts": len(platforms),
        "notifications": sum(1 for _ in outputs_with(ctx.upstream, "notificationId")),
        "meanQualityScore": round(mean(scores), 4) if scores else None,
        "estimated": True,
        "method": METHOD,
    }


def _market_snapshot(ctx: StepContext) -> JsonObject:
    location = text(setting(ctx, "location"))
    if location is None:
        raise PermanentStepError(
            "analyze with source 'market' needs config.location (or a run param 'location')"
        )
    timeframe = text(setting(ctx, "timeframe")) or "90days"
    days = parse_days(timeframe, "config.timeframe")
    return {"source": "market", **_market.market_figures(location, timeframe, days)}


def _opportunities(ctx: StepContext) -> JsonObject:
    found = next(iter(outputs_with(ctx.upstream, "medianPrice")), None)
    if found is None:
        raise PermanentStepError(
            "config.focus 'opportunities' needs an upstream analyze step with source 'market'"
        )
    step_id, market = found
    items = _market.opportunities(market)
    return {
        "source": "market",
        "focus": "opportunities",
        "basedOn": step_id,
        "location": market.get("location"),
        "dataSource": market.get("dataSource"),
        "opportunities": items,
        "opportunityCount": len(items),
    }
