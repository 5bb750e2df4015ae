"""The benchmark table's sections on several servers sharing one PostgreSQL database:
throughput with 1, 2, 3 servers (CPU split and database work per workflow), failover after a
kill -9, and watch latency across servers."""

from __future__ import annotations

import statistics
from typing import Any

from bench.pgreport import Results, Rounds, _each_round, _ok, _why
from bench.rounds import merge

# Issue 11's targets for several servers.
CPU_DRIFT = 0.20  # a replica's CPU per workflow with 2, 3 servers within 20 % of one server's
FAILOVER_MARGIN = 5.0  # all of a dead server's runs running again within the lease TTL + 5 s
WATCH_P99_MS = 100.0  # an event reaches a watcher on another server within 100 ms (p99)


def _names(results: Results) -> list[tuple[int, str]]:
    more = [n for n in results if n.startswith("pg-throughput-x")]
    named = [(1, "pg-throughput")] if "pg-throughput" in results else []
    return named + sorted((int(n.removeprefix("pg-throughput-x")), n) for n in more)


def per_replica(result: dict[str, Any]) -> list[float]:
    """Each server's CPU ms per workflow it drove: the client deals the workflows round-robin,
    so each of N servers drove 1/N of them."""
    servers = result["cpu_ms_per_workflow"]["servers"]
    return [len(servers) * ms for ms in servers]


def _replica_mean(result: dict[str, Any]) -> float:
    return statistics.fmean(per_replica(result))


def _good(results: Results, rounds: Rounds, name: str) -> tuple[dict[str, Any] | None, str]:
    """The medians over the rounds that ran to the end (a round can fail for reasons of its
    own, say another test restarting the shared PostgreSQL), and what the others said."""
    each = rounds.get(name) or [results.get(name) or {}]
    good = [r for r in each if _ok(r)]
    failed = [f"round {i}: {_why(r)[-200:]}" for i, r in enumerate(each, 1) if not _ok(r) and r]
    return (merge(good) if good else results.get(name)), "; ".join(failed)


