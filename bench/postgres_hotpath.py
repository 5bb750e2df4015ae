"""Sluice's PostgreSQL hot path against its own earlier build and DBOS, interleaved.

One Sluice server process per system and round, on a fresh PostgreSQL database
(sluice_bench_<random>, dropped after), with the no-op step of `bench/noop.py`; a workflow is
one `noop` step. This process is the client (gRPC on loopback):

- sequential: create + execute(wait=true), one workflow at a time (200): ms p50 / p99;
- throughput: `--clients` callers (64), each starting its next workflow (create +
  execute(wait)) as soon as its last one rested, 2,000 workflows in all: workflows/s and the
  latency of each.

For each part, PostgreSQL's own count of the transactions committed (and rolled back) in the
database (pg_stat_database, autovacuum's included), per workflow: read after a pause long
enough for the backends to hand in their statistics; and the CPU per workflow of the server,
of the database's backends and of this client. With `--statements` instead,
one (smaller) round with `log_statement = all` set on the database and the statements it logs
counted per workflow by kind (BEGIN, COMMIT, UPDATE, ...): PostgreSQL's own log, so whatever
the driver or library sends is counted (pg_stat_statements would need a restart of the
cluster others use).

Systems: this checkout, and each `--system NAME=PATH` (another checkout with its own .venv,
say a worktree of main: `git worktree add --detach ../base <commit>` then `make .venv/.installed`
there), and DBOS Transact with its system database on PostgreSQL when bench/.peers-venv exists
(`make bench-peers`). Each round runs every system once, in an order rotated every round.

    .venv/bin/python -m bench.postgres_hotpath --system main=../wt-base --rounds 3
    .venv/bin/python -m bench.postgres_hotpath --system main=../wt-base --statements

Figures go to bench/results/postgres_hotpath.md (and .json beside it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]

from bench import common
from sluice.client import WorkflowClient, WorkflowStatus

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PEERS_PYTHON = BENCH / ".peers-venv" / "bin" / "python"
RESULTS = BENCH / "results" / "postgres_hotpath.md"
ADMIN_URL = (
    os.environ.get("SLUICE_BENCH_POSTGRES") or "postgresql://postgres@127.0.0.1:5432/postgres"
)
PG_LOG = Path(os.environ.get("SLUICE_BENCH_PG_LOG", "/var/log/postgresql/postgresql-15-main.log"))
PREFIX = "sluice_bench_"
# A backend hands in its statistics at most once a second, and one that had to skip a hand-in
# because of that does it after 10 s idle (PGSTAT_IDLE_INTERVAL).
STATS_SETTLE_SECONDS = 11.0
WARMUP = 10
_SERVING = re.compile(r"serving on (127\.0\.0\.1:\d+)")
T = TypeVar("T")

ONE_STEP = {
    "id": "bench-one-step",
    "name": "one no-op step",
    "steps": [{"id": "a", "type": "noop"}],
}


# --- PostgreSQL -------------------------------------------------------------------------------


def _server_url(database: str, scheme: str = "postgresql") -> str:
    server = re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", ADMIN_URL).rpartition("/")[0]
    return f"{server}/{database}".replace("postgresql://", f"{scheme}://", 1)


async def _admin(work: Callable[[Any], Awaitable[T]]) -> T:
    conn = await asyncpg.connect(_server_url("postgres"), timeout=10)
    try:
        return await work(conn)
    finally:
        await conn.close()


async def create_database(statements: bool) -> str:
    name = f"{PREFIX}{uuid.uuid4().hex[:12]}"

    async def create(conn: Any) -> None:
        await conn.execute(f'CREATE DATABASE "{name}"')
        if statements:  # applies to every session opened from now on
            await conn.execute(f"ALTER DATABASE \"{name}\" SET log_statement = 'all'")

    await _admin(create)
    return name


async def drop_database(name: str) -> None:
    assert name.startswith(PREFIX), name  # never anything this script did not create
    await _admin(lambda conn: conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def transactions(name: str) -> tuple[int, int]:
    """(committed, rolled back) in database `name` so far, once the backends' counts are in."""
    await asyncio.sleep(STATS_SETTLE_SECONDS)
    row = await _admin(
        lambda conn: conn.fetchrow(
            "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = $1", name
        )
    )
    return int(row["xact_commit"]), int(row["xact_rollback"])


