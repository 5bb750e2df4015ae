"""The PostgreSQL sections of the benchmark's table: Sluice on PostgreSQL beside Sluice on
SQLite and DBOS on PostgreSQL, the database's work per workflow and bytes on disk per run
(several servers on one database: `bench.replicas_report`)."""

from __future__ import annotations

from typing import Any

Results = dict[str, dict[str, Any]]
Rounds = dict[str, list[dict[str, Any]]]

# What issue 11 asks of Sluice on PostgreSQL against DBOS on PostgreSQL.
THROUGHPUT_TARGET = 3.0  # Sluice's workflows/s at least 3x DBOS's
SEQUENTIAL_TARGET = 0.5  # Sluice's sequential ms at most half DBOS's


def _ok(result: dict[str, Any] | None) -> bool:
    return bool(result) and "error" not in result and "unavailable" not in result  # type: ignore[operator]


def _why(result: dict[str, Any] | None) -> str:
    if not result:
        return "not run"
    if "error" in result:
        return f"**error**: {result['error']}"
    return f"not available: {result['unavailable']}"


def _ms(result: dict[str, Any] | None) -> str:
    if not _ok(result):
        return _why(result)
    assert result is not None
    return f"{result['ms_median']:.1f} / {result['ms_p99']:.1f}"


def _rate(result: dict[str, Any] | None) -> str:
    if not _ok(result):
        return _why(result)
    assert result is not None
    return f"{result['workflows_per_s']:.1f}"


def _verdict(value: float, target: float, at_least: bool) -> str:
    met = value >= target if at_least else value <= target
    sign = ">=" if at_least else "<="
    return f"target {sign} {target:g}: {'met' if met else 'not met'}"


def _paired(rounds: Rounds, a: str, b: str, key: str) -> list[float]:
    """a's figure over b's, round by round (the two ran side by side in each round)."""
    return [
        x[key] / y[key]
        for x, y in zip(rounds.get(a, []), rounds.get(b, []), strict=False)
        if _ok(x) and _ok(y) and y.get(key)
    ]


def comparison(results: Results, rounds: Rounds) -> list[str]:
    names = ("pg-sequential", "pg-throughput", "dbos-pg", "pg-watch")
    replicas = any(n.startswith("pg-throughput-x") for n in results)
    if not any(n in results for n in ("pg-sequential", "dbos-pg", "pg-watch")) and (
        replicas or "pg-throughput" not in results
    ):
        return []  # pg-throughput with its -xN alone (--only replicas): in that section
    lite_s, lite_t = results.get("sequential"), results.get("throughput")
    pg_s, pg_t, dbos = (results.get(n) for n in ("pg-sequential", "pg-throughput", "dbos-pg"))
    count = max((len(rounds.get(n, [])) for n in names), default=1)
    out = [
        "",
        "## PostgreSQL: one Sluice server, beside Sluice on SQLite and DBOS on PostgreSQL",
        "",
        "Each PostgreSQL run on a fresh database of the same PostgreSQL server (created for the "
        "run and dropped after it): Sluice's server with its store there, DBOS Transact with "
        "its system database there. Diamond-5 as above"
        + (
            f"; medians of {count} rounds, the systems interleaved (each round runs each once, "
            "every other round in reverse order)"
            if count > 1
            else "; one round"
        )
        + ".",
        "",
        "| figure | Sluice, SQLite | Sluice, PostgreSQL | DBOS, PostgreSQL | Sluice-PG / DBOS-PG |",
        "|---|---|---|---|---|",
    ]
    seq_ratio = thr_ratio = "-"
    if _ok(pg_s) and _ok(dbos):
        assert pg_s is not None and dbos is not None
        value = pg_s["ms_median"] / dbos["ms_median"]
        paired = _paired(rounds, "pg-sequential", "dbos-pg", "ms_median")
        seq_ratio = f"{value:.2f} ({_verdict(value, SEQUENTIAL_TARGET, at_least=False)})"
        if len(paired) > 1:
            seq_ratio += "; by round " + ", ".join(f"{r:.2f}" for r in paired)
    if _ok(pg_t) and _ok(dbos):
        assert pg_t is not None and dbos is not None
        value = pg_t["workflows_per_s"] / dbos["workflows_per_s"]
        paired = _paired(rounds, "pg-throughput", "dbos-pg", "workflows_per_s")
        thr_ratio = f"{value:.2f}x ({_verdict(value, THROUGHPUT_TARGET, at_least=True)})"
        if len(paired) > 1:
            thr_ratio += "; by round " + ", ".join(f"{r:.2f}x" for r in paired)
    out.append(
        f"| sequential create + execute(wait), ms per workflow, median / p99 "
        f"| {_ms(lite_s)} | {_ms(pg_s)} | {_ms(dbos)} | {seq_ratio} |"
    )
    out.append(
        f"| throughput, workflows/s ({_size(pg_t or lite_t)}) "
        f"| {_rate(lite_t)} | {_rate(pg_t)} | {_rate(dbos)} | {thr_ratio} |"
    )
    out.append(
        "| throughput: CPU ms per workflow (server / client / PostgreSQL; DBOS: its process / "
        f"PostgreSQL) | {_cpu_split(lite_t)} | {_cpu_split(pg_t)} | {_dbos_cpu(dbos)} | |"
    )
    if _ok(pg_t):
        assert pg_t is not None
        out.append(
            "| throughput: each round's workflows/s | "
            + " | ".join(_each_round(rounds, n) for n in ("throughput", "pg-throughput", "dbos-pg"))
            + " | |"
        )
    lite_w, pg_w = results.get("watch"), results.get("pg-watch")
    if pg_w:
        out.append(
            "| watch fan-out, no-op steps: events/s delivered; latency p50 / p99 ms "
            f"| {_watch(lite_w)} | {_watch(pg_w)} | | |"
        )
    out += [
        "",
        "CPU per workflow over the measured part of the throughput run, from /proc: each "
        "server process, the client process, and every process of the PostgreSQL cluster "
        "(backends that exited meanwhile included); "
        + _others(pg_t)
        + " DBOS runs the workflows in its own process: its CPU is engine and client in one.",
    ]
    return out


