"""A hand-built StepContext for calling handlers directly (no engine, no store)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from sluice.engine.handlers import HandlerRegistry, StepContext, StepHandler, StepResult

# A Tuesday, 15:07 UTC (10:07 in New York).
NOW = datetime(2025, 3, 4, 15, 7, tzinfo=UTC)

MakeCtx = Callable[..., StepContext]


@pytest.fixture
def make_ctx() -> MakeCtx:
    def make(
        step_type: str,
        config: Mapping[str, Any] | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        inputs: Mapping[str, Any] | None = None,
        upstream: Mapping[str, Any] | None = None,
        now: datetime = NOW,
        step_id: str = "step",
        run_id: str = "run-1",
        attempt: int = 1,
        owner: str = "alice",
    ) -> StepContext:
        inputs = dict(inputs or {})
        return StepContext(
            run_id=run_id,
            step_id=step_id,
            step_type=step_type,
            attempt=attempt,
            idempotency_key=f"{run_id}/{step_id}",
            config=dict(config or {}),
            params=dict(params or {}),
            inputs=inputs,
            # Direct inputs are upstream too, as the engine passes them.
            upstream={**inputs, **(upstream or {})},
            owner=owner,
            now=now,
        )

    return make


async def run_step(handler: StepHandler, ctx: StepContext) -> StepResult:
    """What the engine does each attempt: check the resolved config against what the handler
    declares (PermanentStepError naming every problem), then run it."""
    HandlerRegistry({ctx.step_type: handler}).check_resolved(ctx.step_type, ctx.config)
    return await handler.run(ctx)
