"""PostgreSQL for the benchmarks: a fresh database per scenario run, and what PostgreSQL says
it did in it (commits, rows, bytes).

The server is `SLUICE_BENCH_POSTGRES` (default postgresql://postgres@127.0.0.1:5432/postgres,
trust auth; `make` passes its POSTGRES_URL); the benchmarks connect to its `postgres` database
to create and drop databases named sluice_bench_<random> and never touch any other. pg_stat_statements needs
shared_preload_libraries and so a restart of the cluster (others run tests on it), so the work
is counted with what needs no extension: pg_stat_database (transactions) and
pg_stat_user_tables (rows), per database. A backend sends its counts to the shared statistics
at most once a second while busy and within 10 s once idle, but always when it exits: the
figures are read after the database's clients have gone and its backends have exited.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]

from bench import common

# The server: its scheme may name a driver (the Makefile's POSTGRES_URL says +asyncpg) and its
# database is not used (the benchmarks work in `postgres` and in their own databases).
ADMIN_URL = os.environ.get("SLUICE_BENCH_POSTGRES") or "postgresql://postgres@127.0.0.1/postgres"
PREFIX = "sluice_bench_"
T = TypeVar("T")


def _url(database: str) -> str:
    server = re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", ADMIN_URL).rpartition("/")[0]
    return f"{server}/{database}"


def _with(database: str, work: Callable[[Any], Awaitable[T]]) -> T:
    async def run() -> T:
        conn = await asyncpg.connect(_url(database), timeout=10)
        try:
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(run())


def available() -> str | None:
    """None when the server answers, else why not (the PostgreSQL scenarios are then reported
    as not available rather than failed: a laptop without PostgreSQL still runs the rest)."""
    try:
        _with("postgres", lambda conn: conn.fetchval("SELECT 1"))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"PostgreSQL at {ADMIN_URL} not reachable: {type(exc).__name__}: {exc}"
    return None


def create_database() -> str:
    """A new, empty database; its name."""
    name = f"{PREFIX}{uuid.uuid4().hex[:12]}"
    _with("postgres", lambda conn: conn.execute(f'CREATE DATABASE "{name}"'))
    return name


def drop_database(name: str) -> None:
    assert name.startswith(PREFIX), name  # never anything the benchmarks did not create
    _with("postgres", lambda conn: conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def url(name: str, scheme: str = "postgresql") -> str:
    """The database's URL for a client: `postgresql` (Sluice picks asyncpg itself) or, say,
    `postgresql+psycopg`."""
    return _url(name).replace("postgresql://", f"{scheme}://", 1)


def wait_idle(name: str, timeout: float = 30) -> None:
    """Until no backend serves `name` (its clients have gone and their backends exited, which
    is when they hand in their statistics)."""
    deadline = time.monotonic() + timeout
    query = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1"
    while _with("postgres", lambda conn: conn.fetchval(query, name)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"backends still serve {name} after {timeout:.0f} s")
        time.sleep(0.05)


@dataclass(frozen=True)
class Usage:
    """What PostgreSQL counted in one database: transactions, rows by table, bytes by table."""

    commits: int
    rollbacks: int
    tables: dict[str, dict[str, int]]  # schema.table -> inserted, updated, deleted, hot, bytes

    def total(self, key: str) -> int:
        return sum(t[key] for t in self.tables.values())

    def as_dict(self) -> dict[str, Any]:
        return {"commits": self.commits, "rollbacks": self.rollbacks, "tables": self.tables}


def usage(name: str) -> Usage:
    """The database's counters since it was created, and its tables' sizes (read from a
    connection to `postgres`, then one to `name`, whose own transaction is not in the counts:
    they are read before it ends)."""
    row = _with(
        "postgres",
        lambda conn: conn.fetchrow(
            "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = $1", name
        ),
    )
    rows = _with(
        name,
        lambda conn: conn.fetch(
            "SELECT schemaname || '.' || relname AS name, n_tup_ins, n_tup_upd, n_tup_del, "
            "n_tup_hot_upd, pg_total_relation_size(relid) AS bytes FROM pg_stat_user_tables"
        ),
    )
    tables = {
        r["name"]: {
            "inserted": r["n_tup_ins"],
            "updated": r["n_tup_upd"],
            "deleted": r["n_tup_del"],
            "hot_updated": r["n_tup_hot_upd"],
            "bytes": r["bytes"],
        }
        for r in rows
    }
    return Usage(commits=row["xact_commit"], rollbacks=row["xact_rollback"], tables=tables)


def compact_sizes(name: str) -> dict[str, int]:
    """Each table's size (with its indexes and TOAST) after VACUUM FULL has rewritten it
    without dead row versions or free space: what the live rows take. Only on a benchmark
    database whose figures have been read (it rewrites every table)."""
    assert name.startswith(PREFIX), name

    async def work(conn: Any) -> dict[str, int]:
        await conn.execute("VACUUM FULL")
        rows = await conn.fetch(
            "SELECT schemaname || '.' || relname AS name, pg_total_relation_size(relid) AS bytes "
            "FROM pg_stat_user_tables"
        )
        return {r["name"]: r["bytes"] for r in rows}

    return _with(name, work)


def count(name: str, table: str) -> int:
    value: int = _with(name, lambda conn: conn.fetchval(f"SELECT count(*) FROM {table}"))
    return value


def other_transactions(name: str) -> dict[str, int]:
    """Transactions PostgreSQL has counted so far in every database but `name`, database by
    database: a rise during a measurement says someone else was using the cluster (and its CPU)
    at the time (`others_since`)."""
    rows = _with(
        "postgres",
        lambda conn: conn.fetch(
            "SELECT coalesce(datname, '') AS datname, xact_commit + xact_rollback AS n "
            "FROM pg_stat_database WHERE datname IS DISTINCT FROM $1",
            name,
        ),
    )
    return {r["datname"]: int(r["n"]) for r in rows}


def others_since(before: dict[str, int], after: dict[str, int]) -> int:
    """Others' transactions between two `other_transactions` readings: over the databases
    present at both (others' test databases come and go, and a dropped one takes its counts
    with it), plus everything in those created meanwhile."""
    return sum(n - before.get(db, 0) for db, n in after.items() if n >= before.get(db, 0))


def postmaster_pid() -> int:
    """PostgreSQL's server process (the parent of the backend that answers), for
    `common.tree_cpu_seconds`: the CPU PostgreSQL spends, read from /proc on this machine."""

    async def parent(conn: Any) -> int:
        # Read while the backend lives: it exits with the connection.
        return common.parent_pid(await conn.fetchval("SELECT pg_backend_pid()"))

    return _with("postgres", parent)


def wal() -> dict[str, int]:
    """The cluster's WAL counters (pg_stat_wal, cluster-wide: others' work on the same server
    counts too): records, bytes, writes and syncs (fsyncs) of the WAL. A backend hands in its
    counts at most once a second while busy, so a reading lags by up to a second of work."""
    row = _with(
        "postgres",
        lambda conn: conn.fetchrow(
            "SELECT wal_records, wal_bytes::bigint AS wal_bytes, wal_write, wal_sync "
            "FROM pg_stat_wal"
        ),
    )
    return {key: int(row[key]) for key in ("wal_records", "wal_bytes", "wal_write", "wal_sync")}