async def backends(name: str) -> list[int]:
    """The processes of the backends serving database `name` now."""
    rows = await _admin(
        lambda conn: conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", name)
    )
    return [int(r["pid"]) for r in rows]


def _stat(pid: int) -> tuple[float, int, float]:
    """(CPU seconds, parent pid, CPU seconds of reaped children) of a process."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (
        (int(fields[11]) + int(fields[12])) / ticks,
        int(fields[1]),
        (int(fields[13]) + int(fields[14])) / ticks,
    )


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    found = {}
    for pid in pids:
        try:
            found[pid] = _stat(pid)[0]
        except (OSError, ValueError, IndexError):
            continue  # exited
    return found


MARK = "bench-mark:"


async def mark(database: str, name: str) -> None:
    """A line in PostgreSQL's log that starts or ends a measured part (see StatementLog)."""
    conn = await asyncpg.connect(_server_url(database), timeout=10)
    try:
        await conn.execute(f"SELECT '{MARK}{name}'")
    finally:
        await conn.close()


class StatementLog:
    """What PostgreSQL logged for one database (log_statement = all) between the marks of each
    part (`mark`): statements by kind, and transactions as each backend ran them (a statement
    outside BEGIN ... COMMIT is a transaction of its own), with how many wrote (and so waited
    for their commit to be flushed)."""

    _ENTRY = re.compile(
        r"^\d{4}-\d\d-\d\d [\d:.]+ \w+ \[(\d+)\] \S+@(\S+) LOG:  (?:statement|execute [^:]*): "
    )
    _WRITES = re.compile(r"\b(INSERT|UPDATE|DELETE|pg_notify)\b", re.IGNORECASE)

    def __init__(self, database: str) -> None:
        self.database = database
        self.offset = PG_LOG.stat().st_size

    def _entries(self) -> list[tuple[int, str]]:
        with PG_LOG.open("rb") as log:
            log.seek(self.offset)
            text = log.read().decode(errors="replace")
        entries: list[tuple[int, str]] = []
        current: list[Any] | None = None
        for line in text.splitlines():
            match = self._ENTRY.match(line)
            if match:
                current = (
                    [int(match.group(1)), line[match.end() :]]
                    if match.group(2) == self.database
                    else None
                )
                if current is not None:
                    entries.append(current)  # type: ignore[arg-type]
            elif current is not None and not line[:4].isdigit():
                current[1] += "\n" + line
            else:
                current = None
        return [(pid, text) for pid, text in entries]

    def parts(self) -> dict[str, dict[str, Any]]:
        """By part name: statements by kind, commits, writing commits, rollbacks."""
        found: dict[str, dict[str, Any]] = {}
        part: dict[str, Any] | None = None
        open_: dict[int, bool] = {}  # pid -> whether its open transaction wrote
        for pid, text in self._entries():
            if MARK in text:
                name = text.split(MARK, 1)[1].split("'", 1)[0]
                if name.endswith("-start"):
                    part = found[name.removesuffix("-start")] = {
                        "kinds": Counter(), "commits": 0, "writes": 0, "rollbacks": 0,
                    }  # fmt: skip
                else:
                    part = None
                continue
            verb = (text.split(None, 1) or ["?"])[0].rstrip(";").upper()
            if verb == "SELECT" and "pg_notify" in text:
                verb = "NOTIFY"
            elif not verb:
                verb = "; (a pool's ping)"
            wrote = bool(self._WRITES.search(text))
            if part is not None:
                part["kinds"][verb] += 1
            if verb in ("BEGIN", "START"):
                open_[pid] = False
            elif verb in ("COMMIT", "END") and pid in open_:
                if part is not None:
                    part["commits"] += 1
                    part["writes"] += open_.pop(pid)
                else:
                    open_.pop(pid)
            elif verb == "ROLLBACK":
                open_.pop(pid, None)
                if part is not None:
                    part["rollbacks"] += 1
            elif pid in open_:
                open_[pid] = open_[pid] or wrote
            elif part is not None:
                part["commits"] += 1
                part["writes"] += wrote
        return found


