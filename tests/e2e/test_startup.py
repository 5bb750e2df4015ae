"""Starting `sluice serve`: what an operator gets wrong ends in one line saying what to do and
exit code 2, never a traceback; the address and the database it runs on are in its log."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from sluice.client import WorkflowClient
from tests.support.process import Exited, ServerProcess, free_port, run_until_exit
from tests.support.templates import step, template

SERVE = ("sluice.cli", "serve", "--listen", "127.0.0.1:0")


def assert_one_line(result: Exited, *expected: str) -> str:
    """The refusal: exit 2 and a single line on stderr holding every `expected` text."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.code == 2, result.stderr
    assert len(result.lines) == 1, result.stderr
    text = result.lines[0]
    # On a pipe the server logs JSON: the line is a log record at level error.
    message = json.loads(text)["message"] if text.startswith("{") else text
    for part in expected:
        assert part in message, (part, message)
    return message


# --- the address ----------------------------------------------------------------------------


async def test_a_second_server_on_a_port_in_use_refuses_to_start(tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_port()}"
    first = await ServerProcess(
        f"sqlite+aiosqlite:///{tmp_path / 'first.db'}", tmp_path / "ledger", listen
    ).start()
    try:
        second = await run_until_exit(
            "sluice.cli", "serve", "--listen", listen,
            "--database-url", f"sqlite+aiosqlite:///{tmp_path / 'second.db'}",
        )  # fmt: skip
        assert_one_line(second, listen, "already listening there", "--listen")
        assert not (tmp_path / "second.db").exists(), "it stopped before touching its database"
        # Every call still reaches the first server: what it stores is there each time.
        async with WorkflowClient(listen) as client:
            await client.create_template(template("only-on-first", step("a", "work")))
            for _ in range(10):
                assert (await client.get_template("only-on-first")).id == "only-on-first"
    finally:
        await first.close()


# --- the database ---------------------------------------------------------------------------

POSTGRES = os.environ.get("SLUICE_TEST_DATABASE_URL", "") or "postgresql://postgres@127.0.0.1:5432/"


def _postgres_listening() -> bool:
    url = make_url(POSTGRES)
    try:
        socket.create_connection((url.host or "127.0.0.1", url.port or 5432), timeout=1).close()
    except OSError:
        return False
    return True


needs_postgres = pytest.mark.skipif(
    not _postgres_listening(),
    reason=f"no PostgreSQL at {make_url(POSTGRES).host}:{make_url(POSTGRES).port or 5432} "
    "(.ci/run starts one for `make test-postgres`)",
)


def postgres(database: str, **parts: object) -> str:
    """A plain `postgresql://` URL (no driver named) on the test cluster."""
    url = make_url(POSTGRES).set(drivername="postgresql", database=database, **parts)  # type: ignore[arg-type]
    return url.render_as_string(hide_password=False)


@pytest.fixture
async def new_postgres_database() -> AsyncIterator[str]:
    name = f"sluice_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(
        make_url(POSTGRES).set(drivername="postgresql+asyncpg", database="postgres"),
        isolation_level="AUTOCOMMIT",
    )
    try:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield name
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


@needs_postgres
async def test_a_second_server_on_one_sqlite_file_refuses_to_start(tmp_path: Path) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path / 'sluice.db'}"
    first = await ServerProcess(database, tmp_path / "ledger", "127.0.0.1:0").start()
    try:
        second = await run_until_exit(*SERVE, "--database-url", database)
        assert_one_line(second, "another Sluice server is using", "sluice.db", "PostgreSQL")
        async with WorkflowClient(first.address) as client:  # the first serves on
            await client.create_template(template("still-here", step("a", "work")))
    finally:
        await first.close()
    # Once the first is gone (here killed: the lock goes with the process), one may start.
    again = await ServerProcess(database, tmp_path / "ledger", "127.0.0.1:0").start()
    await again.terminate()


async def test_a_postgres_url_as_psql_takes_it_is_accepted(
    new_postgres_database: str, tmp_path: Path
) -> None:
    url = postgres(new_postgres_database).replace("postgresql://", "postgres://", 1)
    server = await ServerProcess(url, tmp_path / "ledger", "127.0.0.1:0").start()
    try:
        async with WorkflowClient(server.address) as client:
            assert len(await client.list_templates()) >= 3
    finally:
        await server.close()


