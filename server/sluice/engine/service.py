"""The use cases the API exposes, over the catalog and the engine."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sluice.engine.catalog import TemplateCatalog
from sluice.engine.errors import InvalidArgument
from sluice.engine.model import Run, Template
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
