"""Schema migrations with Alembic, driven from our own async engine.

The server never runs against a schema it does not know: an empty database is created at
head, an older one is upgraded only when asked (`sluice db upgrade` or `--migrate`), and a
newer one (written by a later Sluice) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import sqlalchemy as sa
import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.store.errors import StoreSetupError

log = structlog.get_logger(__name__)


class SchemaError(StoreSetupError):
    """The database's schema is not the one this server can run on."""


@dataclass(frozen=True, slots=True)
class SchemaState:
    current: str | None  # None: no Sluice schema yet
    head: str
    known: bool  # whether `current` is a revision this code has

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("sluice.store") / "migrations"))
    return config


async def state(engine: AsyncEngine) -> SchemaState:
    def read(connection: sa.Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as conn:
        current = await conn.run_sync(read)
    script = ScriptDirectory.from_config(_config())
    return SchemaState(current, script.get_current_head() or "", _has(script, current))


def _has(script: ScriptDirectory, revision: str | None) -> bool:
    if revision is None:
        return True
    try:
        return script.get_revision(revision) is not None
    except Exception:  # alembic raises its own errors for unknown revisions
        return False


async def _has_tables(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
    return bool(names)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    def run(connection: sa.Connection) -> None:
        config = _config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # SQLite changes a table (batch mode) by copying it and dropping the original; with
            # foreign keys on, that DROP first deletes every row that references the table
            # (ON DELETE CASCADE): rebuilding `runs` would empty step_runs, events and the
            # rest. The pragma only takes effect outside a transaction, so before it begins.
            await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            await conn.commit()
        try:
            async with conn.begin():
                await conn.run_sync(run)
                if sqlite:
                    await conn.run_sync(_check_foreign_keys)
        finally:
            if sqlite:
                await conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                await conn.commit()


def _check_foreign_keys(connection: sa.Connection) -> None:
    """With enforcement off during the migration, check its result as a whole: a migration
    that left a row pointing nowhere is undone."""
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise SchemaError(f"the migration left rows that reference nothing: {broken[:5]}")


async def new_revision(engine: AsyncEngine, message: str, rev_id: str | None = None) -> None:
    """Write a draft migration from the difference between `schema.py` and the database (which
    should be at head). For developers; read and fix the draft before committing it."""

    def run(connection: sa.Connection) -> None:
        config = _config()
        config.attributes["connection"] = connection
        command.revision(config, message=message, autogenerate=True, rev_id=rev_id)

    async with engine.begin() as conn:
        await conn.run_sync(run)


# Servers starting together on one PostgreSQL database take turns at the schema: the first
# creates or upgrades it, the others then find it at head.
_SCHEMA_LOCK = 0x51C3_0001


async def prepare(engine: AsyncEngine, *, migrate: bool) -> SchemaState:
    """Bring the schema to head where that is safe or asked for; raise SchemaError otherwise."""
    if engine.dialect.name != "postgresql":
        return await _prepare(engine, migrate=migrate)
    async with engine.connect() as lock:
        await lock.execute(sa.text(f"SELECT pg_advisory_lock({_SCHEMA_LOCK})"))
        try:
            return await _prepare(engine, migrate=migrate)
        finally:
            await lock.execute(sa.text(f"SELECT pg_advisory_unlock({_SCHEMA_LOCK})"))


async def _prepare(engine: AsyncEngine, *, migrate: bool) -> SchemaState:
    found = await state(engine)
    if not found.known:
        raise SchemaError(
            f"the database schema is at revision {found.current}, newer than this Sluice knows "
            f"(head {found.head}); run a newer Sluice, or restore a backup"
        )
    if found.up_to_date:
        return found
    if found.current is None and await _has_tables(engine):
        raise SchemaError(
            "the database has tables but no migration history (Alembic's alembic_version): it "
            "was not created by this Sluice; point SLUICE_DATABASE_URL at an empty database"
        )
    if found.current is not None and not migrate:
        raise SchemaError(
            f"the database schema is at revision {found.current}, older than {found.head}; "
            "run `sluice db upgrade` (back the database up first) or start with --migrate"
        )
    await upgrade(engine)
    if found.current is None:
        log.info("database schema created", revision=found.head)
    else:
        log.info("database schema upgraded", revision=found.head, previous=found.current)
    return await state(engine)