@needs_postgres
async def test_postgresql_problems_end_in_one_line() -> None:
    missing = f"sluice_missing_{uuid.uuid4().hex[:8]}"
    refused_port = free_port()
    cases = {
        "no such database": (
            postgres(missing).replace("postgresql://", "postgres://", 1),
            [f"the database '{missing}' does not exist", "createdb", missing],
        ),
        "refused port": (
            postgres("sluice", port=refused_port),
            [f"127.0.0.1:{refused_port}", "connection refused", "is PostgreSQL running?"],
        ),
        "unknown user": (
            postgres("postgres", username="no_such_role"),
            ["refused user no_such_role", "role \"no_such_role\" does not exist",
             "check the user and password"],
        ),
    }  # fmt: skip
    results = await asyncio.gather(
        *(run_until_exit(*SERVE, "--database-url", url) for url, _ in cases.values())
    )
    for (case, (_, expected)), result in zip(cases.items(), results, strict=True):
        assert_one_line(result, *expected), case


async def test_sqlite_and_url_problems_end_in_one_line(tmp_path: Path) -> None:
    """The rest of the cases are in tests/integration/test_database_setup.py."""
    (tmp_path / "not-a-database").write_text("hello" * 100)
    cases = {
        "unknown scheme": ("mysql://user@db.example/sluice", ["mysql://", "sqlite:///PATH"]),
        "not a database": (
            f"sqlite:///{tmp_path / 'not-a-database'}",
            [f"{tmp_path / 'not-a-database'} is not a SQLite database"],
        ),
    }
    results = await asyncio.gather(
        *(run_until_exit(*SERVE, "--database-url", url) for url, _ in cases.values())
    )
    for (case, (_, expected)), result in zip(cases.items(), results, strict=True):
        assert_one_line(result, *expected), case


@needs_postgres
async def test_sluice_db_commands_end_in_one_line() -> None:
    refused = postgres("sluice", port=free_port())
    missing = f"sluice_missing_{uuid.uuid4().hex[:8]}"
    current, upgrade = await asyncio.gather(
        run_until_exit("sluice.cli", "db", "current", "--database-url", refused),
        run_until_exit("sluice.cli", "db", "upgrade", "--database-url", postgres(missing)),
    )
    assert_one_line(current, "connection refused", "is PostgreSQL running?")
    assert_one_line(upgrade, f"the database '{missing}' does not exist")


# --- other settings -------------------------------------------------------------------------


async def test_other_operator_mistakes_end_in_one_line(tmp_path: Path) -> None:
    """More cases, checked without a process: tests/security/test_config.py."""
    database = f"sqlite:///{tmp_path / 'sluice.db'}"
    missing = tmp_path / "missing.pem"
    cases = {
        "short secret": (
            {"auth_jwt_secret": "too-short"},
            ["SLUICE_AUTH_JWT_SECRET is 9 bytes", "HS256 needs at least 32", "openssl rand"],
        ),
        "unreadable certificate": (
            {"tls_cert_file": str(missing), "tls_key_file": str(missing)},
            [f"cannot read SLUICE_TLS_CERT_FILE {missing}", "No such file"],
        ),
    }
    results = await asyncio.gather(
        *(
            run_until_exit(*SERVE, "--database-url", database, **settings)
            for settings, _ in cases.values()
        )
    )
    for (case, (_, expected)), result in zip(cases.items(), results, strict=True):
        assert_one_line(result, *expected), case


# --- what the log says at start -------------------------------------------------------------


async def test_the_default_database_is_logged_with_its_absolute_path(tmp_path: Path) -> None:
    server = await ServerProcess(
        "", tmp_path / "ledger", "127.0.0.1:0", cwd=tmp_path, log_format="console"
    ).start()
    try:
        serving = next(line for line in server.log.decode().splitlines() if "serving on" in line)
        assert f"database={tmp_path / 'var' / 'sluice.db'}" in serving
        assert "alembic" not in server.log.decode().lower(), "Alembic's lines are quieted"
        assert (tmp_path / "var" / "sluice.db").exists()
    finally:
        await server.close()
