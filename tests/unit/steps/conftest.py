"""A hand-built StepContext for calling handlers directly (no engine, no store), and a real
HTTP receiver on loopback with clients allowed to reach it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from sluice.engine.handlers import HandlerRegistry, StepContext, StepHandler, StepResult
from sluice.steps.http_client import HttpClient
from sluice.steps.webhook import WebhookAllowList
from tests.support.receiver import Receiver, running_receiver

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


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as state:
        yield state


MakeClient = Callable[..., HttpClient]


@pytest.fixture
async def client(receiver: Receiver) -> AsyncIterator[MakeClient]:
    """Clients allowed to reach the receiver; each is closed at the end of the test."""
    made: list[HttpClient] = []

    def make(timeout: float = 5.0, **options: Any) -> HttpClient:
        made.append(
            HttpClient(WebhookAllowList.parse(receiver.allow), timeout_seconds=timeout, **options)
        )
        return made[-1]

    yield make
    for each in made:
        await each.aclose()


async def run_step(handler: StepHandler, ctx: StepContext) -> StepResult:
    """What the engine does each attempt: check the resolved config against what the handler
    declares (PermanentStepError naming every problem), then run it."""
    HandlerRegistry({ctx.step_type: handler}).check_resolved(ctx.step_type, ctx.config)
    return await handler.run(ctx)
