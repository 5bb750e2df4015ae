"""The benchmark orchestrator (`make bench`).

Runs each scenario in its own client process against its own Sluice server process (a fresh
SQLite file in a temporary directory, or for the pg- scenarios a fresh PostgreSQL database,
default settings unless the scenario needs a limit raised), then the floor and, when
bench/.peers-venv/ exists, the peers on the same workload. Prints a Markdown table, writes it
to bench/results/latest.md, and exits 1 if any Sluice scenario or the floor errored (a peer
that cannot run, or PostgreSQL when it is not reachable, is reported as "not available").

    .venv/bin/python -m bench.run            # full run (several minutes)
    .venv/bin/python -m bench.run --quick    # smoke run, sizes x0.1 (SLUICE_BENCH_SCALE=0.1)
    .venv/bin/python -m bench.run --only sequential,floor --no-peers
    .venv/bin/python -m bench.run --only postgres --rounds 3   # SQLite, PostgreSQL, DBOS-PG
    .venv/bin/python -m bench.run --only replicas --rounds 3   # several servers, one database
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import common, disk, pgreport, pgstat, replicas_report
from bench.rounds import merge
from bench.scenarios.remote import IN_FLIGHT_TASKS
from bench.server import ROOT, Server

BENCH = Path(__file__).resolve().parent
PEERS_PYTHON = BENCH / ".peers-venv" / "bin" / "python"
RESULTS = BENCH / "results" / "latest.md"
TIMEOUT = 900.0

# Limits raised where a scenario needs more than the defaults allow (1,000 active runs per
# user; 256 step attempts at once): the diamond-5 scenarios run with default settings.
# The steady watch scenario's step duration (mean; +/- 50 %): the runs emit about 10 events/s
# each, a load the server keeps up with, so latency is delivery time rather than backlog.
STEADY_STEP_SECONDS = 0.2

MANY_RUNS = {"max_active_runs_per_user": "100000", "max_concurrent_steps": "2000"}
# Leases for the failover scenario: a dead server's runs move within seconds.
# The failover servers log their lease calls' timing (bench/leaselog.py).
LEASE_LOG = {"plugin": "bench.noop:register,bench.leaselog:register"}
FAST_LEASES = {"lease_ttl_seconds": "5", "lease_renew_seconds": "1", **LEASE_LOG}
# The webhook scenario's receiver listens on a port of its choosing on 127.0.0.1; the old
# client it is compared with comes in as a plugin.
WEBHOOKS = {
    "webhook_allow": "127.0.0.1",
    "plugin": "bench.noop:register,bench.legacy_webhook:register",
}


@dataclass(frozen=True)
class Scenario:
    name: str
    module: str
    args: tuple[str, ...] = ()
    server: dict[str, str] | None = field(default_factory=dict)  # None: no server to start
    peer: bool = False
    postgres: bool = False  # on a fresh PostgreSQL database (the server's or the peer's)
    replicas: int = 1  # servers on the one database
    kills: bool = False  # the client kills a server: its exit is no error
    logs: bool = False  # the client reads the servers' logs (--logs)
    quick: bool = True  # run with --quick too (False: only when named in --only)
    count_sql: bool = False  # the servers count their statements (always when `measure`)
    database_url: bool = False  # the client is told the database's URL (--database-url)
    # The database's work (PostgreSQL's counts, the server's statements) and bytes per run.
    measure: bool = False
    repeat: bool = False  # run in every round (--rounds): the comparisons to interleave


SCENARIOS = (
    Scenario("floor", "bench.floor", server=None),
    Scenario("sequential", "bench.scenarios.sequential", repeat=True),
    Scenario("pg-sequential", "bench.scenarios.sequential", postgres=True, repeat=True),
    Scenario("throughput", "bench.scenarios.throughput", measure=True, repeat=True),
    Scenario(
        "pg-throughput", "bench.scenarios.throughput", postgres=True, measure=True, repeat=True
    ),
    Scenario(
        "dbos-pg",
        "bench.peers.dbos_diamond",
        server=None,
        peer=True,
        postgres=True,
        measure=True,
        repeat=True,
    ),
    Scenario("watch", "bench.scenarios.watch"),
    Scenario("pg-watch", "bench.scenarios.watch", postgres=True),
    # Three servers on one database: kill -9 one under a steady stream of runs (leases of 5 s
    # renewed every second, and the defaults, 30 s and 5 s), and watchers on every server of
    # runs one of them drives.
    Scenario(
        "pg-failover",
        "bench.scenarios.failover",
        ("--lease-ttl", "5", "--lease-renew", "1"),
        FAST_LEASES,
        postgres=True,
        replicas=3,
        kills=True,
        logs=True,
        repeat=True,
    ),
    Scenario(
        "pg-failover-30s",
        "bench.scenarios.failover",
        ("--lease-ttl", "30", "--lease-renew", "5"),
        LEASE_LOG,
        postgres=True,
        replicas=3,
        kills=True,
        logs=True,
        quick=False,
    ),
    # The same at a third of the load: 10 runs (about 35 commits/s on the driving server).
    Scenario(
        "pg-watch-replicas-10",
        "bench.scenarios.replica_watch",
        ("--runs", "10"),
        postgres=True,
        replicas=3,
        count_sql=True,
        database_url=True,
        repeat=True,
        quick=False,
    ),
    Scenario(
        "pg-watch-replicas",
        "bench.scenarios.replica_watch",
        postgres=True,
        replicas=3,
        count_sql=True,
        database_url=True,
        repeat=True,
    ),
    Scenario("watch-steady", "bench.scenarios.watch", ("--step-seconds", str(STEADY_STEP_SECONDS))),
    Scenario("watchers", "bench.scenarios.watchers", server=MANY_RUNS, repeat=True),
    Scenario(
        "pg-watchers", "bench.scenarios.watchers", server=MANY_RUNS, postgres=True, repeat=True
    ),
    Scenario("watchers-floor", "bench.scenarios.fanout_floor", server=None),
    Scenario("memory-paused", "bench.scenarios.memory", ("--kind", "paused"), MANY_RUNS),
    Scenario("memory-active", "bench.scenarios.memory", ("--kind", "active"), MANY_RUNS),
    Scenario("timers", "bench.scenarios.timers", server=MANY_RUNS),
    Scenario("recovery", "bench.scenarios.recovery", server=None),
    Scenario("webhooks", "bench.scenarios.webhooks", server=WEBHOOKS),
    Scenario("lists", "bench.scenarios.lists", server=None),
    Scenario("dbos", "bench.peers.dbos_diamond", server=None, peer=True, repeat=True),
    Scenario("temporal", "bench.peers.temporal_diamond", server=None, peer=True),
    # Steps served by a worker process (8 tasks in flight) beside built-in steps, and Temporal's
    # activities with the same limit on its worker.
    Scenario("remote", "bench.scenarios.remote"),
    Scenario(
        "temporal-remote",
        "bench.peers.temporal_diamond",
        ("--activities-in-flight", "8", "--in-flight", "200"),
        server=None,
        peer=True,
    ),
)
# --only postgres: Sluice on PostgreSQL beside Sluice on SQLite and DBOS on PostgreSQL, and
# several servers on one database; --only replicas: the latter alone.
REPLICAS_GROUP = ("pg-throughput", "pg-failover", "pg-failover-30s", "pg-watch-replicas",
                  "pg-watch-replicas-10")  # fmt: skip
POSTGRES_GROUP = ("sequential", "pg-sequential", "throughput", "pg-throughput", "dbos-pg",
                  "watch", "pg-watch", "watchers", "pg-watchers", *REPLICAS_GROUP)  # fmt: skip


def replicas(counts: Sequence[int]) -> list[Scenario]:
    """pg-throughput with N servers on one database, for each N > 1 in `counts` (N = 1 is
    pg-throughput itself): pg-throughput-x2, -x3, ..."""
    base = next(sc for sc in SCENARIOS if sc.name == "pg-throughput")
    return [replace(base, name=f"pg-throughput-x{n}", replicas=n) for n in counts if n > 1]


def choose(
    only: set[str], no_peers: bool, replica_counts: Sequence[int], quick: bool = False
) -> list[Scenario]:
    extra = replicas(replica_counts)
    names = set(only)
    if "postgres" in names:
        names |= set(POSTGRES_GROUP)
    if "replicas" in names:
        names |= set(REPLICAS_GROUP)
    if "pg-throughput" in names:  # with --replicas, its N-server versions go with it
        names |= {sc.name for sc in extra}
    everything: list[Scenario] = []
    for sc in SCENARIOS:
        everything.append(sc)
        if sc.name == "pg-throughput":
            everything += extra
    return [
        sc
        for sc in everything
        if (not names or sc.name in names)
        and not (no_peers and sc.peer)
        and (sc.quick or not quick or sc.name in only)
    ]


def run_scenario(scenario: Scenario, scale: float) -> dict[str, Any]:
    """Run one scenario; its result, or {"error": ...} (peers, and PostgreSQL when it cannot be
    reached: {"unavailable": ...})."""
    python = sys.executable
    if scenario.peer:
        if not PEERS_PYTHON.exists():
            return {"unavailable": "bench/.peers-venv/ missing (run `make bench-peers`)"}
        python = str(PEERS_PYTHON)
    if scenario.postgres and (reason := pgstat.available()):
        return {"unavailable": reason}
    with tempfile.TemporaryDirectory(prefix=f"sluice-bench-{scenario.name}-") as tmp:
        servers: list[Server] = []
        database = ""
        command = [python, "-m", scenario.module, "--scale", str(scale), *scenario.args]
        try:
            if scenario.postgres:
                database = pgstat.create_database()
                command += _postgres_args(scenario, database)
            if scenario.server is not None:
                servers = _start_servers(scenario, Path(tmp), database)
                command += ["--address", ",".join(s.address for s in servers),
                            "--pid", ",".join(str(s.pid) for s in servers)]  # fmt: skip
                if (scenario.measure or scenario.count_sql) and database:
                    # Each server's statement counts, read before and after the measured part.
                    sockets = (s.settings["bench_sql_counts"] for s in servers)
                    command += ["--sql-counts", ",".join(sockets)]
                if scenario.logs:
                    command += ["--logs", ",".join(str(s.log) for s in servers)]
            elif scenario.name in ("recovery", "lists"):
                command += ["--workdir", tmp]
            done = subprocess.run(
                command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )  # fmt: skip
            result = _last_json(done.stdout)
            exited = [s for s in servers if s.process and s.process.poll() is not None]
            if scenario.kills:  # the client's kill -9 is part of the scenario
                exited = [s for s in exited if s.process and s.process.returncode != -9]
            if done.returncode != 0 or result is None or "error" in result:
                reason = (result or {}).get("error") or _tail(done.stderr) or "no output"
                result = {"error": f"exit {done.returncode}: {reason}"}
            elif exited:
                result = {"error": f"server exited: {_tail(exited[0].log.read_text())}"}
            elif scenario.measure:
                for server in servers:
                    server.stop()  # a clean stop: SQLite checkpoints its log into the file
                result.update(_store_figures(scenario, servers, database))
        except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
            result = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            for server in servers:
                server.kill()
            if database:
                _drop(database)
    if scenario.peer and "error" in result:
        return {"unavailable": result["error"]}
    return result


def _postgres_args(scenario: Scenario, database: str) -> list[str]:
    """What a PostgreSQL scenario's client is told: a peer, its database; a measured one,
    PostgreSQL's process (for its CPU) and the database (to see others' activity)."""
    args = (
        ["--database-url", pgstat.url(database)] if scenario.peer or scenario.database_url else []
    )
    if scenario.measure:
        args += ["--pg-pid", str(pgstat.postmaster_pid())]
        if not scenario.peer:
            args += ["--pg-database", database]
    return args


def _start_servers(scenario: Scenario, workdir: Path, database: str) -> list[Server]:
    settings = dict(scenario.server or {})
    plugin = settings.pop("plugin", "bench.noop:register")
    count_sql = (scenario.measure or scenario.count_sql) and bool(database)
    servers = []
    for i in range(scenario.replicas):
        if count_sql:  # SLUICE_BENCH_SQL_COUNTS: where the server's plugin answers
            settings["bench_sql_counts"] = str(workdir / f"sql-{i}.sock")
        servers.append(
            Server(
                workdir,
                name=f"server{i}",
                database_url=pgstat.url(database) if database else None,
                plugin=plugin + (",bench.sqlcount:register" if count_sql else ""),
                **settings,
            )
        )
    try:
        for server in servers:
            server.spawn()
        for server in servers:
            server.ready()
    except BaseException:
        for server in servers:
            server.kill()
        raise
    return servers


def _store_figures(scenario: Scenario, servers: list[Server], database: str) -> dict[str, Any]:
    """After a measured scenario, its clients and servers gone: bytes on disk per stored run
    and, on PostgreSQL, what PostgreSQL counted in the database over its whole life (schema,
    warm-up and measured runs: divided by the runs it holds)."""
    if not database:
        return {"store": disk.sqlite_usage(servers[0].database)}
    pgstat.wait_idle(database)
    usage = pgstat.usage(database)
    runs = pgstat.count(database, "dbos.workflow_status" if scenario.peer else "runs")
    per_run = (lambda n: n / runs) if runs else (lambda n: 0.0)
    return {
        "store": disk.postgres_usage(usage.tables, runs, pgstat.compact_sizes(database)),
        "pg_per_run": {
            "commits": per_run(usage.commits),
            "rollbacks": per_run(usage.rollbacks),
            "inserted": per_run(usage.total("inserted")),
            "updated": per_run(usage.total("updated")),
            "hot_updated": per_run(usage.total("hot_updated")),
            "deleted": per_run(usage.total("deleted")),
        },
        "pg_tables": usage.tables,
    }


def _drop(database: str) -> None:
    try:
        pgstat.drop_database(database)
    except Exception as exc:  # reported, not raised: the figures are already taken
        print(f"   could not drop database {database}: {exc}", file=sys.stderr, flush=True)


def _last_json(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


# --- the table ------------------------------------------------------------------------------


def _n(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _cpu(result: dict[str, Any]) -> str:
    parts = []
    if result.get("client_cpu_pct") is not None:
        parts.append(f"client CPU {result['client_cpu_pct']:.0f}%")
    if result.get("server_cpu_pct") is not None:
        parts.append(f"server CPU {result['server_cpu_pct']:.0f}%")
    return ", ".join(parts) + " (of one core)" if parts else ""


def render(
    results: dict[str, dict[str, Any]],
    scale: float,
    seconds: float,
    load: tuple[float, float],
    revision: str,
    rounds: dict[str, list[dict[str, Any]]] | None = None,
    *,
    at: str = "",
) -> str:
    rounds = rounds or {name: [result] for name, result in results.items()}
    floor = results.get("floor", {})
    ok = "error" not in floor and bool(floor)
    echo1, echo64 = floor.get("echo_1_per_s"), floor.get("echo_64_per_s")
    full, orm = floor.get("sqlite_full_per_s"), floor.get("sqlalchemy_full_per_s")

    def per_wf(rate_wf: float | None, floor_rate: float | None) -> str:
        """How many floor operations one workflow costs: floor ops/s ÷ workflows/s."""
        if not ok or not rate_wf or not floor_rate:
            return "-"
        return f"{floor_rate / rate_wf:,.1f}"

    out = [
        "# Sluice benchmark",
        "",
        f"{at or f'{datetime.now(UTC):%Y-%m-%d %H:%M}'} UTC; {os.cpu_count()} cores ({_cpu_model()}); "
        f"Python {platform.python_version()}; Sluice at {revision}; scale {scale:g}; "
        f"took {seconds:.0f} s; "
        f"load average {load[0]:.2f} at start, {load[1]:.2f} at end (other work on the machine "
        "skews the figures). "
        "Each scenario: a fresh server process (SQLite file store, WAL, synchronous=FULL; "
        "the pg- scenarios: a fresh PostgreSQL database) and a separate client process over "
        "gRPC on loopback. Workload diamond-5: five no-op steps a -> (b, c) -> d -> e, a "
        "registered template, every transition committed."
        + (
            f" The compared scenarios ran {max(len(r) for r in rounds.values())} rounds, "
            "interleaved; each figure is the median."
            if max((len(r) for r in rounds.values()), default=1) > 1
            else ""
        ),
        "",
        "## Sluice",
        "",
        "| scenario | figure | value | floor ops per workflow: echo / raw commit / SQLAlchemy commit | notes |",
        "|---|---|---|---|---|",
    ]
    err = [(name, r["error"]) for name, r in results.items() if "error" in r]
    sluice_rows = len(out)

    s = results.get("sequential", {})
    if "error" in s:
        out.append(f"| sequential | | **error** | | {s['error']} |")
    elif s:
        rate = 1000 / s["ms_median"]
        out.append(
            f"| sequential ({s['workflows']} x create + execute(wait)) | ms per workflow, median / p99 "
            f"| {s['ms_median']:.1f} / {s['ms_p99']:.1f} "
            f"| {per_wf(rate, echo1)} / {per_wf(rate, full)} / {per_wf(rate, orm)} "
            f"| {s['events_per_workflow']} events per run; {_cpu(s)} |"
        )
    t = results.get("throughput", {})
    if "error" in t:
        out.append(f"| throughput | | **error** | | {t['error']} |")
    elif t:
        out.append(
            f"| throughput ({t['workflows']} workflows, {t['in_flight']} in flight) "
            f"| workflows/s; steps/s | {t['workflows_per_s']:.1f}; {t['steps_per_s']:.0f} "
            f"| {per_wf(t['workflows_per_s'], echo64)} / {per_wf(t['workflows_per_s'], full)} "
            f"/ {per_wf(t['workflows_per_s'], orm)} "
            f"| latency p50 {t['latency_ms_p50']:.0f} ms, p99 {t['latency_ms_p99']:.0f} ms; {_cpu(t)} |"
        )
    for key, kind in (
        ("watch", "no-op steps: the runs outpace delivery"),
        ("watch-steady", f"steps of {STEADY_STEP_SECONDS * 1000:.0f} ms +/- 50 %"),
    ):
        w = results.get(key, {})
        if "error" in w:
            out.append(f"| watch fan-out ({kind}) | | **error** | | {w['error']} |")
            continue
        if not w:
            continue
        ratio = (
            f"{w['events_per_s'] / echo64:.2f} x echo calls/s (64 in flight)"
            if ok and echo64
            else "-"
        )
        out.append(
            f"| watch fan-out ({w['watchers']} streams over {w['runs']} running runs, {kind}) "
            f"| events/s delivered; latency p50 / p99 "
            f"| {w['events_per_s']:,.0f}; {w['latency_ms_p50']:.0f} / {w['latency_ms_p99']:.0f} ms "
            f"| {ratio} | {w['events_delivered']:,} events; latency from the event's server "
            f"time (stamped just before its commit) to the client; {_cpu(w)} |"
        )
    out += _watchers(results.get("watchers", {}), results.get("watchers-floor", {}))
    out += _watchers(results.get("pg-watchers", {}), {}, store="PostgreSQL")
    for key, label in (("memory-paused", "paused"), ("memory-active", "active")):
        m = results.get(key, {})
        if "error" in m:
            out.append(f"| memory ({label}) | | **error** | | {m['error']} |")
        elif m:
            out.append(
                f"| memory ({m['runs']:,} + {m['runs']:,} {label} runs) "
                f"| server RSS per run, second batch (first batch) "
                f"| {m['kb_per_run']:.1f} KB ({m['kb_per_run_first']:.1f} KB) "
                f"| | VmRSS {m['rss_before_mb']:.0f} -> {m['rss_first_mb']:.0f} -> "
                f"{m['rss_after_mb']:.0f} MB; the first batch also pays the server's one-off "
                f"allocations (SQLite page caches, gRPC buffers); a batch took "
                f"{m['setup_seconds']:.0f} s |"
            )
    t = results.get("timers", {})
    if "error" in t:
        out.append(f"| timers | | **error** | | {t['error']} |")
    elif t:
        out.append(
            f"| timers ({t['runs']:,} runs asleep in a wait step, all due in the same second) "
            f"| server RSS per sleeping run, second half (first half); wake lateness p50 / p99 "
            f"| {t['kb_per_run']:.1f} KB ({t['kb_per_run_first']:.1f} KB); "
            f"{t['woke_late_ms_p50']:.0f} / {t['woke_late_ms_p99']:.0f} ms "
            f"| | lateness of the wait step's completion (its `wokeAt` - `wakeAt`), worst "
            f"{t['woke_late_ms_max']:.0f} ms; of the run's end committed, p50 / p99 / worst "
            f"{t['ended_late_ms_p50']:.0f} / {t['ended_late_ms_p99']:.0f} / "
            f"{t['ended_late_ms_max']:.0f} ms; VmRSS {t['rss_before_mb']:.0f} -> "
            f"{t['rss_first_mb']:.0f} -> {t['rss_after_mb']:.0f} MB |"
        )
    r = results.get("recovery", {})
    if "error" in r:
        out.append(f"| recovery | | **error** | | {r['error']} |")
    elif r:
        out.append(
            f"| recovery ({r['runs']:,} runs with a step in flight, SIGKILL, restart) "
            f"| s from process start to all running again "
            f"| {r['all_running_after_s']:.2f} | | serving (recovery done) after "
            f"{r['serving_after_s']:.2f} s |"
        )

    out += _webhooks(results.get("webhooks", {}))
    if len(out) == sluice_rows:  # --only naming none of its scenarios: no empty table
        del out[sluice_rows - 5 :]
    out += _lists(results.get("lists", {}))
    if floor:  # not with --only naming other scenarios
        out += ["", "## Floor (same run, same machine)", ""]
    if "error" in floor:
        out.append(f"**error**: {floor['error']}")
    elif floor:
        out += [
            "| floor | value |",
            "|---|---|",
            f"| grpc.aio unary echo on loopback, 1 in flight | {_n(echo1)} calls/s |",
            f"| grpc.aio unary echo on loopback, 64 in flight | {_n(echo64)} calls/s |",
            f"| sqlite3 UPDATE + INSERT commit, WAL, synchronous=FULL | {_n(full)} commits/s |",
            f"| sqlite3 UPDATE + INSERT commit, WAL, synchronous=NORMAL | {_n(floor.get('sqlite_normal_per_s'))} commits/s |",
            f"| SQLAlchemy async + aiosqlite, same commit, WAL, FULL | {_n(orm)} commits/s |",
            "",
            "Floor ops per workflow = floor rate / Sluice workflow rate: sequential against the "
            "1-in-flight echo, throughput against the 64-in-flight echo.",
        ]

    out += _peers(results, s, t)
    out += _remote(results.get("remote", {}), results.get("temporal-remote", {}))
    out += pgreport.comparison(results, rounds)
    out += pgreport.database_work(results)
    out += pgreport.bytes_per_run(results)
    out += replicas_report.throughput(results, rounds)
    out += replicas_report.failover(results, rounds)
    out += replicas_report.watch(results, rounds)
    if err:
        out += ["", "## Errors", "", *[f"- {name}: {text}" for name, text in err]]
    return "\n".join(out) + "\n"


def _remote(r: dict[str, Any], temporal: dict[str, Any]) -> list[str]:
    """Steps served by a worker process beside built-in ones (and Temporal's activities)."""
    if not r:
        return []
    if "error" in r:
        return ["", "## Remote steps (workers)", "", f"**error**: {r['error']}"]
    capacity = r["remote_server_cpu_ms"] / r["builtin_server_cpu_ms"]
    cost = r["remote_same_rate_cpu_ms"] / r["builtin_same_rate_cpu_ms"]
    slower = r["builtin_workflows_per_s"] / r["remote_workflows_per_s"]
    out = [
        "",
        "## Remote steps (workers)",
        "",
        f"Diamond-5 with every step a `task` served by one worker process holding "
        f"{IN_FLIGHT_TASKS} tasks at once (bench/task_worker.py: the raw API, StreamTasks "
        "credits, each result sent on the stream at once with the credit it frees), beside "
        "diamond-5 of built-in no-op steps on the same "
        f"server; {r['workflows']} workflows, up to 200 in flight, "
        f"{len(r['builtin_rounds'])} rounds each, interleaved (medians). Target: remote steps "
        "cost under 2x built-in ones. The server's CPU per workflow falls as its load rises "
        "(group commits, more work per turn of the loop), and built-in steps run at about "
        "three times the rate here: what a step costs is compared at one rate for both "
        f"({r['same_rate_per_s']:.0f} workflows/s, started open loop), what a server can do "
        "at each kind's own throughput.",
        "",
        "| figure | built-in steps | remote steps | remote / built-in |",
        "|---|---|---|---|",
        f"| throughput, workflows/s (rounds) | {r['builtin_workflows_per_s']:.1f} "
        f"({', '.join(f'{x:.0f}' for x in r['builtin_rounds'])}) "
        f"| {r['remote_workflows_per_s']:.1f} ({', '.join(f'{x:.0f}' for x in r['remote_rounds'])}) "
        f"| {1 / slower:.2f} ({r['remote_tasks_per_s']:.0f} tasks/s) |",
        f"| server CPU ms per workflow, both at {r['same_rate_per_s']:.0f} workflows/s "
        f"| {r['builtin_same_rate_cpu_ms']:.1f} | {r['remote_same_rate_cpu_ms']:.1f} "
        f"| {cost:.2f} ({', '.join(f'{x:.2f}' for x in r['same_rate_ratios'])}; target < 2: "
        f"{'met' if cost < 2 else 'not met'}) |",
        f"| server CPU ms per workflow, each at its own throughput | "
        f"{r['builtin_server_cpu_ms']:.1f} "
        f"| {r['remote_server_cpu_ms']:.1f} (+ worker {r['remote_worker_cpu_ms']:.1f}) "
        f"| {capacity:.2f} |",
        f"| sequential ms per workflow, median / p99 | {r['builtin_sequential_ms_median']:.1f} / "
        f"{r['builtin_sequential_ms_p99']:.1f} | {r['remote_sequential_ms_median']:.1f} / "
        f"{r['remote_sequential_ms_p99']:.1f} "
        f"| {r['remote_sequential_ms_median'] / r['builtin_sequential_ms_median']:.2f} |",
        f"| dispatch, task queued -> worker received, p50 / p99 ms: one workflow at a time "
        f"| | {r['dispatch_ms_p50']:.1f} / {r['dispatch_ms_p99']:.1f} | |",
        f"| the same under the throughput runs (mostly the wait for one of the worker's "
        f"{IN_FLIGHT_TASKS} slots) | | {r['loaded_dispatch_ms_p50']:.0f} / "
        f"{r['loaded_dispatch_ms_p99']:.0f} | |",
    ]
    if temporal and "error" not in temporal:
        out += [
            "",
            f"Temporal ({temporal['version']}; dev server, SQLite) on the same workload with "
            f"its worker's max_concurrent_activities = {IN_FLIGHT_TASKS}: "
            f"{temporal['workflows_per_s']:.1f} workflows/s, sequential "
            f"{temporal['ms_median']:.0f} ms per workflow; activity dispatch (scheduled -> "
            f"started) p50 / p99 {temporal.get('dispatch_ms_p50', float('nan')):.1f} / "
            f"{temporal.get('dispatch_ms_p99', float('nan')):.1f} ms one workflow at a time, "
            f"{temporal.get('loaded_dispatch_ms_p50', float('nan')):.0f} / "
            f"{temporal.get('loaded_dispatch_ms_p99', float('nan')):.0f} ms under the "
            "throughput run.",
        ]
    elif temporal:
        out += ["", f"Temporal: **error**: {temporal['error']}"]
    return out


def _lists(result: dict[str, Any]) -> list[str]:
    if not result:
        return []
    if "error" in result:
        return ["", "## ListWorkflows over a large history", "", f"**error**: {result['error']}"]
    small, large = (str(n) for n in result["sizes"])
    out = [
        "",
        f"## ListWorkflows over {int(large):,} runs (and {int(small):,})",
        "",
        f"One owner's finished runs, cloned from a real one (fill: {int(large):,} runs in "
        f"{result[f'fill_seconds_{large}']:.0f} s, {result[f'db_mb_{large}']:,.0f} MB). Each "
        "call from a client over gRPC, in a block of its own; ms per call.",
        "",
        f"| call | runs, KB in the reply | {int(small):,} runs: median / p99 "
        f"| {int(large):,} runs: median / p99 | ratio of medians |",
        "|---|---|---|---|---|",
    ]
    for name, by_size in result["calls"].items():
        a, b = by_size[small], by_size[large]
        out.append(
            f"| {name} | {b['runs']:,}, {b['kb']:,.0f} | {a['ms_median']:.1f} / {a['ms_p99']:.1f} "
            f"| {b['ms_median']:.1f} / {b['ms_p99']:.1f} | {b['ms_median'] / a['ms_median']:.2f} |"
        )
    return out


def _watchers(w: dict[str, Any], f: dict[str, Any], store: str = "SQLite") -> list[str]:
    out = []
    if "error" in f:
        out.append(f"| watchers floor | | **error** | | {f['error']} |")
    elif f:
        out.append(
            f"| watchers floor (the same fan-out on a bare grpc.aio server: {f['streams']:,} "
            f"streams, {f['deliveries_per_s']:,.0f} messages/s) | latency p50 / p99 "
            f"| {f['latency_ms_p50']:.0f} / {f['latency_ms_p99']:.0f} ms "
            f"| | opened {f['opened']:,} in {f['open_seconds']:.1f} s; max latency "
            f"{f['latency_ms_max']:.0f} ms; server CPU {f['server_cpu_pct']:.0f}% of one core |"
        )
    if "error" in w:
        return [f"| watchers ({store}) | | **error** | | {w['error']} |", *out]
    if not w:
        return out
    refused = ", ".join(f"{n} {code}" for code, n in w["refused"].items()) or "none"
    return [
        f"| watchers ({store}: {w['watchers']:,} streams opened at once, "
        f"{w['watchers'] // w['runs']} on each of {w['runs']:,} runs, steps of ~2 s) "
        f"| opened; events delivered / expected; latency p50 / p99 "
        f"| {w['opened']:,}; {w['events_delivered']:,} / {w['events_expected']:,}; "
        f"{w['latency_ms_p50']:.0f} / {w['latency_ms_p99']:.0f} ms "
        f"| | refused: {refused}; opened in {w['open_seconds']:.1f} s "
        f"({w['open_server_cpu_s']:.1f} s of server CPU); {w['deliveries_per_s']:,.0f} "
        f"deliveries/s over {w['seconds']:.0f} s, server CPU {w['server_cpu_s']:.1f} s; "
        f"max latency {w['latency_ms_max']:.0f} ms; server RSS {w['server_rss_mb_open']:.0f} MB "
        f"with all open; latency p99 in each 4 s from the first delivery: "
        f"{', '.join(f'{v:.0f}' for v in w.get('latency_ms_p99_by_window', []))} ms; {_cpu(w)} |",
        *out,
    ]


def _webhooks(w: dict[str, Any]) -> list[str]:
    if "error" in w:
        return [f"| webhooks | | **error** | | {w['error']} |"]
    if not w:
        return []
    old_failed = ", ".join(str(n) for n in w["old_failed"])
    return [
        f"| webhooks ({w['steps']} notify steps at once, receiver answering after "
        f"{w['delay_ms']:.0f} ms; {w['rounds']} rounds each, alternating) "
        f"| s until all rest, median: now / the 2f9f03d client "
        f"| {w['new_seconds_median']:.2f} / {w['old_seconds_median']:.2f} "
        f"({w['ratio']:.1f}x faster) "
        f"| | step p50 / p99: {w['new_step_ms_p50']:.0f} / {w['new_step_ms_p99']:.0f} ms now, "
        f"{w['old_step_ms_p50']:.0f} / {w['old_step_ms_p99']:.0f} ms before; failed steps per "
        f"round: {', '.join(str(n) for n in w['new_failed'])} now, {old_failed} before"
        + (f" ({w['old_error']})" if w["old_error"] else "")
        + " |"
    ]


def _peers(results: dict[str, dict[str, Any]], s: dict[str, Any], t: dict[str, Any]) -> list[str]:
    if "dbos" not in results and "temporal" not in results:
        return []  # --only without them (dbos-pg has its own section)
    out = [
        "",
        "## Peers on diamond-5 (same run)",
        "",
        "| engine | sequential ms median / p99 | workflows/s (500 in flight) | steps/s "
        "| Sluice/peer sequential ms | Sluice/peer workflows/s |",
        "|---|---|---|---|---|---|",
    ]
    if s and "error" not in s and t and "error" not in t:
        out.append(
            f"| Sluice | {s['ms_median']:.1f} / {s['ms_p99']:.1f} | {t['workflows_per_s']:.1f} "
            f"| {t['steps_per_s']:.0f} | 1 | 1 |"
        )
    for key, label in (
        ("dbos", "DBOS Transact (SQLite)"),
        ("temporal", "Temporal dev server (SQLite)"),
    ):
        p = results.get(key, {})
        if "unavailable" in p or not p:
            out.append(f"| {label} | not available: {p.get('unavailable', 'not run')} | | | | |")
            continue
        seq = f"{s['ms_median'] / p['ms_median']:.2f}" if s and "ms_median" in s else "-"
        thr = (
            f"{t['workflows_per_s'] / p['workflows_per_s']:.2f}"
            if t and "workflows_per_s" in t
            else "-"
        )
        out.append(
            f"| {label}, {p['version']} | {p['ms_median']:.1f} / {p['ms_p99']:.1f} "
            f"| {p['workflows_per_s']:.1f} | {p['steps_per_s']:.0f} | {seq} | {thr} |"
        )
    out += [
        "",
        "Sluice/peer: sequential ms (lower is better for Sluice: < 1 means Sluice is faster) and "
        "workflows/s (> 1 means Sluice is faster). DBOS runs the workflows in the client's "
        "own process (a library: no RPC); Temporal runs a dev server, a worker process and the "
        "client process.",
    ]
    return out


def _revision() -> str:
    """The commit the server code is at, and whether the working tree differs from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "server", "clients", "generated"],
            cwd=ROOT, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
    except OSError:
        return "unknown"
    return f"{head or 'unknown'}{' + uncommitted changes' if dirty else ''}"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="sizes x0.1: a smoke run")
    p.add_argument("--scale", type=float, default=None, help="size factor (SLUICE_BENCH_SCALE)")
    p.add_argument(
        "--only", default="", help="comma-separated scenario names; `postgres`: the PostgreSQL set"
    )
    p.add_argument("--no-peers", action="store_true", help="skip DBOS and Temporal")
    p.add_argument(
        "--rounds", type=int, default=1,
        help="run the compared scenarios (Sluice on SQLite and PostgreSQL, DBOS) this many\n"
             "times, interleaved, and report each figure's median",
    )  # fmt: skip
    p.add_argument(
        "--replicas", default=None,
        help="servers on one PostgreSQL database for pg-throughput, comma-separated\n"
             "(pg-throughput-xN for each N > 1); default 1,2,3 (--quick: 1: failover and\n"
             "watch-replicas run three servers already)",
    )  # fmt: skip
    p.add_argument("--output", type=Path, default=RESULTS)
    p.add_argument(
        "--render", type=Path, default=None,
        help="write the table again from a JSON file an earlier run wrote (no scenario runs)",
    )  # fmt: skip
    args = p.parse_args()
    if args.render:
        saved = json.loads(args.render.read_text())
        meta = saved["meta"]
        table = render(
            saved["results"], meta["scale"], meta["seconds"], tuple(meta["load"]),
            meta["revision"], saved["rounds"], at=meta["at"],
        )  # fmt: skip
        args.output.write_text(table, encoding="utf-8")
        return
    scale = args.scale or (0.1 if args.quick else float(os.environ.get("SLUICE_BENCH_SCALE", 1)))
    only = {n.strip() for n in args.only.split(",") if n.strip()}
    counts = args.replicas or ("1" if args.quick else "1,2,3")
    replica_counts = sorted({int(n) for n in counts.split(",") if n.strip()})
    chosen = choose(only, args.no_peers, replica_counts, quick=args.quick)
    rounds: dict[str, list[dict[str, Any]]] = {}
    begin = time.perf_counter()
    load_start = os.getloadavg()[0]
    revision = _revision()
    for number in range(1, max(1, args.rounds) + 1):
        # Round 1 runs everything; later rounds the compared scenarios, in reverse order every
        # other round, so that drift in the machine's load falls on each system alike.
        order = chosen if number == 1 else [sc for sc in chosen if sc.repeat]
        if number % 2 == 0:
            order = order[::-1]
        for scenario in order:
            label = f" (round {number})" if args.rounds > 1 else ""
            print(f"-- {scenario.name}{label} ...", file=sys.stderr, flush=True)
            started = time.perf_counter()
            machine = common.RunQueue()
            result = run_scenario(scenario, scale)
            result.update(machine.stop())
            rounds.setdefault(scenario.name, []).append(result)
            print(
                f"   {time.perf_counter() - started:.0f} s: {json.dumps(result)}",
                file=sys.stderr,
                flush=True,
            )
    results = {name: merge(each) for name, each in rounds.items()}
    if (now := _revision()) != revision:
        revision += f" at the start, {now} at the end"
    load = (load_start, os.getloadavg()[0])
    seconds = time.perf_counter() - begin
    at = f"{datetime.now(UTC):%Y-%m-%d %H:%M}"
    table = render(results, scale, seconds, load, revision, rounds, at=at)
    print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(table, encoding="utf-8")
    meta = {"scale": scale, "seconds": seconds, "load": load, "revision": revision, "at": at}
    (args.output.with_suffix(".json")).write_text(
        json.dumps({"results": results, "rounds": rounds, "meta": meta}, indent=2) + "\n"
    )
    if any("error" in r for r in results.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