def statement_figures(counted: dict[str, Any], prefix: str, workflows: int) -> dict[str, Any]:
    kinds: Counter[str] = counted["kinds"]
    return {
        f"{prefix}_statements_per_wf": {k: v / workflows for k, v in sorted(kinds.items())},
        f"{prefix}_statements_total_per_wf": sum(kinds.values()) / workflows,
        f"{prefix}_log_commits_per_wf": counted["commits"] / workflows,
        f"{prefix}_log_write_commits_per_wf": counted["writes"] / workflows,
        f"{prefix}_log_rollbacks_per_wf": counted["rollbacks"] / workflows,
    }


# --- a Sluice server --------------------------------------------------------------------------


class SluiceProcess:
    def __init__(self, checkout: Path, database: str, workdir: Path) -> None:
        self.checkout = checkout
        self.database = database
        self.log = workdir / f"{database}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.address = ""

    def start(self, timeout: float = 120) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": str(self.checkout),
            "SLUICE_LISTEN": "127.0.0.1:0",
            "SLUICE_DATABASE_URL": _server_url(self.database, "postgresql+asyncpg"),
            "SLUICE_PLUGINS": "bench.noop:register",
        }
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [str(self.checkout / ".venv" / "bin" / "python"), "-m", "sluice.server"],
                env=env,
                cwd=self.checkout,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if match := _SERVING.search(self.log.read_text(errors="replace")):
                self.address = match.group(1)
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log.read_text(errors='replace')}")
            time.sleep(0.02)
        raise RuntimeError(f"server not serving after {timeout}s")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def run_one(client: WorkflowClient, template: str) -> None:
    run = await client.create_workflow(template)
    done = await client.execute_workflow(run.id, wait=True)
    if done.status != WorkflowStatus.WORKFLOW_STATUS_COMPLETED:
        raise RuntimeError(f"run {run.id} ended {WorkflowStatus.Name(done.status)}: {done.error}")


def _spent(before: dict[int, float]) -> float:
    """CPU seconds the backends alive at `before` spent since (a backend that exited
    meanwhile is left out: the servers keep their connections)."""
    now = cpu_seconds(list(before))
    return sum(now[pid] - cpu for pid, cpu in before.items() if pid in now)


class Part:
    """What one measured part cost: wall time, transactions, CPU; with `marks`, its start and
    end marked in PostgreSQL's log (for StatementLog)."""

    def __init__(self, name: str, database: str, server_pid: int, *, marks: bool) -> None:
        self.name, self.database, self.server_pid, self.marks = name, database, server_pid, marks

    async def __aenter__(self) -> Part:
        self.xact = await transactions(self.database)
        if self.marks:
            await mark(self.database, f"{self.name}-start")
        self.cpu = (
            common.proc_cpu_seconds(self.server_pid),
            cpu_seconds(await backends(self.database)),
            time.process_time(),
        )
        self.begin = time.perf_counter()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.begin
        self.cpu_used = (
            common.proc_cpu_seconds(self.server_pid) - self.cpu[0],
            _spent(self.cpu[1]),
            time.process_time() - self.cpu[2],
        )
        if self.marks:
            await mark(self.database, f"{self.name}-end")
        after = await transactions(self.database)
        self.commits, self.rollbacks = after[0] - self.xact[0], after[1] - self.xact[1]

    def figures(self, workflows: int) -> dict[str, Any]:
        server, pg, client = self.cpu_used
        prefix = self.name
        return {
            f"{prefix}_commits_per_wf": self.commits / workflows,
            f"{prefix}_rollbacks_per_wf": self.rollbacks / workflows,
            f"{prefix}_cpu_ms_per_wf": {
                "server": 1000 * server / workflows,
                "database backends": 1000 * pg / workflows,
                "client": 1000 * client / workflows,
            },
        }


