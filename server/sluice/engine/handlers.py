"""The seam between the engine and the work a step does.

A handler is an object with `async def run(self, ctx) -> StepResult`. The engine calls it once
per attempt with the step's resolved config, the run's params and the outputs of the steps it
depends on. Raising fails the attempt (retried under the step's policy); raising
`PermanentStepError` fails the step at once.

A handler may also declare what its config looks like, so templates are checked when they are
validated rather than when a run reaches the step:
- `config_schema`: a JSON Schema (draft 2020-12) of the config, as a dict;
- `check_config(self, config) -> Iterable[(path, description)]`: what a schema cannot say. It
  sees the config whatever its shape (the schema's problems are reported beside its own).
Both apply to the config as written when a template is validated (where a "{{ ... }}" value is
not known yet: `has_reference` tells them apart) and to the resolved config before each attempt.
The README's "Plugins" section is the full contract.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any, Protocol, cast

import structlog

from sluice.engine.config_schema import (
    MAX_PROBLEMS,
    ConfigSchema,
    InvalidSchema,
    Problem,
    cap,
    field_path,
)
from sluice.engine.model import JsonObject, Publication
from sluice.engine.substitution import has_reference

log = structlog.get_logger(__name__)


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


class StepError(Exception):
    """A failed attempt with a name for its kind (`error_type`, e.g. "RateLimited"): a step's
    retry policy may list kinds that another attempt cannot fix (non_retryable_error_types)."""

    def __init__(self, message: str, *, error_type: str = "") -> None:
        super().__init__(message)
        self.error_type = error_type


class PermanentStepError(StepError):
    """A failure that another attempt cannot fix (bad config, a 4xx answer): no retry."""


class StepHandler(Protocol):
    async def run(self, ctx: StepContext) -> StepResult: ...


class InvalidHandler(ValueError):
    """What was registered does not keep the handler contract; refused at registration."""


ConfigCheck = Callable[[Mapping[str, Any]], Iterable[tuple[str, str]]]


@dataclass(frozen=True, slots=True)
class _Entry:
    handler: StepHandler
    schema: ConfigSchema | None
    check: ConfigCheck | None


class HandlerRegistry:
    """Maps step type -> handler. Templates are validated against the registered types and the
    config each declares."""

    def __init__(self, handlers: Mapping[str, StepHandler] | None = None) -> None:
        self._entries: dict[str, _Entry] = {}
        for step_type, handler in (handlers or {}).items():
            self.register(step_type, handler)

    def register(self, step_type: str, handler: StepHandler) -> None:
        """Add or replace the handler of `step_type`; InvalidHandler when it breaks the contract."""
        if not isinstance(step_type, str) or not step_type.strip():
            raise InvalidHandler(f"the step type must be a non-empty string, not {step_type!r}")
        try:
            self._entries[step_type] = _entry(handler)
        except InvalidHandler as exc:
            raise InvalidHandler(f"step type {step_type!r}: {exc}") from None

    def get(self, step_type: str) -> StepHandler:
        return self._entries[step_type].handler

    def __contains__(self, step_type: object) -> bool:
        return step_type in self._entries

    def types(self) -> Iterable[str]:
        return sorted(self._entries)

    def config_schema(self, step_type: str) -> Mapping[str, Any] | None:
        schema = self._entries[step_type].schema
        return schema.schema if schema is not None else None

    def config_problems(
        self, step_type: str, config: Mapping[str, Any], *, written: bool
    ) -> list[Problem]:
        """How `config` does not fit the step type: its schema's problems, then its
        check_config's. `written`: the config as a template has it, substitutions unresolved
        (they are judged once resolved). [] for a type that declares neither."""
        entry = self._entries.get(step_type)
        if entry is None:
            return []
        found = entry.schema.problems(config, written=written) if entry.schema else []
        if entry.check is not None:
            try:
                checked = islice(entry.check(config), MAX_PROBLEMS + 1)
                found += [(str(path), str(text)) for path, text in checked]
            except Exception as exc:
                # A check tripping over a config its schema already refused adds nothing; any
                # other failure is the plugin's bug, which must not become INTERNAL.
                if not found:
                    log.exception("check_config failed", step_type=step_type)
                    found = [("", f"the {step_type} step type's check_config failed: {exc!r}")]
        return cap(found)

    def check_resolved(self, step_type: str, config: Mapping[str, Any]) -> None:
        """PermanentStepError naming every problem of a step's resolved config: what the engine
        checks before each attempt, so a handler only ever sees a config that fits."""
        problems = self.config_problems(step_type, config, written=False)
        if problems:
            raise PermanentStepError(
                "; ".join(f"{field_path('config', path)}: {text}" for path, text in problems)
            )


def _entry(handler: object) -> _Entry:
    if isinstance(handler, type):
        raise InvalidHandler(
            f"the class {handler.__name__} was registered, not an instance: register "
            f"{handler.__name__}()"
        )
    if inspect.isroutine(handler):
        raise InvalidHandler(
            f"{getattr(handler, '__name__', handler)!r} is a function; register an object "
            "with a method `async def run(self, ctx) -> StepResult`"
        )
    what = type(handler).__name__
    run = getattr(handler, "run", None)
    if run is None or not callable(run):
        raise InvalidHandler(f"{what} has no method `async def run(self, ctx) -> StepResult`")
    if not inspect.iscoroutinefunction(run):
        raise InvalidHandler(f"{what}.run must be `async def run(self, ctx)`, not a plain def")
    _takes_one_argument(run, f"{what}.run", "the StepContext")

    schema = getattr(handler, "config_schema", None)
    compiled = None
    if schema is not None:
        try:
            compiled = ConfigSchema(schema)
        except InvalidSchema as exc:
            raise InvalidHandler(
                f"{what}.config_schema is not a valid JSON Schema: {exc}"
            ) from None

    check = getattr(handler, "check_config", None)
    if check is not None:
        if not callable(check):
            raise InvalidHandler(f"{what}.check_config is not a method")
        if inspect.iscoroutinefunction(check):
            raise InvalidHandler(
                f"{what}.check_config must be a plain def (validation calls it), not async def"
            )
        _takes_one_argument(check, f"{what}.check_config", "the config")
    return _Entry(cast(StepHandler, handler), compiled, check)


def _takes_one_argument(method: Callable[..., Any], name: str, argument: str) -> None:
    try:
        signature = inspect.signature(method)
    except (TypeError, ValueError):
        return  # a builtin without a signature: it will tell when called
    try:
        signature.bind(object())
    except TypeError:
        raise InvalidHandler(
            f"{name} must take one argument ({argument}); its signature is {name}{signature}"
        ) from None


__all__ = [
    "HandlerRegistry",
    "InvalidHandler",
    "PermanentStepError",
    "StepContext",
    "StepError",
    "StepHandler",
    "StepResult",
    "has_reference",
]
