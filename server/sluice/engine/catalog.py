"""Templates a caller can use: the predefined ones (shared by everyone) and their own."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sluice.engine.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Violation,
)
from sluice.engine.model import TASK_STEP_TYPE, Template
from sluice.engine.ports import Clock, Store
from sluice.engine.validation import StepTypes, TemplateLimits, validate_template

K = TypeVar("K")
V = TypeVar("V")


class KnownStepTypes(StepTypes, Protocol):
    """The registered step types, which can also be listed (the handler registry)."""

    def types(self) -> Iterable[str]: ...

    def config_schema(self, step_type: str) -> Mapping[str, Any] | None: ...


@dataclass(frozen=True, slots=True)
class StepTypeInfo:
    """What a template editor needs to know of a step type."""

    name: str
    # The JSON Schema its config is checked against; None when the type declares none.
    config_schema: Mapping[str, Any] | None
    # Served by workers: its steps name a task type.
    remote: bool


class TemplateCatalog:
    CACHED_VERSIONS = 1024
    # "The latest version" of a registered template is remembered this long (seconds): a run
    # created by id then costs no query. A version registered through this catalog replaces it
    # at once; one registered by another server on the same database is seen within this.
    LATEST_TTL = 1.0

    def __init__(
        self,
        store: Store,
        predefined: Iterable[Template],
        step_types: KnownStepTypes,
        clock: Clock,
        limits: TemplateLimits = TemplateLimits(),
        *,
        shared: bool = False,
    ) -> None:
        """`shared`: other servers register and delete templates in the same database, so
        what this catalog remembers is checked again after LATEST_TTL seconds."""
        self._store = store
        self._step_types = step_types
        self._clock = clock
        self.limits = limits
        self._predefined = {t.id: t for t in predefined}
        self._versions: dict[tuple[str, str, int], Template] = {}
        self._shared = shared
        # When each remembered version was last seen in the store (shared catalogs only).
        self._seen: dict[tuple[str, str, int], float] = {}
        self._latest: dict[tuple[str, str], tuple[int, float]] = {}
        for template in self._predefined.values():
            problems = self.validate(template)
            if problems:  # a broken file shipped with the server is a bug: refuse to start
                raise ValueError(f"predefined template {template.id} is invalid: {problems}")

    def has_step_type(self, step_type: str) -> bool:
        """Whether this server runs steps of `step_type` (a handler, a plugin's, task, wait)."""
        return step_type in self._step_types

    def validate(self, template: Template) -> list[Violation]:
        return validate_template(template, self._step_types, self.limits)

    def step_types(self) -> list[StepTypeInfo]:
        """The types a template's steps may name, by name."""
        return [
            StepTypeInfo(name, self._step_types.config_schema(name), name == TASK_STEP_TYPE)
            for name in sorted(self._step_types.types())
        ]

    async def list(self, owner: str) -> list[Template]:
        own = await self._store.list_templates(owner)
        return [*sorted(self._predefined.values(), key=lambda t: t.id), *own]

    async def get(self, owner: str, template_id: str, version: int = 0) -> Template:
        if template_id in self._predefined:
            if version not in (0, 1):
                raise NotFound(f"predefined template {template_id} has only version 1")
            return self._predefined[template_id]
        if version == 0:
            version = await self._latest_version(owner, template_id)
        key = (owner, template_id, version)
        template = self._versions.get(key)
        if template is None or self._stale(key):
            found = await self._store.get_template(owner, template_id, version)
            if found is None:  # never registered, or deleted (here or by another server)
                self._versions.pop(key, None)
                raise NotFound(f"template {template_id} version {version} not found")
            # A version never changes: the object already decoded serves on.
            template = template or found
            self._remember(key, template)
        return template

    def _stale(self, key: tuple[str, str, int]) -> bool:
        if not self._shared:
            return False
        seen = self._seen.get(key)
        return seen is None or time.monotonic() - seen > self.LATEST_TTL

    async def _latest_version(self, owner: str, template_id: str) -> int:
        key = (owner, template_id)
        known = self._latest.get(key)
        if known is not None and time.monotonic() - known[1] < self.LATEST_TTL:
            return known[0]
        latest = await self._store.latest_template_version(owner, template_id)
        if latest is None:
            raise NotFound(f"template {template_id} not found")
        self._remember_latest(key, latest)
        return latest

    def _remember_latest(self, key: tuple[str, str], version: int) -> None:
        _bounded_put(self._latest, key, (version, time.monotonic()), self.CACHED_VERSIONS)

    def _remember(self, key: tuple[str, str, int], template: Template) -> None:
        # A registered version never changes, so one decoded object serves every run of it
        # (and its derived lookups and serialized form are built once).
        _bounded_put(self._versions, key, template, self.CACHED_VERSIONS)
        if self._shared:
            _bounded_put(self._seen, key, time.monotonic(), self.CACHED_VERSIONS)

    async def register(self, owner: str, template: Template) -> Template:
        violations = self.validate(template)
        if violations:
            raise InvalidArgument([_prefixed("template", v) for v in violations])
        if template.id in self._predefined:
            raise AlreadyExists(f"{template.id} is a predefined template; choose another id")
        stored = await self._store.add_template(
            dataclasses.replace(
                template, owner=owner, predefined=False, created_at=self._clock.now()
            )
        )
        known = self._latest.get((owner, stored.id))
        if known is None or known[0] < stored.version:  # a concurrent register may be newer
            self._remember_latest((owner, stored.id), stored.version)
        return stored

    async def delete(self, owner: str, template_id: str, version: int = 0) -> int:
        """Delete one registered version (or all, 0); runs keep their copy. Returns how many."""
        if template_id in self._predefined:
            raise FailedPrecondition(
                f"{template_id} is a predefined template; it ships with the server and cannot "
                "be deleted"
            )
        deleted = await self._store.delete_template(owner, template_id, version)
        if not deleted:
            which = f"version {version} " if version else ""
            raise NotFound(f"template {template_id} {which}not found")
        for key in [k for k in self._versions if k[:2] == (owner, template_id)]:
            del self._versions[key]
        self._latest.pop((owner, template_id), None)
        return deleted

    def check_inline(self, template: Template) -> Template:
        """An inline template of CreateWorkflow: validated, kept with the run as version 0."""
        violations = self.validate(template)
        if violations:
            raise InvalidArgument([_prefixed("template", v) for v in violations])
        return dataclasses.replace(template, version=0, predefined=False)


def _bounded_put(cache: dict[K, V], key: K, value: V, limit: int) -> None:
    """Put `key` last (newest) in `cache`; beyond `limit` entries, the oldest goes."""
    cache.pop(key, None)
    cache[key] = value
    if len(cache) > limit:
        cache.pop(next(iter(cache)))


def _prefixed(prefix: str, violation: Violation) -> Violation:
    return Violation(f"{prefix}.{violation.field}", violation.description)