async def bench_sluice(checkout: Path, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    database = await create_database(args.statements)
    log = StatementLog(database) if args.statements else None
    server = SluiceProcess(checkout, database, workdir)
    try:
        server.start()
        result: dict[str, Any] = {}
        async with WorkflowClient(server.address) as client:
            template = (await client.create_template(ONE_STEP)).id
            for _ in range(WARMUP):
                await run_one(client, template)

            took: list[float] = []
            async with Part("seq", database, server.pid, marks=log is not None) as part:
                for _ in range(args.sequential):
                    begin = time.perf_counter()
                    await run_one(client, template)
                    took.append(1000 * (time.perf_counter() - begin))
            result |= {
                "seq_ms_p50": common.percentile(took, 50),
                "seq_ms_p99": common.percentile(took, 99),
                "seq_ms_mean": statistics.fmean(took),
                **part.figures(args.sequential),
            }

            left = args.throughput
            latencies: list[float] = []

            async def caller() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    begin = time.perf_counter()
                    await run_one(client, template)
                    latencies.append(1000 * (time.perf_counter() - begin))

            async with Part("tput", database, server.pid, marks=log is not None) as part:
                await asyncio.gather(*(caller() for _ in range(args.clients)))
            result |= {
                "tput_wf_per_s": args.throughput / part.wall,
                "tput_ms_p50": common.percentile(latencies, 50),
                "tput_ms_p99": common.percentile(latencies, 99),
                **part.figures(args.throughput),
            }
        if log is not None:
            result |= _statements(log, args)
        return result
    finally:
        server.stop()
        await drop_database(database)


def _statements(log: StatementLog, args: argparse.Namespace) -> dict[str, Any]:
    parts = log.parts()
    out: dict[str, Any] = {}
    for name, workflows in (("seq", args.sequential), ("tput", args.throughput)):
        if name in parts:
            out |= statement_figures(parts[name], name, workflows)
    return out


async def bench_dbos(args: argparse.Namespace) -> dict[str, Any]:
    database = await create_database(args.statements)
    log = StatementLog(database) if args.statements else None
    try:
        command = [
            str(PEERS_PYTHON), "-m", "bench.peers.dbos_one_step",
            "--database-url", _server_url(database), "--database", database,
            "--admin-url", _server_url("postgres"),
            "--sequential", str(args.sequential), "--throughput", str(args.throughput),
            "--clients", str(args.clients),
            *(["--marks"] if log is not None else []),
        ]  # fmt: skip
        done = await asyncio.to_thread(
            subprocess.run, command, cwd=ROOT, capture_output=True, text=True, timeout=1800
        )
        if done.returncode != 0:
            raise RuntimeError(f"DBOS failed:\n{done.stderr[-3000:]}")
        value: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        if log is not None:
            value |= _statements(log, args)
        return value
    finally:
        await drop_database(database)


# --- the report -------------------------------------------------------------------------------

_FIGURES = (
    ("seq_ms_p50", "sequential ms p50", "{:.1f}"),
    ("seq_ms_p99", "sequential ms p99", "{:.1f}"),
    ("tput_wf_per_s", "throughput workflows/s", "{:.1f}"),
    ("tput_ms_p50", "throughput latency ms p50", "{:.0f}"),
    ("tput_ms_p99", "throughput latency ms p99", "{:.0f}"),
    ("seq_commits_per_wf", "sequential: PostgreSQL commits per workflow", "{:.2f}"),
    ("seq_rollbacks_per_wf", "sequential: PostgreSQL rollbacks per workflow", "{:.2f}"),
    ("tput_commits_per_wf", "throughput: PostgreSQL commits per workflow", "{:.2f}"),
    ("tput_rollbacks_per_wf", "throughput: PostgreSQL rollbacks per workflow", "{:.2f}"),
    ("seq_statements_total_per_wf", "sequential: statements per workflow (log)", "{:.2f}"),
    ("seq_log_commits_per_wf", "sequential: transactions per workflow (log)", "{:.2f}"),
    ("seq_log_write_commits_per_wf", "sequential: of which wrote (log)", "{:.2f}"),
    ("tput_statements_total_per_wf", "throughput: statements per workflow (log)", "{:.2f}"),
    ("tput_log_commits_per_wf", "throughput: transactions per workflow (log)", "{:.2f}"),
    ("tput_log_write_commits_per_wf", "throughput: of which wrote (log)", "{:.2f}"),
)


def _median(rounds: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rounds if key in r]
    return statistics.median(values) if values else None


def report(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> str:
    systems = list(results)
    lines = [
        "# PostgreSQL hot path",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores; Python "
        f"{platform.python_version()}; load average {os.getloadavg()[0]:.2f} at the end. "
        f"One-step workflows (no-op); sequential {args.sequential}, throughput {args.throughput} "
        f"with {args.clients} callers; {args.rounds} round(s), systems interleaved (order "
        "rotated each round); medians of the rounds.",
        "",
        "| figure | " + " | ".join(systems) + " |",
        "|---|" + "---|" * len(systems),
    ]
    for key, label, fmt in _FIGURES:
        cells = [_median(results[s], key) for s in systems]
        if all(c is None for c in cells):
            continue
        lines.append(
            f"| {label} | " + " | ".join("-" if c is None else fmt.format(c) for c in cells) + " |"
        )
    for key, label in (("seq_ms_p50", "sequential ms p50"), ("tput_wf_per_s", "workflows/s")):
        by_round = {s: [f"{r[key]:.1f}" for r in results[s] if key in r] for s in systems}
        lines.append(
            f"| {label}, by round | " + " | ".join(", ".join(by_round[s]) for s in systems) + " |"
        )
    if "dbos" in results:
        lines += ["", "Ratios to DBOS on PostgreSQL (medians):", ""]
        for s in systems:
            if s == "dbos":
                continue
            seq = (_median(results[s], "seq_ms_p50") or 0) / (
                _median(results["dbos"], "seq_ms_p50") or 1
            )
            tput = (_median(results[s], "tput_wf_per_s") or 0) / (
                _median(results["dbos"], "tput_wf_per_s") or 1
            )
            lines.append(
                f"- {s}: sequential ms x{seq:.2f} of DBOS's; workflows/s x{tput:.2f} of DBOS's"
            )
    for s in systems:
        for part in ("seq", "tput"):
            kinds = [r.get(f"{part}_statements_per_wf") for r in results[s]]
            kinds = [k for k in kinds if k]
            if kinds:
                text = ", ".join(f"{k} {v:.2f}" for k, v in kinds[0].items())
                lines.append(f"- {s}, {part}: statements per workflow by kind: {text}")
            cpu = [r.get(f"{part}_cpu_ms_per_wf") for r in results[s]]
            cpu = [c for c in cpu if c]
            if cpu:
                text = ", ".join(f"{k} {statistics.median(c[k] for c in cpu):.2f}" for k in cpu[0])
                lines.append(f"- {s}, {part}: CPU ms per workflow (median): {text}")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--system", action="append", default=[], help="NAME=PATH of another checkout")
    p.add_argument("--name", default="this", help="this checkout's name in the table")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--sequential", type=int, default=200)
    p.add_argument("--throughput", type=int, default=2000)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--no-dbos", action="store_true")
    p.add_argument("--only", default="", help="comma-separated system names to run")
    p.add_argument(
        "--statements", action="store_true",
        help="count statements in PostgreSQL's log (log_statement = all; timings not comparable)",
    )  # fmt: skip
    args = p.parse_args()
    systems: dict[str, Path | None] = {args.name: ROOT}
    for spec in args.system:
        name, _, path = spec.partition("=")
        systems[name] = Path(path).resolve()
    if not args.no_dbos and PEERS_PYTHON.exists():
        systems["dbos"] = None
    if args.only:
        systems = {k: v for k, v in systems.items() if k in args.only.split(",")}
    if args.statements and not os.access(PG_LOG, os.R_OK):
        sys.exit(f"cannot read PostgreSQL's log {PG_LOG} (SLUICE_BENCH_PG_LOG)")
    asyncio.run(run(args, systems))


async def run(args: argparse.Namespace, systems: dict[str, Path | None]) -> None:
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in systems}
    order = list(systems)
    with tempfile.TemporaryDirectory(prefix="sluice-bench-pg-") as tmp:
        for round_ in range(args.rounds):
            shift = round_ % len(order)
            for name in order[shift:] + order[:shift]:
                checkout = systems[name]
                for attempt in (1, 2):
                    print(f"round {round_ + 1}: {name} ...", file=sys.stderr, flush=True)
                    try:
                        if checkout is None:
                            figures = await bench_dbos(args)
                        else:
                            figures = await bench_sluice(checkout, args, Path(tmp))
                        break
                    except Exception as exc:  # say, PostgreSQL restarted under the run
                        if attempt == 2:
                            raise
                        print(f"   failed, once more: {exc!r}", file=sys.stderr, flush=True)
                print(f"   {json.dumps(figures)}", file=sys.stderr, flush=True)
                results[name].append(figures)
    text = report(results, args)
    print(text)
    if not args.statements:
        RESULTS.write_text(text)
        RESULTS.with_suffix(".json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
