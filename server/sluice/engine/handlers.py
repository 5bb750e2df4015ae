"""The seam between the engine and the work a step does.

A handler is any object with `async def run(ctx) -> StepResult`. The engine calls it once per
attempt with the step's resolved config, the run's params and the outputs of the steps it
depends on. Raising fails the attempt (retried under the step's policy); raising
`PermanentStepError` fails the step at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sluice.engine.model import JsonObject, Publication


@dataclass(frozen=True, slots=True)
class StepContext:
    run_id: str
    step_id: str
    step_type: str
    # 1-based; a step that was running when the server stopped runs again as a new attempt.
    attempt: int
    # "<run id>/<step id>": the same across attempts and restarts, so an integration can
    # de-duplicate (webhooks send it as the Idempotency-Key header).
    idempotency_key: str
    # The step's config with every "{{ ... }}" substitution resolved.
    config: Mapping[str, Any]
    params: Mapping[str, Any]
    # Outputs of the step's direct dependencies, by step id.
    inputs: Mapping[str, JsonObject]
    # Outputs of every completed step upstream of this one (direct or transitive), by step id.
    upstream: Mapping[str, JsonObject]
    owner: str
    now: datetime


@dataclass(frozen=True, slots=True)
class StepResult:
    output: JsonObject
    # Outbox records, committed with the step's completion.
    publications: tuple[Publication, ...] = ()
    # Each becomes a NOTIFICATION event, committed with the step's completion.
    notifications: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)


class PermanentStepError(Exception):
    """A failure that another attempt cannot fix (bad config, a 4xx answer): no retry."""


class StepHandler(Protocol):
    async def run(self, ctx: StepContext) -> StepResult: ...


class HandlerRegistry:
    """Maps step type -> handler. Templates are validated against the registered types."""

    def __init__(self, handlers: Mapping[str, StepHandler] | None = None) -> None:
        self._handlers: dict[str, StepHandler] = dict(handlers or {})

    def register(self, step_type: str, handler: StepHandler) -> None:
        self._handlers[step_type] = handler

    def get(self, step_type: str) -> StepHandler:
        return self._handlers[step_type]

    def __contains__(self, step_type: object) -> bool:
        return step_type in self._handlers

    def types(self) -> Iterable[str]:
        return sorted(self._handlers)
