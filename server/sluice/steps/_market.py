"""Sample market data for `analyze` with `source: market`, and the opportunity rules.

There is no market data feed behind Sluice, so the figures come from a dataset generated
deterministically from sha256(location | timeframe): the same inputs always give the same
figures, and every output says `dataSource: "built-in sample data"` so nobody mistakes them
for real prices. Replace the analyze handler to plug in a real feed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from statistics import median
from typing import Any

from sluice.engine.model import JsonObject

SAMPLE_SOURCE = "built-in sample data"


class _Draws:
    """Numbers in [0, 1) from a hash chain: reproducible everywhere, no RNG state."""

    def __init__(self, seed: bytes) -> None:
        self._seed = seed
        self._count = 0

    def next(self) -> float:
        digest = hashlib.sha256(self._seed + self._count.to_bytes(4, "big")).digest()
        self._count += 1
        return int.from_bytes(digest[:8], "big") / 2**64


def market_figures(location: str, timeframe: str, days: float) -> JsonObject:
    draws = _Draws(hashlib.sha256(f"{location.strip().lower()}|{timeframe}".encode()).digest())
    base_price = 250_000 + draws.next() * 950_000
    drift = (draws.next() - 0.45) * 0.16  # price change over the period: -7.2% .. +8.8%
    sales_per_month = 20 + draws.next() * 80
    supply_months = 1.5 + draws.next() * 6
    dom_base = 20 + draws.next() * 50
    count = max(12, min(200, round(sales_per_month * days / 30)))
    previous = [base_price * (0.75 + 0.5 * draws.next()) for _ in range(count)]
    current = [base_price * (1 + drift) * (0.75 + 0.5 * draws.next()) for _ in range(count)]
    # Hotter markets (rising prices) sell faster.
    dom = [dom_base * (1 - drift * 2) * (0.5 + draws.next()) for _ in range(count)]
    median_price, previous_median = median(current), median(previous)
    change = (median_price - previous_median) / previous_median * 100
    inventory = round(sales_per_month * supply_months)
    months = round(inventory / sales_per_month, 1)
    return {
        "dataSource": SAMPLE_SOURCE,
        "location": location,
        "timeframe": timeframe,
        "timeframeDays": days,
        "sampleSize": count,
        "medianPrice": int(round(median_price, -2)),
        "previousMedianPrice": int(round(previous_median, -2)),
        "priceChangePct": round(change, 1),
        "inventory": inventory,
        "daysOnMarket": round(median(dom)),
        "monthsOfSupply": months,
        "trend": "rising" if change > 2 else "falling" if change < -2 else "stable",
        "marketType": (
            "seller's market"
            if months < 4
            else "buyer's market"
            if months > 6
            else "balanced market"
        ),
        "note": "Figures are generated from a fixed seed for demonstration; they are not real "
        "market data.",
    }


def opportunities(market: Mapping[str, Any]) -> list[JsonObject]:
    """Rules over trend, supply and days on market; there is always at least one."""
    found: list[JsonObject] = []

    def add(kind: str, title: str, rationale: str, priority: str) -> None:
        found.append({"type": kind, "title": title, "rationale": rationale, "priority": priority})

    change = _num(market.get("priceChangePct"))
    months = _num(market.get("monthsOfSupply"))
    dom = _num(market.get("daysOnMarket"))
    trend = market.get("trend")
    if trend == "rising":
        add("listing", "Seller demand", f"Median prices rose {change:g}%, so homeowners "
            "thinking of selling may be ready to list.", "high")  # fmt: skip
    elif trend == "falling":
        add("buyer", "Buyer opportunity", f"Median prices eased {abs(change):g}%, which gives "
            "buyers more room to negotiate.", "high")  # fmt: skip
    else:
        add("advisory", "Steady market", "Prices held steady, a good moment for clients who "
            "want predictable plans.", "medium")  # fmt: skip
    if months and months < 4:
        add("prospecting", "Low inventory", f"Only {months:g} months of supply: new listings "
            "face little competition, so prospect for sellers.", "high")  # fmt: skip
    elif months > 6:
        add("buyer", "Ample choice", f"With {months:g} months of supply, buyers have plenty "
            "of choice and time.", "medium")  # fmt: skip
    if dom and dom < 21:
        add("buyer", "Fast sales", f"Homes sell in a median of {dom:g} days, so buyers should "
            "be pre-approved and ready to act.", "medium")  # fmt: skip
    elif dom > 60:
        add("negotiation", "Room to negotiate", f"A median of {dom:g} days on market leaves "
            "room to negotiate on price and terms.", "medium")  # fmt: skip
    return found


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
