"""`sluice db ...`: managing the database schema."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import typer

from sluice import config

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")

# The server, SQLAlchemy and Alembic take half a second to import: every remote command would
# pay it, so the commands here import them when they run.

db = typer.Typer(help="Manage the database schema (Alembic migrations).", no_args_is_help=True)

DatabaseUrl = typer.Option(
    config.DEFAULT_DATABASE_URL, "--database-url", envvar="SLUICE_DATABASE_URL",
    help="SQLAlchemy async URL of the store.",
)  # fmt: skip


@db.command()
def upgrade(database_url: str = DatabaseUrl) -> None:
    """Upgrade the schema to the latest revision (creates it in an empty database)."""
    from sluice.store import migrate

    async def run(engine: AsyncEngine) -> migrate.SchemaState:
        found = await migrate.state(engine)
        if not found.known:
            raise migrate.SchemaError(
                f"the schema is at {found.current}, newer than this Sluice knows"
            )
        await migrate.upgrade(engine)
        return await migrate.state(engine)

    done = _on_database(database_url, run)
    typer.echo(f"schema at revision {done.current} (latest)")


@db.command()
def current(database_url: str = DatabaseUrl) -> None:
    """Print the schema's revision and whether it is the latest. Exit 1 when it is not."""
    from sluice.store import migrate

    found = _on_database(database_url, migrate.state)
    if found.up_to_date:
        typer.echo(f"{found.current} (latest)")
        return
    described = "empty" if found.current is None else found.current
    suffix = "" if found.known else " (unknown: newer than this Sluice)"
    typer.echo(f"{described}{suffix}; latest is {found.head}")
    raise typer.Exit(1)


@db.command()
def revision(
    message: str = typer.Argument(..., help="What the migration changes."),
    rev_id: str = typer.Option(None, help="Revision id, e.g. 0002 (default: random)."),
    database_url: str = DatabaseUrl,
) -> None:
    """Draft a migration from schema.py's difference to a database at the latest revision."""
    from sluice.store import migrate

    _on_database(database_url, lambda engine: migrate.new_revision(engine, message, rev_id))


def _on_database(database_url: str, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """`work` on an engine for the URL; a database that cannot be used as given (or a schema
    this Sluice cannot handle) ends the command with one line and exit code 2."""
    from sluice.store.errors import StoreSetupError, opening
    from sluice.store.factory import create_engine

    async def run() -> T:
        engine = create_engine(database_url)
        try:
            with opening(engine.url):
                return await work(engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except StoreSetupError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
