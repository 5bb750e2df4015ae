"""The use cases the API exposes, over the catalog and the engine."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sluice.engine.catalog import TemplateCatalog
from sluice.engine.errors import InvalidArgument
from sluice.engine.model import Run, RunStatus, Template
from sluice.engine.ports import RunPage
from sluice.engine.runner import Engine
from sluice.engine.validation import bind_params


class Workflows:
    def __init__(self, catalog: TemplateCatalog, engine: Engine) -> None:
        self.catalog = catalog
        self.engine = engine

    async def create(
        self,
        owner: str,
        *,
        template_id: str = "",
        inline: Template | None = None,
        version: int = 0,
        params: Mapping[str, Any],
        request_id: str = "",
    ) -> Run:
        if inline is not None:
            template = self.catalog.check_inline(inline)
        else:
            template = await self.catalog.get(owner, template_id, version)
        bound, violations = bind_params(template, params)
        if violations:
            raise InvalidArgument(violations)
        return await self.engine.create_run(owner, template, bound, request_id)

    async def list(
        self,
        owner: str,
        *,
        statuses: Sequence[RunStatus],
        template_id: str,
        limit: int,
        after: tuple[datetime, str] | None,
    ) -> RunPage:
        """The owner's runs, newest first, a page at a time."""
        return await self.engine.store.list_runs(
            owner, statuses=statuses, template_id=template_id, limit=limit, after=after
        )