def _each_round(rounds: Rounds, name: str) -> str:
    return ", ".join(f"{r['workflows_per_s']:.1f}" for r in rounds.get(name, []) if _ok(r))


def _size(result: dict[str, Any] | None) -> str:
    if not _ok(result):
        return "2,000 workflows, 500 in flight"
    assert result is not None
    return f"{result['workflows']:,} workflows, {result['in_flight']} in flight"


def _cpu_split(result: dict[str, Any] | None) -> str:
    if not _ok(result) or "cpu_ms_per_workflow" not in result:  # type: ignore[operator]
        return "-"
    assert result is not None
    cpu = result["cpu_ms_per_workflow"]
    servers = " + ".join(f"{s:.1f}" for s in cpu["servers"])
    pg = f" / {cpu['postgres']:.1f}" if "postgres" in cpu else ""
    return f"{servers} / {cpu['client']:.1f}{pg}"


def _dbos_cpu(result: dict[str, Any] | None) -> str:
    if not _ok(result) or "cpu_ms_per_workflow" not in result:  # type: ignore[operator]
        return "-"
    assert result is not None
    pg = result.get("pg_cpu_ms_per_workflow")
    return f"{result['cpu_ms_per_workflow']:.1f}" + (f" / {pg:.1f}" if pg is not None else "")


def _watch(result: dict[str, Any] | None) -> str:
    if not _ok(result):
        return _why(result)
    assert result is not None
    return (
        f"{result['events_per_s']:,.0f}; {result['latency_ms_p50']:.0f} / "
        f"{result['latency_ms_p99']:.0f}"
    )


def _others(result: dict[str, Any] | None) -> str:
    if not _ok(result) or "pg_other_transactions" not in result:  # type: ignore[operator]
        return "PostgreSQL's CPU counts the whole cluster."
    assert result is not None
    return (
        "PostgreSQL's CPU counts the whole cluster: the other databases counted "
        f"{result['pg_other_transactions']:,.0f} transactions meanwhile (others' tests; 0 means "
        "the cluster was ours alone)."
    )


