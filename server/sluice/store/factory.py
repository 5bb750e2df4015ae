"""The store for a database URL: SQLite or PostgreSQL, each its own subclass of `SqlStore`."""

from __future__ import annotations

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.store import migrate as migrate_schema
from sluice.store import postgres, sqlite, urls
from sluice.store.base import SqlStore
from sluice.store.errors import opening


async def open_store(url: str, *, migrate: bool = False) -> SqlStore:
    """Connect and make sure the schema is one this code runs on: an empty database is
    created at the latest revision, an older one is upgraded only with `migrate`, a newer
    one is refused (SchemaError). A database that cannot be used as configured (missing,
    unreachable, refusing the user) raises StoreSetupError saying what to do."""
    engine = create_engine(url)
    try:
        with opening(engine.url):
            await migrate_schema.prepare(engine, migrate=migrate)
    except BaseException:
        await engine.dispose()
        raise
    if engine.dialect.name != "sqlite":
        return postgres.PostgresStore.on_engine(engine)
    await engine.dispose()  # migrations done; SQLite's own threads take over
    return sqlite.SqliteStore.on_file(engine.url)


def create_engine(url: str | URL) -> AsyncEngine:
    """An async engine for `url` (any form `urls` accepts), as migrations and the admin
    commands use it. StoreSetupError for a URL or SQLite file the store cannot use."""
    parsed = urls.normalize(url)
    path = urls.sqlite_path(parsed)
    if path is not None:
        return sqlite.create_engine(parsed, path)
    return postgres.create_engine(parsed)
