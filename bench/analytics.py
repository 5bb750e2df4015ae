"""GetAnalytics over 1,000,000 stored runs, on SQLite and on PostgreSQL.

    python -m bench.analytics [--runs 1000000] [--repeat 30] [--no-postgres] [--output FILE]
    make bench-analytics

For each database: 1,000,000 finished runs of one owner are written straight into the store's
tables (runs, step_runs, gate_results, template_snapshots; not through the API), spread over
30 days, of 6 templates (3 to 6 steps of 9 step types, 0 to 2 gates each), 92 % COMPLETED,
5 % FAILED at a random step, 3 % CANCELLED, step durations log-normal by type (transform 20 ms
... wait 10 min), approvals taking minutes to hours, 5 % of steps retried. Every run is queued
as migration 0011 queues the runs of an upgraded database, and the store folds the queue into
the sums (timed: the backfill's cost). A server process on that database then answers
GetAnalytics from a client over gRPC, for windows of 1 hour, 24 hours and 30 days (and 30 days
not aligned to days, and one template's), each `--repeat` times after two warm-up calls:
median and p99 ms. Beside them, what the figures cost without the sums: the same counts and
percentiles computed by SQL from the runs (and the steps) of the window, a few times each.
Writes the Markdown report (default bench/results/analytics.md) and prints a JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import grpc

from bench import common, pgstat
from bench.server import ROOT, Server
from sluice.engine.model import GateAction, GateSpec, GateType, StepSpec, Template
from sluice.store import rows
from sluice.store.factory import open_store
from sluice.v1 import workflow_service_pb2 as pb
from sluice.v1 import workflow_service_pb2_grpc as pb_grpc

OWNER = "local"  # the single local user of a server without authentication
START = datetime(2026, 10, 1, tzinfo=UTC)
DAYS = 30
END = START + timedelta(days=DAYS)
CHUNK = 20_000

# Median seconds and log-normal sigma of a step's duration, by type.
DURATIONS = {
    "generate": (0.4, 0.5), "review": (0.15, 0.4), "schedule": (0.01, 0.3),
    "post": (1.2, 0.8), "analyze": (0.3, 0.5), "transform": (0.02, 0.6),
    "notify": (0.5, 0.7), "task": (8.0, 1.0), "wait": (600.0, 0.3),
}  # fmt: skip
APPROVAL = (1800.0, 1.2)  # a person's decision


def _template(template_id: str, types: list[str], gates: list[tuple[GateType, int]]) -> Template:
    steps = tuple(
        StepSpec(f"s{i}", t, dependencies=(f"s{i - 1}",) if i else ()) for i, t in enumerate(types)
    )
    return Template(
        template_id, version=1, owner=OWNER, steps=steps,
        gates=tuple(GateSpec(f"g{i}", kind, f"s{at}", GateAction.CONTINUE)
                    for i, (kind, at) in enumerate(gates)),
    )  # fmt: skip


G = GateType
TEMPLATES: list[tuple[Template, float]] = [
    (_template("content-to-social", ["generate", "review", "schedule", "post", "analyze"],
               [(G.THRESHOLD, 1), (G.APPROVAL, 1)]), 0.30),
    (_template("listing-campaign", ["generate", "review", "transform", "post", "notify"],
               [(G.THRESHOLD, 1)]), 0.20),
    (_template("market-report", ["transform", "analyze", "generate", "review", "notify"],
               [(G.VALIDATION, 3)]), 0.15),
    (_template("webhook-sync", ["transform", "task", "notify"], []), 0.20),
    (_template("nightly-digest", ["transform", "generate", "wait", "notify"],
               [(G.APPROVAL, 1)]), 0.05),
    (_template("enrichment", ["task", "task", "transform", "review"],
               [(G.VALIDATION, 3), (G.THRESHOLD, 3)]), 0.10),
]  # fmt: skip

RUN_COLUMNS = (
    "id", "owner", "template_id", "template_version", "template_key", "params", "status",
    "options", "error", "pause_reason", "paused_gate_id", "created_at", "started_at", "ended_at",
    "updated_at", "last_sequence", "version", "lease_epoch",
)  # fmt: skip
STEP_COLUMNS = ("run_id", "step_id", "position", "status", "attempt", "started_at", "ended_at",
                "output", "error")  # fmt: skip
GATE_COLUMNS = ("run_id", "gate_id", "position", "status", "message", "decided_at")
# A queue row as migration 0011 writes it for a run that had ended: no counts (the fold reads
# the run's rows to count it).
QUEUE_COLUMNS = ("run_id", "owner", "template_id", "template_version", "ended_at")


def _queued(run: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(run[RUN_COLUMNS.index(c if c != "run_id" else "id")] for c in QUEUE_COLUMNS)


@dataclass
class Batch:
    runs: list[tuple[Any, ...]]
    steps: list[tuple[Any, ...]]
    gates: list[tuple[Any, ...]]
    ids: list[str]


def generate(total: int, seed: int = 14) -> Iterator[Batch]:
    """The runs, oldest end first, CHUNK at a time; times as aware datetimes."""
    rng = random.Random(seed)
    templates = [t for t, _ in TEMPLATES]
    weights = [w for _, w in TEMPLATES]
    keys = {t.id: rows.snapshot(t).key for t in templates}
    spacing = (END - START) / total
    batch = Batch([], [], [], [])
    for i in range(total):
        tpl = rng.choices(templates, weights)[0]
        end = START + spacing * (i + rng.random())
        draw = rng.random()
        status = "COMPLETED" if draw < 0.92 else "FAILED" if draw < 0.97 else "CANCELLED"
        steps = tpl.steps
        stop = len(steps) if status == "COMPLETED" else rng.randrange(len(steps))
        approvals = {g.step_id for g in tpl.gates if g.type is GateType.APPROVAL}
        spans: list[float] = []
        for j in range(min(stop + 1, len(steps))):
            median, sigma = DURATIONS[steps[j].type]
            seconds = rng.lognormvariate(math.log(median), sigma)
            if steps[j].id in approvals and j < stop:
                seconds += rng.lognormvariate(math.log(APPROVAL[0]), APPROVAL[1])
            spans.append(seconds)
        at = end - timedelta(seconds=sum(spans))
        run_id = f"{i:08x}-0000-4000-8000-{rng.getrandbits(48):012x}"
        batch.ids.append(run_id)
        batch.runs.append(
            (run_id, OWNER, tpl.id, 1, keys[tpl.id], "{}", status, "{}",
             "step failed" if status == "FAILED" else "", "", "",
             at - timedelta(milliseconds=50), at, end, end, 3 * len(steps) + 2, len(steps) + 2, 0)
        )  # fmt: skip
        completed: set[str] = set()
        for j, spec in enumerate(steps):
            if j < len(spans):
                began, at = at, at + timedelta(seconds=spans[j])
                step_status = "COMPLETED" if j < stop else status
                attempts = 1 if rng.random() > 0.05 else rng.randint(2, 3)
                if step_status == "COMPLETED":
                    completed.add(spec.id)
                row = (run_id, spec.id, j, step_status, attempts, began, at, "{}", "")
            else:
                row = (run_id, spec.id, j, "SKIPPED", 0, None, None, None, "")
            batch.steps.append(row)
        for k, gate in enumerate(tpl.gates):
            if gate.step_id not in completed:
                gate_status = "SKIPPED"
            elif gate.type is GateType.APPROVAL:
                gate_status = "APPROVED"
            else:
                gate_status = "PASSED" if rng.random() < 0.97 else "FAILED"
            batch.gates.append((run_id, gate.id, k, gate_status, "", end))
        if len(batch.ids) == CHUNK:
            yield batch
            batch = Batch([], [], [], [])
    if batch.ids:
        yield batch


# --- SQLite ---------------------------------------------------------------------------------


def _text(value: Any) -> Any:
    # As SQLAlchemy's SQLite DateTime stores it.
    return value.isoformat(" ", "microseconds")[:26] if isinstance(value, datetime) else value


def fill_sqlite(path: Path, total: int) -> float:
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous = OFF")  # a fill, not a measurement
    db.executemany(
        "INSERT INTO template_snapshots (key, body) VALUES (?, ?)",
        [(s.key, json.dumps(s.body)) for s in (rows.snapshot(t) for t, _ in TEMPLATES)],
    )
    begin = time.perf_counter()
    for batch in generate(total):
        for table, columns, values in (("runs", RUN_COLUMNS, batch.runs),
                                       ("step_runs", STEP_COLUMNS, batch.steps),
                                       ("gate_results", GATE_COLUMNS, batch.gates)):  # fmt: skip
            marks = ", ".join("?" * len(columns))
            db.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
                [tuple(_text(v) for v in row) for row in values],
            )
        db.executemany(
            f"INSERT INTO analytics_queue ({', '.join(QUEUE_COLUMNS)}) VALUES (?, ?, ?, ?, ?)",
            [tuple(_text(v) for v in _queued(run)) for run in batch.runs],
        )
        db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return time.perf_counter() - begin


def _sqlite_scan(path: Path, start: datetime, end: datetime, steps: bool) -> Callable[[], Any]:
    """The figures computed from the runs of the window without the sums: counts by template
    and status, and nearest-rank percentiles of run durations per template (with `steps`,
    also of step durations per template and step: 5 times the rows)."""
    db = sqlite3.connect(path)
    bounds = (_text(start), _text(end))
    durations = "(julianday({t}.ended_at) - julianday({t}.started_at)) * 86400.0"
    ranks = """SELECT {group}, d FROM (
        SELECT {group}, d, row_number() OVER (PARTITION BY {group} ORDER BY d) AS rn,
               count(*) OVER (PARTITION BY {group}) AS n FROM ({inner}))
        WHERE rn IN ((n * 50 + 99) / 100, (n * 95 + 99) / 100, (n * 99 + 99) / 100)"""
    counts = ("SELECT template_id, status, count(*) FROM runs WHERE owner = ? AND ended_at >= ? "
              "AND ended_at < ? GROUP BY template_id, status")  # fmt: skip
    run_ranks = ranks.format(
        group="template_id",
        inner=f"SELECT template_id, {durations.format(t='runs')} AS d FROM runs "
        "WHERE owner = ? AND ended_at >= ? AND ended_at < ? AND started_at IS NOT NULL",
    )
    step_ranks = ranks.format(
        group="template_id, step_id",
        inner=f"SELECT r.template_id, s.step_id, {durations.format(t='s')} AS d "
        "FROM runs r JOIN step_runs s ON s.run_id = r.id WHERE r.owner = ? AND r.ended_at >= ? "
        "AND r.ended_at < ? AND s.started_at IS NOT NULL",
    )

    def scan() -> int:
        found = db.execute(counts, (OWNER, *bounds)).fetchall()
        found += db.execute(run_ranks, (OWNER, *bounds)).fetchall()
        if steps:
            found += db.execute(step_ranks, (OWNER, *bounds)).fetchall()
        return len(found)

    return scan


# --- PostgreSQL -----------------------------------------------------------------------------


async def fill_postgres(url: str, total: int) -> float:
    conn = await asyncpg.connect(url)
    try:
        await conn.executemany(
            "INSERT INTO template_snapshots (key, body) VALUES ($1, $2::jsonb)",
            [(s.key, json.dumps(s.body)) for s in (rows.snapshot(t) for t, _ in TEMPLATES)],
        )
        begin = time.perf_counter()
        for batch in generate(total):
            async with conn.transaction():
                await conn.copy_records_to_table("runs", records=batch.runs, columns=RUN_COLUMNS)
                await conn.copy_records_to_table(
                    "step_runs", records=batch.steps, columns=STEP_COLUMNS
                )
                await conn.copy_records_to_table(
                    "gate_results", records=batch.gates, columns=GATE_COLUMNS
                )
                await conn.copy_records_to_table(
                    "analytics_queue",
                    records=[_queued(run) for run in batch.runs],
                    columns=QUEUE_COLUMNS,
                )
        await conn.execute("VACUUM ANALYZE")
        return time.perf_counter() - begin
    finally:
        await conn.close()


async def _postgres_scan(url: str, start: datetime, end: datetime, steps: bool) -> float:
    """As `_sqlite_scan`, with percentile_disc; ms of one pass."""
    conn = await asyncpg.connect(url)
    run_sql = """SELECT template_id, status, count(*),
        percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY ended_at - started_at)
        FROM runs WHERE owner = $1 AND ended_at >= $2 AND ended_at < $3
        GROUP BY template_id, status"""
    step_sql = """SELECT r.template_id, s.step_id, s.status, count(*),
        percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY s.ended_at - s.started_at)
        FROM runs r JOIN step_runs s ON s.run_id = r.id
        WHERE r.owner = $1 AND r.ended_at >= $2 AND r.ended_at < $3
        GROUP BY r.template_id, s.step_id, s.status"""
    try:
        begin = time.perf_counter()
        await conn.fetch(run_sql, OWNER, start, end)
        if steps:
            await conn.fetch(step_sql, OWNER, start, end)
        return (time.perf_counter() - begin) * 1000
    finally:
        await conn.close()


# --- both -----------------------------------------------------------------------------------


async def fold(url: str) -> tuple[float, int]:
    """The queue folded into the sums by the store, as a server does after an upgrade."""
    store = await open_store(url)
    try:
        begin = time.perf_counter()
        folded = await store.fold_analytics()
        return time.perf_counter() - begin, folded
    finally:
        await store.close()


def windows() -> dict[str, pb.GetAnalyticsRequest]:
    def window(start: datetime, end: datetime, **filters: Any) -> pb.GetAnalyticsRequest:
        request = pb.GetAnalyticsRequest(**filters)
        request.start_time.FromDatetime(start)
        request.end_time.FromDatetime(end)
        return request

    last = END - timedelta(hours=1)
    return {
        "1 hour": window(last, END),
        "24 hours": window(END - timedelta(hours=24), END),
        "30 days": window(START, END),
        "30 days less 5 h and 3 h (28 days, 6 six-hours, 6 hours)": window(
            START + timedelta(hours=5), END - timedelta(hours=3)
        ),
        "30 days, one template": window(START, END, template_id="content-to-social"),
        "30 days, one step type": window(START, END, step_type="review"),
    }


async def measure(address: str, repeat: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    async with grpc.aio.insecure_channel(address) as channel:
        api = pb_grpc.WorkflowServiceStub(channel)
        for name, request in windows().items():
            for _ in range(2):
                reply = await api.GetAnalytics(request)
            values = []
            for _ in range(repeat):
                begin = time.perf_counter()
                reply = await api.GetAnalytics(request)
                values.append((time.perf_counter() - begin) * 1000)
            out[name] = {
                "ms_median": common.percentile(values, 50),
                "ms_p99": common.percentile(values, 99),
                "runs": sum(t.runs for t in reply.templates),
                "kb": reply.ByteSize() / 1024,
            }
    return out


async def scans(scan: Callable[[datetime, datetime, bool], Any], passes: int) -> dict[str, float]:
    """ms of the SQL-only figures (no sums): median of `passes`."""
    out = {}
    for name, (start, end, steps) in {
        "24 hours, runs": (END - timedelta(hours=24), END, False),
        "30 days, runs": (START, END, False),
        "30 days, runs and steps": (START, END, True),
    }.items():
        # The steps' scan reads 5 times the rows: once is enough to say what it costs.
        values = [await scan(start, end, steps) for _ in range(1 if steps else passes)]
        out[name] = common.percentile(values, 50)
    return out


async def one_database(
    kind: str, url: str, workdir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    await (await open_store(url)).close()  # the schema, migrated
    if kind == "sqlite":
        path = workdir / "sluice.db"
        result["fill_s"] = fill_sqlite(path, args.runs)
    else:
        result["fill_s"] = await fill_postgres(pgstat.url(url.rsplit("/", 1)[1]), args.runs)
    result["fold_s"], result["folded"] = await fold(url)
    if kind == "sqlite":
        result["db_mb"] = path.stat().st_size / 1e6
        sums = sqlite3.connect(path).execute("SELECT count(*) FROM analytics_sums").fetchone()[0]

        async def scan(start: datetime, end: datetime, steps: bool) -> float:
            begin = time.perf_counter()
            _sqlite_scan(path, start, end, steps)()
            return (time.perf_counter() - begin) * 1000
    else:
        raw = pgstat.url(url.rsplit("/", 1)[1])
        conn = await asyncpg.connect(raw)
        sums = await conn.fetchval("SELECT count(*) FROM analytics_sums")
        result["db_mb"] = await conn.fetchval("SELECT pg_database_size(current_database())") / 1e6
        await conn.execute("VACUUM ANALYZE analytics_sums")
        await conn.close()

        async def scan(start: datetime, end: datetime, steps: bool) -> float:
            return await _postgres_scan(raw, start, end, steps)

    result["sum_rows"] = sums
    server = Server(workdir, database_url=url, name=f"server-{kind}").start(timeout=600)
    try:
        result["calls"] = await measure(server.address, args.repeat)
    finally:
        server.stop()
    result["scans"] = await scans(scan, args.scan_passes)
    return result


def report(results: dict[str, Any], args: argparse.Namespace, took: float) -> str:
    kinds = [k for k in ("sqlite", "postgresql") if k in results]
    names = {"sqlite": "SQLite", "postgresql": "PostgreSQL 15"}
    load = os.getloadavg()[0]
    lines = [
        f"# GetAnalytics over {args.runs:,} runs",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores "
        f"({platform.processor() or platform.machine()}); Python {platform.python_version()}; "
        f"took {took:.0f} s; load average {load:.2f} at the end (other work on the machine "
        "skews the figures). Produced by `make bench-analytics` (`bench/analytics.py`).",
        "",
        f"{args.runs:,} finished runs of one owner, written straight into the store's tables "
        f"and spread over {DAYS} days: {len(TEMPLATES)} templates of 3 to 6 steps (9 step "
        "types), 0 to 2 gates; 92 % COMPLETED, 5 % FAILED, 3 % CANCELLED; step durations "
        "log-normal by type. Every run queued as migration 0011 queues an upgraded database's, "
        "then folded into the sums by the store. A server process on the database answers "
        f"GetAnalytics from a client over gRPC on loopback: {args.repeat} calls per window "
        "after two warm-up calls; ms per call.",
        "",
        "## GetAnalytics (target: under 200 ms)",
        "",
        "Each call reads `analytics_sums` through its primary key (owner, span_seconds, "
        "span_start, template_id, template_version, kind, subject): one range per span width "
        "the window needs (whole days, whole 6-hour spans, hours), never the runs. The sums "
        f"hold {results[kinds[0]]['sum_rows']:,} rows here, whatever the number of runs: their "
        "count grows with hours and templates.",
        "",
        "| window | runs counted | KB | " + " | ".join(
            f"{names[k]} median / p99" for k in kinds) + " |",
        "|---|---|---|" + "---|" * len(kinds),
    ]  # fmt: skip
    first = results[kinds[0]]["calls"]
    for name in first:
        cells = [f"{results[k]['calls'][name]['ms_median']:.1f} / "
                 f"{results[k]['calls'][name]['ms_p99']:.1f}" for k in kinds]  # fmt: skip
        lines.append(
            f"| {name} | {first[name]['runs']:,} | {first[name]['kb']:.1f} | "
            + " | ".join(cells) + " |"
        )  # fmt: skip
    lines += [
        "",
        "## The same figures without the sums (SQL over the window's runs)",
        "",
        "Counts by template and status and nearest-rank p50/p95/p99 of run durations per "
        "template (window functions on SQLite, `percentile_disc` on PostgreSQL), through the "
        '`ix_runs_ended` index; "and steps" adds the step durations per template and step '
        "(the step types would still need each template's body on top). Run in the benchmark's "
        f"process, not over gRPC: median of {args.scan_passes} passes (one for the steps), ms.",
        "",
        "| query | " + " | ".join(names[k] for k in kinds) + " |",
        "|---|" + "---|" * len(kinds),
    ]
    for name in results[kinds[0]]["scans"]:
        lines.append(
            f"| {name} | " + " | ".join(f"{results[k]['scans'][name]:,.0f}" for k in kinds) + " |"
        )
    lines += [
        "",
        "## Filling and folding",
        "",
        "| | " + " | ".join(names[k] for k in kinds) + " |",
        "|---|" + "---|" * len(kinds),
        "| fill (runs, steps, gates, queue) s | "
        + " | ".join(f"{results[k]['fill_s']:.0f}" for k in kinds) + " |",
        "| fold of the queue into the sums, s (runs/s) | "
        + " | ".join(f"{results[k]['fold_s']:.0f} ({results[k]['folded'] / results[k]['fold_s']:,.0f})"
                     for k in kinds) + " |",
        "| rows in analytics_sums (hours, 6 hours, days) | "
        + " | ".join(f"{results[k]['sum_rows']:,}" for k in kinds) + " |",
        "| database size, MB | " + " | ".join(f"{results[k]['db_mb']:,.0f}" for k in kinds) + " |",
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--scan-passes", type=int, default=3)
    p.add_argument("--no-postgres", action="store_true")
    p.add_argument("--output", type=Path, default=ROOT / "bench/results/analytics.md")
    args = p.parse_args()
    begin = time.perf_counter()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="sluice-bench-analytics-") as tmp:
        workdir = Path(tmp)
        results["sqlite"] = await one_database(
            "sqlite", f"sqlite+aiosqlite:///{workdir / 'sluice.db'}", workdir, args
        )
        print(json.dumps({"sqlite": results["sqlite"]}), flush=True)
        unavailable = None if args.no_postgres else await asyncio.to_thread(pgstat.available)
        if not args.no_postgres and unavailable is None:
            name = await asyncio.to_thread(pgstat.create_database)
            try:
                results["postgresql"] = await one_database(
                    "postgresql", pgstat.url(name, "postgresql+asyncpg"), workdir, args
                )
            finally:
                await asyncio.to_thread(pgstat.drop_database, name)
        elif unavailable:
            print(unavailable, flush=True)
    args.output.write_text(report(results, args, time.perf_counter() - begin))
    common.emit(results)


if __name__ == "__main__":
    asyncio.run(main())