def database_work(results: Results) -> list[str]:
    sluice, dbos = results.get("pg-throughput"), results.get("dbos-pg")
    if not (_ok(sluice) or _ok(dbos)):
        return []
    out = [
        "",
        "## Database work per workflow on PostgreSQL (throughput scenario)",
        "",
        "| figure | Sluice | DBOS |",
        "|---|---|---|",
    ]
    sql = (sluice or {}).get("sql_per_workflow") if _ok(sluice) else None
    if sql:
        verbs = ", ".join(f"{v} {_few(n)}" for v, n in sql["by_verb"].items() if n)
        out += [
            f"| statements the server sent through SQLAlchemy, per workflow (measured part; not the "
            f"group commit's, which go straight over asyncpg) | {sql['statements']:.1f} "
            f"({verbs}) | - |",
            f"| ... counting each executemany row | {sql['rows']:.1f} | - |",
            f"| transactions the server committed through SQLAlchemy, per workflow (measured part) "
            f"| {sql['commits']:.2f} | - |",
            f"| connections the server took from its pool, per workflow (each pre-pinged: "
            f"BEGIN, a query, ROLLBACK) | {sql['checkouts']:.2f} | - |",
            f"| connections the server opened, per workflow (a PostgreSQL backend started for "
            f"each) | {_few(sql.get('connects', 0))} | - |",
        ]

    def pg(result: dict[str, Any] | None, key: str, digits: int = 1) -> str:
        if not _ok(result) or "pg_per_run" not in result:  # type: ignore[operator]
            return _why(result) if not _ok(result) else "-"
        assert result is not None
        return f"{result['pg_per_run'][key]:.{digits}f}"

    out += [
        f"| PostgreSQL: transactions committed / rolled back per run stored "
        f"| {pg(sluice, 'commits', 2)} / {pg(sluice, 'rollbacks', 2)} "
        f"| {pg(dbos, 'commits', 2)} / {pg(dbos, 'rollbacks', 2)} |",
        f"| PostgreSQL: rows inserted / updated (of which HOT) / deleted per run stored "
        f"| {pg(sluice, 'inserted')} / {pg(sluice, 'updated')} ({pg(sluice, 'hot_updated')}) "
        f"/ {pg(sluice, 'deleted')} "
        f"| {pg(dbos, 'inserted')} / {pg(dbos, 'updated')} ({pg(dbos, 'hot_updated')}) "
        f"/ {pg(dbos, 'deleted')} |",
    ]
    tables = _table_rows(sluice)
    if tables:
        out.append(f"| Sluice: rows inserted / updated per run, by table | {tables} | |")
    out += [
        "",
        "pg_stat_statements is not used: it must be in shared_preload_libraries, which takes a "
        "restart of a PostgreSQL cluster that others' tests use. So statements are counted by "
        "the server itself (the `bench.sqlcount` plugin hooks SQLAlchemy's cursor execution, "
        "which the group commit's writes bypass: they go over asyncpg, one statement and one "
        "transaction per batch, and show in PostgreSQL's own counts below; "
        "from just before to just after the measured workflows; an executemany is one statement "
        "carrying many rows; BEGIN, COMMIT, ROLLBACK and the pool's pre-ping are not in it), and "
        "transactions and rows by PostgreSQL (pg_stat_database, pg_stat_user_tables) over the "
        "database's whole life, read once its backends have exited: schema creation, the "
        "template, the warm-up workflows and the measured ones, divided by the runs stored "
        "(DBOS: its workflow_status rows, its sequential part's workflows included). Sluice's "
        "rolled-back transactions are the pool's pre-pings (pool_pre_ping: SQLAlchemy's asyncpg "
        "driver pings inside a transaction it rolls back), one per connection taken.",
    ]
    return out


def _n(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _few(n: float) -> str:
    return f"{n:.1f}" if n >= 0.1 else f"{n:.3f}"


def _table_rows(result: dict[str, Any] | None) -> str:
    if not _ok(result) or "pg_tables" not in result:  # type: ignore[operator]
        return ""
    assert result is not None
    runs = result["store"]["runs"] or 1
    parts = []
    for name, t in sorted(result["pg_tables"].items(), key=lambda kv: -kv[1]["inserted"]):
        if (t["inserted"] + t["updated"]) / runs >= 0.05:  # not the schema's own rows
            short = name.removeprefix("public.")
            parts.append(f"{short} {t['inserted'] / runs:.1f} / {t['updated'] / runs:.1f}")
    return ", ".join(parts)


def bytes_per_run(results: Results) -> list[str]:
    rows = [
        ("Sluice, SQLite (file and write-ahead log)", results.get("throughput")),
        ("Sluice, PostgreSQL (pg_total_relation_size)", results.get("pg-throughput")),
        ("DBOS, PostgreSQL (pg_total_relation_size)", results.get("dbos-pg")),
    ]
    if not any(_ok(r) and "store" in r for _, r in rows):  # type: ignore[operator]
        return []
    out = [
        "",
        "## Bytes on disk per stored run (after the throughput scenario)",
        "",
        "| store | runs stored | bytes | bytes per run | compacted: bytes per run "
        "| largest tables (with their indexes), KB |",
        "|---|---|---|---|---|---|",
    ]
    for label, result in rows:
        if not result:
            continue
        if not _ok(result) or "store" not in result:
            out.append(f"| {label} | {_why(result) if not _ok(result) else '-'} | | | | |")
            continue
        store = result["store"]
        compacted = store.get("compact_tables", {})
        tables = ", ".join(
            f"{name.removeprefix('dbos.')} {size / 1024:,.0f}"
            + (f" ({compacted[name] / 1024:,.0f})" if name in compacted else "")
            for name, size in list(store["tables"].items())[:5]
        )
        out.append(
            f"| {label} | {store['runs']:,.0f} | {store['bytes']:,.0f} "
            f"| {_n(store['bytes_per_run'])} | {_n(store.get('compact_bytes_per_run'))} "
            f"| {tables} |"
        )
    out += [
        "",
        "Diamond-5 runs (five steps, 13 events each), the warm-up's included; DBOS: its "
        "sequential and throughput workflows. Bytes: as the run left them (SQLite: the file "
        "after the server's clean stop checkpointed its log; PostgreSQL: with the dead row "
        "versions its updates left, before any vacuum). Compacted: the same data rewritten "
        "(SQLite VACUUM INTO a copy, PostgreSQL VACUUM FULL), the live rows alone. Both include "
        "the empty schema's pages (tens of KB on SQLite, a few hundred on PostgreSQL: a "
        "sizeable share at --quick's scale). Tables: as left (compacted).",
    ]
    return out
