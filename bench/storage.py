"""Bytes on disk per finished run, by database and template.

Each case fills a fresh database with `--runs` runs of one template, driven to the end by the
real engine (no-op steps whose output passes the templates' gates; approvals auto-approved),
and prints what the database grew by, divided by the runs: SQLite's file (write-ahead log
checkpointed into it) and PostgreSQL's tables with their indexes and TOAST
(pg_total_relation_size, after VACUUM FULL: the live rows, without the dead versions a run's
updates leave until autovacuum reuses their space).

    .venv/bin/python -m bench.storage [--runs 20000] \
        [--postgres postgresql://postgres@127.0.0.1/test [--postgres-runs 2000]]

With --postgres, each case gets its own database on that server (created and dropped). Fewer
runs there by default: filling PostgreSQL goes at about a tenth of SQLite's pace on a small
machine, and a few thousand runs already give the figure to within a few bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from sluice.engine.handlers import HandlerRegistry, StepContext, StepResult
from sluice.engine.model import ExecutionOptions, StepSpec, Template
from sluice.runtime.driver import Engine
from sluice.store.factory import create_engine, open_store
from sluice.templates import load_predefined

BATCH = 200  # runs in flight at once: their commits share transactions, as a busy server's do
PARAMS = {"location": "Lisbon", "topic": "rivers", "listingId": "L-1", "address": "1 Main St",
          "price": 350000}  # fmt: skip


class _NoOp:
    """Every step type: instant, with an output that passes the predefined templates' gates."""

    async def run(self, ctx: StepContext) -> StepResult:
        return StepResult({"qualityScore": 0.9, "issues": []})


def _custom(steps: int) -> Template:
    ids = [f"s{i}" for i in range(steps)]
    return Template(
        f"custom-{steps}-step",
        name=f"{steps} steps in a line",
        steps=tuple(
            StepSpec(s, "generate", config={"prompt": f"write part {i}"},
                     dependencies=(ids[i - 1],) if i else ())
            for i, s in enumerate(ids)
        ),
    )  # fmt: skip


def _cases() -> dict[str, Callable[[], Template]]:
    predefined = {t.id: t for t in load_predefined()}
    return {
        "predefined market-analysis-report (5 steps, 1 gate)": (
            lambda: predefined["market-analysis-report"]
        ),
        # Inline templates: each CreateWorkflow brings its own copy of the same body.
        "custom 1 step": lambda: _custom(1),
        "custom 3 steps": lambda: _custom(3),
    }


async def _fill(url: str, template: Callable[[], Template], runs: int) -> None:
    store = await open_store(url)
    registry = HandlerRegistry()
    for kind in ("generate", "review", "schedule", "post", "analyze", "notify"):
        registry.register(kind, _NoOp())
    engine = Engine(store, registry)
    options = ExecutionOptions(auto_approve=True)

    async def one() -> None:
        run = await engine.create_run("bench", template(), PARAMS)
        done = await engine.execute("bench", run.id, options, wait=True)
        assert done.status.terminal, done.status

    try:
        for first in range(0, runs, BATCH):
            await asyncio.gather(*(one() for _ in range(min(BATCH, runs - first))))
    finally:
        await engine.stop()
        await store.close()


async def _size(url: str) -> int:
    engine = create_engine(url)
    try:
        if engine.dialect.name == "sqlite":
            async with engine.connect() as conn:
                await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                pages = (await conn.exec_driver_sql("PRAGMA page_count")).scalar_one()
                page = (await conn.exec_driver_sql("PRAGMA page_size")).scalar_one()
                return int(pages * page)
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql("VACUUM FULL")
            total = await conn.exec_driver_sql(
                "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind = 'r' AND n.nspname = 'public'"
            )
            return int(total.scalar_one())
    finally:
        await engine.dispose()


@asynccontextmanager
async def _database(kind: str, postgres: str, scratch: Path) -> AsyncIterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{scratch / f'{uuid.uuid4().hex}.db'}"
        return
    name = f"sluice_bench_storage_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(
        make_url(postgres).set(drivername="postgresql+asyncpg"), isolation_level="AUTOCOMMIT"
    )
    try:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            # A fill, not a measurement of speed: commits need not wait for the disk.
            await conn.execute(sa.text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
        yield make_url(postgres).set(database=name).render_as_string(hide_password=False)
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


async def measure(
    runs: int, postgres: str, postgres_runs: int
) -> list[tuple[str, str, int, float]]:
    results = []
    kinds = {"sqlite": runs} | ({"postgresql": postgres_runs} if postgres else {})
    with tempfile.TemporaryDirectory() as scratch:
        for kind, runs in kinds.items():
            for name, template in _cases().items():
                async with _database(kind, postgres, Path(scratch)) as url:
                    await (await open_store(url)).close()  # the empty schema
                    empty = await _size(url)
                    await _fill(url, template, runs)
                    grown = await _size(url) - empty
                results.append((kind, name, runs, grown / runs))
                print(f"{kind:10} {name:52} {runs:>7} runs {grown / runs:>8.0f} bytes/run",
                      flush=True)  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--postgres", default="", help="a PostgreSQL server URL to measure too")
    parser.add_argument("--postgres-runs", type=int, default=2_000)
    args = parser.parse_args()
    asyncio.run(measure(args.runs, args.postgres, args.postgres_runs))


if __name__ == "__main__":
    main()
