"""Migrations: the schema comes from Alembic, matches the models, and a newer one is refused."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from sluice.engine.model import StepSpec, Template
from sluice.store import codec, migrate
from sluice.store.factory import create_engine, open_store
from sluice.store.schema import metadata, templates

# Schema and migration tests start from an empty file, not from the migrated copy.
pytestmark = pytest.mark.empty_database


async def test_empty_database_is_created_at_the_latest_revision(database_url: str) -> None:
    store = await open_store(database_url)
    await store.close()
    engine = create_engine(database_url)
    try:
        found = await migrate.state(engine)
        assert found.up_to_date and found.known

        def drift(connection: sa.Connection) -> list[object]:
            return list(compare_metadata(MigrationContext.configure(connection), metadata))

        async with engine.connect() as conn:
            assert await conn.run_sync(drift) == [], "schema.py changed without a migration"
    finally:
        await engine.dispose()


async def test_a_newer_schema_is_refused(database_url: str) -> None:
    await (await open_store(database_url)).close()
    engine = create_engine(database_url)
    async with engine.begin() as conn:
        await conn.execute(sa.text("UPDATE alembic_version SET version_num = 'from-the-future'"))
    await engine.dispose()

    with pytest.raises(migrate.SchemaError, match="newer than this Sluice knows"):
        await open_store(database_url, migrate=True)

    cli = [sys.executable, "-m", "sluice.server", "--listen", "127.0.0.1:0",
           "--database-url", database_url]  # fmt: skip
    result = await asyncio.to_thread(
        subprocess.run, cli, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert "newer than this Sluice knows" in result.stderr
    assert "Traceback" not in result.stderr


def test_sluice_db_commands(database_url: str) -> None:
    def sluice(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "sluice.cli", *args, "--database-url", database_url]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    before = sluice("db", "current")
    assert (before.returncode, before.stdout.startswith("empty")) == (1, True)
    upgraded = sluice("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    after = sluice("db", "current")
    assert (after.returncode, after.stdout.strip().endswith("(latest)")) == (0, True)


async def test_a_database_with_foreign_tables_is_refused(database_url: str) -> None:
    engine = create_engine(database_url)
    async with engine.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE runs (id INTEGER PRIMARY KEY)"))
    await engine.dispose()
    with pytest.raises(migrate.SchemaError, match="no migration history"):
        await open_store(database_url)


async def test_a_database_at_0001_upgrades_with_its_data(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await migrate.upgrade(engine, "0001")
        body = codec.template_to_json(
            Template("mine", version=1, steps=(StepSpec("a", "generate"),))
        )
        async with engine.begin() as conn:  # only the columns 0001 has
            await conn.execute(
                templates.insert().values(
                    owner="local", id="mine", version=1, body=body, created_at=datetime.now(UTC)
                )
            )
    finally:
        await engine.dispose()
    with pytest.raises(migrate.SchemaError, match="older than"):
        await open_store(database_url)

    store = await open_store(database_url, migrate=True)
    try:
        [kept] = await store.list_templates("local")
        assert (kept.id, kept.version) == ("mine", 1)
        assert await store.delete_template("local", "mine", 0) == 1
        assert await store.list_templates("local") == []
    finally:
        await store.close()
