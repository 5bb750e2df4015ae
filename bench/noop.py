"""Step types for the benchmarks, loaded into the server with SLUICE_PLUGINS.

- `noop`: returns `{}` at once (the diamond-5 workload measures the engine, not the steps).
- `hold`: sleeps `config.seconds` (default 30), so a run keeps a step in flight; with
  `config.jitter` (a fraction), a duration drawn uniformly within seconds x (1 +/- jitter).

`register_fast_hold` is the plugin a restarted server gets in the recovery scenario: there
`hold` returns at once, so recovered runs finish quickly.
"""

from __future__ import annotations

import asyncio
import random

from sluice.engine.handlers import HandlerRegistry, StepContext, StepResult


class Noop:
    async def run(self, ctx: StepContext) -> StepResult:
        return StepResult({})


class Hold:
    async def run(self, ctx: StepContext) -> StepResult:
        seconds = float(ctx.config.get("seconds", 30))
        jitter = float(ctx.config.get("jitter", 0))
        await asyncio.sleep(seconds * random.uniform(1 - jitter, 1 + jitter))
        return StepResult({})


def register(registry: HandlerRegistry) -> None:
    registry.register("noop", Noop())
    registry.register("hold", Hold())


def register_fast_hold(registry: HandlerRegistry) -> None:
    registry.register("noop", Noop())
    registry.register("hold", Noop())
