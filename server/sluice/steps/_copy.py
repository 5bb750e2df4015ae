"""The built-in text templates behind `generate`.

Each renderer returns (title, content, hashtags). The copy is written to pass every review
check out of the box (capitalized sentences, no fair-housing phrases, moderate sentence
length, within the SEO word bounds of its content type) and states no facts about a home or a
market that the params or an upstream step did not provide.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sluice.steps._text import outputs_with


@dataclass(frozen=True, slots=True)
class Facts:
    topic: str | None
    tone: str
    platform: str
    address: str | None = None
    price: str | None = None
    bedrooms: str | None = None
    bathrooms: str | None = None
    features: tuple[str, ...] = ()
    location: str | None = None
    timeframe: str | None = None


@dataclass(frozen=True, slots=True)
class _Tone:
    opener: str  # "{topic}" is filled in
    closing: str
    social: str
    signoff: str


_TONES = {
    "friendly": _Tone(
        "Thinking about {topic}? You are in the right place.",
        "Have a question about your own plans? Send us a message, we are always happy to help.",
        "Happy to share a quick update.",
        "Warm regards,",
    ),
    "professional": _Tone(
        "This article summarizes {topic} and the factors that matter most.",
        "For a detailed consultation, contact our team.",
        "A brief update from our team.",
        "Kind regards,",
    ),
    "enthusiastic": _Tone(
        "There is a lot to be excited about when it comes to {topic}!",
        "Ready to make your next move? Let us get started together!",
        "Big news worth sharing!",
        "Cheers,",
    ),
    "casual": _Tone(
        "Let us talk about {topic}.",
        "Got questions? Just drop us a line.",
        "Quick one for you.",
        "Cheers,",
    ),
    "informative": _Tone(
        "Here is a clear overview of {topic}.",
        "Contact us for more information.",
        "A short update.",
        "Best regards,",
    ),
}
_NEUTRAL_TOPIC = "the local housing market"


def _tone(facts: Facts) -> _Tone:
    return _TONES.get(facts.tone, _TONES["informative"])


def _cap(phrase: str) -> str:
    return phrase[:1].upper() + phrase[1:]


def _sentence(phrase: str) -> str:
    return phrase if phrase.endswith((".", "!", "?")) else phrase + "."


def _join(items: tuple[str, ...] | list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _home_summary(f: Facts) -> str:
    size = [f"{f.bedrooms}-bedroom"] if f.bedrooms else []
    size += [f"{f.bathrooms}-bathroom"] if f.bathrooms else []
    home = "This " + (", ".join(size) + " " if size else "") + "home"
    return f"{home} is offered at {f.price}." if f.price else f"{home} is ready for its next owner."


def _listing_details(f: Facts) -> str:
    parts = [_home_summary(f)]
    if f.features:
        parts.append(_sentence(f"Highlights include {_join(f.features)}"))
    if f.location:
        parts.append(_sentence(f"The home is located in {f.location}"))
    return " ".join(parts)


def _hashtag(phrase: str) -> str:
    return "#" + "".join(w[:1].upper() + w[1:] for w in re.findall(r"[A-Za-z0-9]+", phrase))[:40]


def blog_post(f: Facts, upstream: Mapping[str, Any]) -> tuple[str, str, list[str]]:
    topic = f.topic or _NEUTRAL_TOPIC
    area = f"in {f.location}" if f.location else "in your area"
    title = f"{_cap(topic)}: what to know"
    body = [
        title,
        "",
        f"{_tone(f).opener.format(topic=topic)} In this post we look at {topic} and what it "
        "means for buyers, sellers and homeowners.",
        "",
        "Why it matters",
        f"{_cap(topic)} shapes decisions about when to buy, when to sell and how to plan a move. "
        "Understanding the basics helps you ask better questions, compare options with "
        "confidence and avoid surprises along the way.",
        "",
        "What to watch",
        "- Prices: compare recent sales with current asking prices to see which way the market "
        "is moving.",
        "- Timing: homes that are priced and presented well tend to attract interest sooner.",
        "- Financing: rates and lender requirements change, so review your options early.",
        "- Preparation: gathering documents and planning small repairs in advance saves time.",
        "",
        "Practical next steps",
        f"Start with a clear goal and a realistic budget. Look at recent activity {area} and "
        "talk with a local professional who can explain what the numbers mean for you. A short "
        "checklist, reviewed every few weeks, keeps your plans on track as conditions change.",
        "",
        _tone(f).closing,
    ]
    return title, "\n".join(body), []


_SOCIAL_CTA = {
    "instagram": "Tap the link in our bio for photos and details.",
    "twitter": "Details and photos on our page.",
    "x": "Details and photos on our page.",
    "linkedin": "Contact us for details or to arrange a showing.",
}
_SHORT = ("twitter", "x")


def social_post(f: Facts, upstream: Mapping[str, Any]) -> tuple[str, str, list[str]]:
    if f.address and not f.topic:
        title = f"Just listed: {f.address}"
        cta = _SOCIAL_CTA.get(
            f.platform, "Send us a message to arrange a showing or to get the full details."
        )
        body = f"{_sentence(title)} {_listing_details(f)} {cta}"
        tags = ["#JustListed", "#HomeForSale", "#RealEstate"]
    else:
        topic = f.topic or _NEUTRAL_TOPIC
        title = _cap(topic)
        tags = [_hashtag(topic), "#RealEstate", "#HomeBuying"]
        if f.platform in _SHORT:
            body = (
                f"{_cap(topic)}: know your numbers, plan your timing and lean on local "
                "insight. Read the full update on our page."
            )
        elif f.platform == "linkedin":
            body = (
                f"{_cap(topic)} is shaping decisions for buyers, sellers and investors. Our "
                "latest update covers prices, timing and financing, with practical steps for "
                "each. Connect with us to discuss what it means for your plans."
            )
        else:
            cta = (
                "Tap the link in our bio for the full story."
                if f.platform == "instagram"
                else "Comment below or send us a message to learn more."
            )
            body = (
                f"{_tone(f).social} {_cap(topic)} is on our minds this week. Here is the short "
                "version: a little preparation goes a long way, and local insight makes every "
                f"decision easier. {cta}"
            )
    if f.platform in _SHORT:
        tags = tags[:2]
    return title, f"{body}\n\n{' '.join(tags)}", tags


def email(f: Facts, upstream: Mapping[str, Any]) -> tuple[str, str, list[str]]:
    tone = _tone(f)
    if f.address and not f.topic:
        title = f"New listing: {f.address}"
        middle = [
            f"We are pleased to share a new listing at {f.address}. {_listing_details(f)}",
            "",
            "If you or someone you know is looking for a new home, we would be glad to arrange "
            "a private tour or send the full property details.",
            "",
            "Reply to this email to book a showing.",
        ]
    else:
        topic = f.topic or _NEUTRAL_TOPIC
        title = f"{_cap(topic)}: your quick update"
        middle = [
            f"{tone.opener.format(topic=topic)} We put together a short update on {topic} so "
            "you can plan your next steps with confidence.",
            "",
            "Here is what to keep in mind: well-presented homes tend to attract attention, "
            "pricing strategy matters, and good preparation shortens the time from listing to "
            "closing. If you are thinking about buying or selling, now is a good time to "
            "review your options.",
            "",
            "Reply to this email or book a short call, and we will walk you through what this "
            "means for you.",
        ]
    lines = [f"Subject: {title}", "", "Hi there,", "", *middle, "", tone.signoff]
    return title, "\n".join([*lines, "Your real estate team"]), []


def listing_description(f: Facts, upstream: Mapping[str, Any]) -> tuple[str, str, list[str]]:
    title = f.address or "Featured home"
    welcome = f"Welcome to {f.address}." if f.address else "Welcome home."
    body = [
        title,
        "",
        f"{welcome} {_listing_details(f)}",
        "",
        "Take your time with the photos and the floor plan, then come and see the space in "
        "person to picture how it fits your plans. Our team can share the full property "
        "details, recent sales nearby and the next available viewing times.",
        "",
        "Contact us today to schedule a private showing or to request more information.",
    ]
    return title, "\n".join(body), []


def report(f: Facts, upstream: Mapping[str, Any]) -> tuple[str, str, list[str]]:
    market = next((o for _, o in outputs_with(upstream, "medianPrice")), None)
    place = f.location or (str(market.get("location")) if market else None)
    if place:
        title = f"{_cap(place)} market report"
    else:
        title = f"{_cap(f.topic)} report" if f.topic else "Market report"
    period = _period(f.timeframe or (str(market.get("timeframe")) if market else None))
    lines = [title, "", "Summary"]
    if market:
        lines += _market_lines(market, place or "the selected area", period)
    else:
        subject = f.topic or "recent activity"
        lines += [
            f"This report reviews {subject}{f' in {place}' if place else ''} over {period}. "
            "It brings together the figures this workflow produced and the points worth "
            "acting on.",
            "",
            "Key figures",
            *(_figure_lines(upstream) or ["- No figures were produced upstream of this report."]),
        ]
    lines += _opportunity_lines(upstream)
    if market:
        source = str(market.get("dataSource") or "the upstream analysis")
        caveat = ", generated from a fixed seed, and are not real market data"
        lines += [
            "",
            "Methodology",
            f"All figures come from {source}{caveat if 'sample' in source else ''}. They are "
            "medians over the sales in each period, so a few unusual sales do not move them "
            "much.",
        ]
    else:
        lines += [
            "",
            "Recommendations",
            "- Keep what worked: repeat the formats and timing that drew the strongest response.",
            "- Test one change at a time, so the next report shows clearly what made a difference.",
            "- Share the results with your team and agree on a date for the next review.",
        ]
    lines += [
        "",
        "Next steps",
        "Use these figures as a starting point for conversations with clients. Review them "
        "again as new results come in, and compare them with what you see first-hand.",
    ]
    return title, "\n".join(lines), []


def _opportunity_lines(upstream: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    for _, output in outputs_with(upstream, "opportunities"):
        items = output["opportunities"]
        for item in items if isinstance(items, list) else ():
            if isinstance(item, Mapping) and item.get("title"):
                name, why = str(item["title"]).strip(), str(item.get("rationale", "")).strip()
                lines.append(f"- {_sentence(f'{name}: {why}' if why else name)}")
    return ["", "Opportunities", *lines] if lines else []


def _period(timeframe: str | None) -> str:
    match = re.fullmatch(r"\s*(\d+)\s*(day|week|month|year)s?\s*", timeframe or "")
    if match:
        return f"the last {match[1]} {match[2]}{'' if match[1] == '1' else 's'}"
    return f"the period {timeframe}" if timeframe else "the recent period"


def _market_lines(market: Mapping[str, Any], place: str, period: str) -> list[str]:
    return [
        f"This report covers {place} over {period}. Prices are {market.get('trend', 'stable')} "
        f"compared with the previous period, and conditions point to a "
        f"{market.get('marketType', 'balanced market')}.",
        "",
        "Key figures",
        f"- Median sale price: {_money(market.get('medianPrice'))}, against "
        f"{_money(market.get('previousMedianPrice'))} in the previous period.",
        f"- Price change: {_percent(market.get('priceChangePct'))}.",
        f"- Active listings: {_figure(market.get('inventory'))}.",
        f"- Median days on market: {_figure(market.get('daysOnMarket'))}.",
        f"- Months of supply: {_figure(market.get('monthsOfSupply'))}.",
    ]


def _figure_lines(upstream: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    for _, output in outputs_with(upstream, "metrics"):
        metrics = output["metrics"]
        if isinstance(metrics, Mapping):
            for key, value in metrics.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    lines.append(f"- {_label(key)}: {_figure(value)}.")
    return lines


def _label(key: str) -> str:
    return _cap(re.sub(r"(?<!^)(?=[A-Z])", " ", key).lower())


def _figure(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "not available"
    if float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _money(value: Any) -> str:
    figure = _figure(value)
    return figure if figure == "not available" else f"${figure}"


def _percent(value: Any) -> str:
    figure = _figure(value)
    if figure == "not available":
        return figure
    return f"+{figure}%" if value > 0 else f"{figure}%"