def throughput(results: Results, rounds: Rounds) -> list[str]:
    names = _names(results)
    if not any(n > 1 for n, _ in names):
        return []
    merged = {name: _good(results, rounds, name) for _, name in names}
    single = merged["pg-throughput"][0] if "pg-throughput" in merged else None
    base = _replica_mean(single) if single and _ok(single) else None
    out = [
        "",
        "## Servers on one PostgreSQL database: throughput with 1, 2, 3 servers",
        "",
        "pg-throughput with N Sluice server processes on one fresh database (default lease "
        "settings, 30 s / 5 s); the client deals the workflows round-robin over them (one "
        "channel per server; each workflow created and executed on one server, which holds its "
        "lease). CPU from /proc over the measured part. All of it on the same 2 cores: the "
        "servers, PostgreSQL, the client and others' work compete for them.",
        "",
        "| servers | workflows/s | CPU ms per workflow each server drove (target: within "
        f"{CPU_DRIFT:.0%} of 1 server) | CPU ms per workflow: servers + client + PostgreSQL "
        "(its backends for this database) = all; PostgreSQL cluster | CPU, % of one core: "
        "servers / client / PostgreSQL (this database) |",
        "|---|---|---|---|---|",
    ]
    failures = []
    for n, name in names:
        result, failed = merged[name]
        if failed:
            failures.append(f"{n} servers, {failed}")
        if not _ok(result):
            out.append(f"| {n} | {_why(result)} | | | |")
            continue
        assert result is not None
        cpu = result["cpu_ms_per_workflow"]
        rate = f"{result['workflows_per_s']:.1f}"
        if len(rounds.get(name, [])) > 1:
            rate += (
                f" (rounds: {_each_round(rounds, name)}" + ("; one failed" if failed else "") + ")"
            )
        mine = per_replica(result)
        drift = ""
        if base and n > 1:
            ratio = _replica_mean(result) / base
            met = abs(ratio - 1) <= CPU_DRIFT
            drift = f"; mean {ratio:.2f} x 1 server's ({'met' if met else 'not met'})"
            paired = _paired_drift(rounds, name)
            if len(paired) > 1:
                drift += ", by round " + ", ".join(f"{r:.2f}" for r in paired)
        db = cpu.get("postgres_database")
        servers = sum(cpu["servers"])
        total = servers + cpu["client"] + (db or 0.0)
        split = (
            f"{servers:.1f} + {cpu['client']:.1f} + {_n(db)} = {total:.1f}; "
            f"{_n(cpu.get('postgres'))}"
        )
        out.append(
            f"| {n} | {rate} | {', '.join(f'{ms:.1f}' for ms in mine)}{drift} | {split} "
            f"| {result['server_cpu_pct']:.0f} / {result['client_cpu_pct']:.0f} / "
            f"{_n(result.get('pg_database_cpu_pct'), 0)} |"
        )
    out += [
        "",
        "| servers | statements the servers sent through SQLAlchemy per workflow (each executemany "
        "row) | transactions the servers committed through SQLAlchemy per workflow | connections the servers opened "
        "per workflow | NOTIFYs per workflow (runs named "
        "in each) | PostgreSQL: transactions committed / rolled back per run stored | WAL "
        "records / KB / syncs per workflow (cluster-wide) | WAL syncs/s | others' transactions "
        "meanwhile |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n, name in names:
        result = merged[name][0]
        if not _ok(result):
            continue
        assert result is not None
        sql = result.get("sql_per_workflow") or {}
        pg = result.get("pg_per_run") or {}
        wal = result.get("wal_per_workflow") or {}
        out.append(
            f"| {n} | {_n(sql.get('statements'), 1)} ({_n(sql.get('rows'), 1)}) "
            f"| {_n(sql.get('commits'), 2)} | {_n(sql.get('connects'), 3)} "
            f"| {_n(result.get('notices_per_workflow'), 2)} "
            f"({_n(result.get('run_ids_per_notice'), 1)}) "
            f"| {_n(pg.get('commits'), 2)} / {_n(pg.get('rollbacks'), 2)} "
            f"| {_n(wal.get('wal_records'), 1)} / {_n(_kb(wal.get('wal_bytes')), 1)} / "
            f"{_n(wal.get('wal_sync'), 2)} | {_n(result.get('wal_syncs_per_s'), 0)} "
            f"| {_n(result.get('pg_other_transactions'), 0)} |"
        )
    out += [
        "",
        "Statements and commits the servers sent: counted in each server by the "
        "`bench.sqlcount` plugin over the measured part, summed over the servers (lease "
        "renewals and claims included; BEGIN/COMMIT, the pool's pre-pings, the NOTIFYs and "
        "the group commit's batches, sent outside SQLAlchemy, not: PostgreSQL's own count "
        "of transactions has those). NOTIFYs: counted by a LISTEN of the benchmark's own "
        "on the servers' channels over the measured part; each is a transaction of its own in "
        "PostgreSQL, with a transaction id and so a WAL flush at its commit (a server sends "
        "the next as soon as the last returns, naming every run that changed meanwhile). "
        "PostgreSQL's transactions: pg_stat_database over the database's life divided by the "
        "runs stored: the servers' commits, the NOTIFYs, and the pool's pre-pings (rolled "
        "back). WAL: pg_stat_wal before and after the measured part; it "
        "is the whole cluster's, so others' transactions in the same window (last column) "
        "add to it.",
    ]
    busy = [
        f"{n} servers {merged[name][0]['runnable_mean']:.1f}"  # type: ignore[index]
        for n, name in names
        if _ok(merged[name][0]) and "runnable_mean" in merged[name][0]  # type: ignore[operator]
    ]
    if busy:
        out.append(
            "\nProcesses ready to run on the machine during each scenario (2 cores; medians "
            "over the rounds of the scenario's mean): " + ", ".join(busy) + "."
        )
    if failures:
        out.append(
            "\nRounds that did not run to the end (the medians above are over the others): "
            + "; ".join(failures)
            + "."
        )
    return out


def _paired_drift(rounds: Rounds, name: str) -> list[float]:
    return [
        _replica_mean(x) / _replica_mean(y)
        for x, y in zip(rounds.get(name, []), rounds.get("pg-throughput", []), strict=False)
        if _ok(x) and _ok(y)
    ]


def failover(results: Results, rounds: Rounds) -> list[str]:
    names = [n for n in ("pg-failover", "pg-failover-30s") if n in results]
    if not names:
        return []
    out = [
        "",
        "## Failover: kill -9 of one of three servers under load",
        "",
        "Three servers on one fresh database; a steady stream of runs (each a chain of `hold` "
        "steps of about 0.5 s, +/- 50 %), dealt round-robin; after the warm-up the first server "
        "gets SIGKILL and the stream goes on over the other two. Time from the kill to each of "
        "the killed server's unfinished runs' first STEP_STARTED with `recovered: true` (the "
        "event's time: the clock of the server that took it over, just before its commit). "
        f"Target: all within the lease TTL + {FAILOVER_MARGIN:g} s. One row per run of the "
        "scenario.",
        "",
        "| leases: TTL / renew | stream | its runs at the kill | s from the kill to the first "
        "/ median / last running again | target | survivors' claims, s after the kill (runs "
        "taken by each survivor) | the survivors' own runs taken over (drops logged) | "
        "each survivor's longest gap between two lease renewals, s (its longest claim) | "
        "processes ready to run (2 cores): mean / p90 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        for r in rounds.get(name, [results[name]]):
            if not _ok(r):
                out.append(f"| {name} | {_why(r)} | | | | | | | |")
                continue
            gaps = "; ".join(
                f"{g['renew_gap_max_s']:.1f} ({g['claim_max_s']:.1f})"
                for g in r.get("survivor_leases", {}).values()
            )
            ttl = r["lease_ttl_s"]
            claims = ", ".join(f"{s:.1f}" for s in r["claims_logged_s"]) or "-"
            taken = ", ".join(str(v) for v in r["took_over_by_server"].values()) or "-"
            met = r["all_recovered_s"] <= ttl + FAILOVER_MARGIN
            lost = r["not_recovered"]
            out.append(
                f"| {ttl:g} s / {r['lease_renew_s']:g} s | {r['rate_per_s']:g} runs/s of "
                f"{r['steps']} x {r['step_seconds']:g} s for {r['warmup_s']:g} + "
                f"{r['after_s']:g} s ({r['runs_started']} runs) | {r['victim_runs_at_kill']}"
                + (f" ({lost} never ran again)" if lost else "")
                + f" | {r['first_recovered_s']:.2f} / {r['median_recovered_s']:.2f} / "
                f"{r['all_recovered_s']:.2f} "
                f"| <= {ttl + FAILOVER_MARGIN:g} s: {'met' if met else 'not met'} "
                f"| {claims} ({taken}) | {r['survivor_runs_taken_over']} "
                f"({r['survivor_drops_logged']}) | {gaps or '-'} "
                f"| {_n(r.get('runnable_mean'), 1)} / {_n(r.get('runnable_p90'), 0)} |"
            )
    out += [
        "",
        "A dead server's leases run out between TTL - renew and TTL after the kill (it renewed "
        "them at most one renewal interval before); the survivors claim expired runs at their "
        "next renewal (up to 100 each a time), then start each cut-off step again as a new "
        "attempt: all running again by about TTL + renew. Runs whose ExecuteWorkflow was cut "
        "off by the kill are not counted (the client saw the call fail). The survivors' own "
        "runs taken over: runs created on a surviving server that got a recovered "
        "STEP_STARTED, i.e. whose lease that server failed to renew in time so that the other "
        "survivor claimed them; drops: the survivors' \"dropped a workflow this server no "
        'longer holds" log lines. Renewal gaps and claims: timed in the servers by the '
        "`bench.leaselog` plugin (a gap is the renewal interval plus whatever the heartbeat "
        "did in between: the renewal, the claim of expired runs and their resumption); a gap "
        "longer than the TTL lets the other servers take that server's runs.",
    ]
    return out


def watch(results: Results, rounds: Rounds) -> list[str]:
    names = [n for n in ("pg-watch-replicas", "pg-watch-replicas-10") if n in results]
    if not names:
        return []
    each = [(n, x) for n in names for x in rounds.get(n, [results[n]])]
    good = [(n, x) for n, x in each if _ok(x)]
    out = ["", "## Watch latency across servers (steady load)", ""]
    if not good:
        return [*out, *(f"{n}: {_why(x)}" for n, x in each)]
    first = good[0][1]
    out += [
        f"Three servers on one fresh database; runs of {first['steps']} `hold` steps of "
        f"{first['step_seconds'] * 1000:.0f} ms (+/- 50 %), all created and driven by server A, "
        f"each watched by {first['watchers_per_run_per_server']} streams on every server; "
        "`pg-watch-replicas` with 30 runs, `pg-watch-replicas-10` with 10 (a third of the "
        "load). Latency: arrival at the client minus the event's `time` (A's clock just before "
        "its commit; one machine, one clock). On A events go to its watchers from memory after "
        "the commit; on B and C after A's notice (PostgreSQL NOTIFY), read from the events "
        "table once for all of a run's streams there. "
        f"Target: p99 <= {WATCH_P99_MS:g} ms on the other servers. One "
        "row per run of a scenario; the NOTIFY column is PostgreSQL's own LISTEN/NOTIFY round "
        "trip on the same database at the same time (a NOTIFY every 50 ms from the client), "
        "the floor under the cross-server path.",
        "",
        "| runs; streams | commits/s on A; events/s delivered | on A (driving): p50 / p99 / "
        "max ms | on B and C: p50 / p99 / max ms | target | B, C: events over 1 s; missed "
        "| NOTIFY round trip p50 / p99 ms | processes ready to run (2 cores, ours included): "
        "mean / p90 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, x in each:
        if not _ok(x):
            out.append(f"| {n} | {_why(x)} | | | | | | |")
            continue
        a, others = x["by_server"][0], x["by_server"][1:]
        worst = max(o["latency_ms_max"] for o in others)
        met = x["remote_latency_ms_p99"] <= WATCH_P99_MS
        out.append(
            f"| {x['runs']}; {x['streams']} | {x['commits_per_s']:.0f}; {x['events_per_s']:,.0f} "
            f"| {a['latency_ms_p50']:.1f} / {a['latency_ms_p99']:.1f} / {a['latency_ms_max']:.0f} "
            f"| {x['remote_latency_ms_p50']:.1f} / {x['remote_latency_ms_p99']:.1f} / {worst:.0f} "
            f"| {'met' if met else 'not met'} "
            f"| {sum(o['over_1s'] for o in others)}; {sum(o['missed'] for o in others)} "
            f"| {_n(x.get('notify_ms_p50'), 1)} / {_n(x.get('notify_ms_p99'), 1)} "
            f"| {_n(x.get('runnable_mean'), 1)} / {_n(x.get('runnable_p90'), 0)} |"
        )
    per_event = [
        f"{'ABC'[i] if i < 3 else i} {s['statements_per_event']:.2f} / "
        f"{s['checkouts_per_event']:.2f}"
        for i, s in enumerate(first["by_server"])
        if "statements_per_event" in s
    ]
    cpu = ", ".join(f"{_n(s['cpu_pct'], 0)} %" for s in first["by_server"])
    out += [
        "",
        f"Each server's CPU in the first row (of one core): {cpu}. Statements / pool checkouts "
        f"per event delivered there: {'; '.join(per_event)} (on B or C the streams of a run "
        "share one read of the events table per notice: one statement per commit of the run "
        "and server, whatever the number of its streams there).",
    ]
    return out


def _n(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _kb(value: float | None) -> float | None:
    return None if value is None else value / 1024
