"""The database URLs the server takes, in the forms people write them.

`postgresql://` and `postgres://` (what psql, libpq and most hosting providers print) mean
PostgreSQL through asyncpg, and `sqlite:///PATH` means SQLite through aiosqlite: the store has
one driver per database, so naming it is optional.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from sluice.store.errors import StoreSetupError

ACCEPTED = (
    "sqlite:///PATH (a relative path) or sqlite:////PATH (an absolute one), or "
    "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE (postgres:// too)"
)

# Scheme as written -> the SQLAlchemy driver the store uses.
_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


def normalize(url: str | URL) -> URL:
    """`url` with the driver the store uses; StoreSetupError for anything else."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        # Not echoed: a string that does not parse cannot be stripped of its password.
        raise StoreSetupError(
            f"SLUICE_DATABASE_URL is not a database URL; use {ACCEPTED}"
        ) from None
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None and parsed.get_backend_name() in ("postgresql", "sqlite"):
        raise StoreSetupError(
            f"SLUICE_DATABASE_URL: Sluice brings its own driver, not {parsed.get_driver_name()}"
            f"; leave it out of the URL: {ACCEPTED}"
        )
    if driver is None:
        raise StoreSetupError(
            f"SLUICE_DATABASE_URL: Sluice cannot use {parsed.drivername}:// databases; "
            f"use {ACCEPTED}"
        )
    if driver.startswith("sqlite") and parsed.database in (None, "", ":memory:"):
        raise StoreSetupError(
            "SLUICE_DATABASE_URL: an in-memory SQLite database would not outlive the server, nor "
            f"be shared by its connections; name a file: {ACCEPTED}"
        )
    return parsed.set(drivername=driver)


def sqlite_path(url: URL) -> Path | None:
    """The absolute path of a SQLite URL's file (relative ones are to the working directory),
    or None for another database."""
    if url.get_backend_name() != "sqlite" or not url.database:
        return None
    return Path(url.database).absolute()


def describe(url: str | URL) -> str:
    """Where the data is, for the log: a SQLite file's absolute path, or the URL without its
    password."""
    parsed = normalize(url)
    path = sqlite_path(parsed)
    return str(path) if path is not None else parsed.render_as_string(hide_password=True)
