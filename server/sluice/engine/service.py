"""The use cases the API exposes, over the catalog and the engine."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sluice.engine.analytics import Analytics, AnalyticsQuery
from sluice.engine.catalog import TemplateCatalog
from sluice.engine.errors import InvalidArgument, ResourceExhausted, Violation
from sluice.engine.model import Event, EventType, ExecutionOptions, Run, Template
from sluice.engine.ports import RunFilter, RunPage
from sluice.engine.validation import bind_params, show
from sluice.runtime.driver import Engine

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class EventPage:
    events: list[Event]
    # The sequence of the last event when more may follow; the next page starts after it.
    next_after: int | None


class Workflows:
    def __init__(
        self, catalog: TemplateCatalog, engine: Engine, *, max_active_runs_per_user: int = 1000
    ) -> None:
        self.catalog = catalog
        self.engine = engine
        self.max_active_runs_per_user = max_active_runs_per_user

    async def create(
        self,
        owner: str,
        *,
        template_id: str = "",
        inline: Template | None = None,
        version: int = 0,
        params: Mapping[str, Any],
        request_id: str = "",
        request_hash: str = "",
    ) -> Run:
        # One after the other: both are usually answered from memory, where gathering them
        # would cost more than it saves. The template's problems take precedence over the
        # limit. The count is taken before the insert, so concurrent calls may pass it by a
        # few: a guard against runaway clients, not an exact quota.
        found = await self._template(owner, template_id, inline, version)
        active = await self.engine.active_runs(owner)
        bound, violations = bind_params(found, params)
        if violations:
            raise InvalidArgument(violations)
        self._check_limit(active)
        return await self.engine.create_run(owner, found, bound, request_id, request_hash)

    async def rerun(
        self,
        owner: str,
        run_id: str,
        *,
        from_step: str = "",
        options: ExecutionOptions | None = None,
        wait: bool = False,
        request_id: str = "",
        request_hash: str = "",
    ) -> Run:
        """A new run from a FAILED or CANCELLED one; it counts toward the active-run limit."""
        self._check_limit(await self.engine.active_runs(owner))
        return await self.engine.rerun(
            owner, run_id, from_step=from_step, options=options, wait=wait,
            request_id=request_id, request_hash=request_hash,
        )  # fmt: skip

    def _check_limit(self, active: int) -> None:
        if active >= self.max_active_runs_per_user:
            raise ResourceExhausted(
                f"you have {active} active workflows (PENDING, RUNNING or PAUSED); the limit is "
                f"{self.max_active_runs_per_user}: finish or cancel some first"
            )

    async def _template(
        self, owner: str, template_id: str, inline: Template | None, version: int
    ) -> Template:
        if inline is not None:
            return self.catalog.check_inline(inline)
        return await self.catalog.get(owner, template_id, version)

    async def list(
        self,
        owner: str,
        where: RunFilter,
        *,
        limit: int,
        after: tuple[datetime, str] | None,
        outputs: bool,
    ) -> RunPage:
        """The owner's runs, newest first, a page at a time."""
        return await self.engine.store.list_runs(
            owner, where, limit=limit, after=after, outputs=outputs
        )

    async def analytics(self, owner: str, query: AnalyticsQuery) -> Analytics:
        """The owner's figures over the query's window. The runs that ended before the call
        are folded into the sums first (the server folds every few seconds anyway), so a
        call sees every run that ended before it, whichever server drove it."""
        await self.engine.store.fold_analytics()
        return await self.engine.store.analytics(owner, query)

    async def events(
        self,
        owner: str,
        run_id: str,
        *,
        after: int,
        limit: int,
        types: Sequence[EventType] = (),
        step_ids: Sequence[str] = (),
    ) -> EventPage:
        """A page of the run's stored events after `after`, in order, only those of `types`
        and `step_ids` when given. NotFound for a stranger's run; InvalidArgument (naming
        `step_ids[i]`) for a step its template does not have. Read from the store, so any
        server answers for any run."""
        run = await self.engine.get_run(owner, run_id)
        unknown = [
            Violation(f"step_ids[{i}]", f"{show(step_id)} is not a step of this run's template")
            for i, step_id in enumerate(step_ids)
            if step_id not in run.steps
        ]
        if unknown:
            raise InvalidArgument(unknown)
        # One row past the page says whether another follows.
        found = await self.engine.store.list_events(
            run_id, after, limit + 1, types=_unique(types), step_ids=_unique(step_ids)
        )
        more = len(found) > limit
        return EventPage(found[:limit], found[limit - 1].sequence if more else None)


def _unique(values: Sequence[T]) -> list[T]:
    return list(dict.fromkeys(values))
