"""The hot path's writes on PostgreSQL: a batch of runs' transitions and new runs as ONE
statement, run by asyncpg directly.

The statement binds one array per column (`unnest`), so a batch of any size is one prepared
statement, one round trip and, run outside a transaction block, one transaction with one
fsync. A transition's compare-and-set UPDATE of its run comes first, in a data-modifying CTE
(`r`) that returns the runs it matched, and a new run's INSERT in another (`c`, which skips a
run whose request id its owner already used); every other table's rows join on those, so
nothing is written for a run whose UPDATE matched nothing (its lease or its version moved),
while the rest of the batch is written.

A statement has only the parts its batch has rows for (most transitions touch no gate,
outbox, timer or command): a part left out costs PostgreSQL nothing, where every part at once
measured about 0.9 ms to plan and run against 0.13 ms for a run, its steps and events. The
variants are built on first use and prepared once per connection (asyncpg's cache).

The column lists and types come from `schema` and the rows from `base` (the very dicts the
SQLAlchemy path writes): only the shape of the SQL is written here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.base import PGDialect

from sluice.store.base import _GATE_FIELDS, _RUN_FIELDS, _STEP_FIELDS, Transition, Writes
from sluice.store.schema import (
    analytics_queue,
    events,
    gate_results,
    outbox,
    run_commands,
    runs,
    step_runs,
    tasks,
    timers,
)

_DIALECT = PGDialect()  # type: ignore[no-untyped-call]

Rows = list[dict[str, Any]]
Notices = tuple[list[str], list[str]]  # (channel, payload) of each notice, as two arrays
NO_NOTICES: Notices = ([], [])


def _array_of(kind: sa.types.TypeEngine[Any]) -> str:
    # Strings as TEXT, not VARCHAR(n): an explicit cast to VARCHAR(n) cuts a longer value
    # silently, where storing it in the column refuses it, as the SQLAlchemy path does.
    return "TEXT" if isinstance(kind, sa.String) else kind.compile(dialect=_DIALECT)


def _json(value: Any) -> str:
    # SQLAlchemy's JSON type stores Python None as JSON null, not SQL NULL: so does this.
    if not value and isinstance(value, dict):
        return "{}"  # most event details and step outputs
    return json.dumps(value)


@dataclass(frozen=True)
class _Part:
    """One CTE of a statement: its rows' columns (`names`, typed by `table`; key columns
    named k_<column>; `extra`: columns that are not the table's, by SQL type) and its SQL,
    given the unnest(...) clause that binds them as `v`."""

    name: str
    table: sa.Table
    names: tuple[str, ...]
    sql: Callable[[str], str]
    extra: tuple[tuple[str, str], ...] = ()

    @cached_property
    def columns(self) -> tuple[tuple[str, str], ...]:
        """(name, SQL type) of each array bound."""
        typed = [(n, _array_of(self.table.c[n.removeprefix("k_")].type)) for n in self.names]
        return (*typed, *self.extra)

    @cached_property
    def _json(self) -> tuple[tuple[int, Callable[[Any], str]], ...]:
        """Where the JSON columns are, each with its serializer."""
        return tuple(
            (i, _json)
            for i, n in enumerate(self.names)
            if isinstance(self.table.c[n.removeprefix("k_")].type, sa.JSON)
        )

    def arrays(self, rows: Iterable[Mapping[str, Any]]) -> list[list[Any]]:
        names = [n for n, _ in self.columns]
        columns: list[list[Any]] = [[] for _ in names]
        for row in rows:
            for column, name in zip(columns, names, strict=True):
                column.append(row.get(name))
        for i, serialize in self._json:
            columns[i] = [serialize(v) for v in columns[i]]
        return columns


def _set(names: Iterable[str]) -> str:
    return ", ".join(f"{n} = v.{n}" for n in names)


# The CTEs that write runs and return the ids of those they wrote: the transitions' UPDATE
# ("r") and the creations' INSERT ("c"). Every other part writes only for the runs its root
# returned.
_ROOTS = ("r", "c")


def _written(root: str, column: str = "v.run_id") -> str:
    return f"{column} IN (SELECT id FROM {root})"


def _insert(table: sa.Table, names: Sequence[str], root: str) -> Callable[[str], str]:
    def sql(unnest: str) -> str:
        return (
            f"INSERT INTO {table.name} ({', '.join(names)})\n"
            f"    SELECT {', '.join(f'v.{n}' for n in names)} FROM {unnest}\n"
            f"    WHERE {_written(root)}"
        )

    return sql


def _all_columns(table: sa.Table, root: str) -> _Part:
    """Rows inserted whole into `table`, for the runs `root` wrote."""
    names = tuple(c.name for c in table.c)
    return _Part(f"{root}_{table.name}", table, names, _insert(table, names, root))


def _update_of_run(name: str, table: sa.Table, key: str, fields: Sequence[str]) -> _Part:
    """`fields` of a run's rows of `table` (a step, a gate: by run and `key`), for the runs
    the transitions' UPDATE wrote."""
    return _Part(
        name,
        table,
        ("k_run_id", f"k_{key}", *fields),
        lambda unnest: (
            f"""UPDATE {table.name} SET {_set(fields)}
    FROM {unnest}
    WHERE {table.name}.run_id = v.k_run_id AND {table.name}.{key} = v.k_{key}
      AND {_written("r", "v.k_run_id")}"""
        ),
    )


# A notice per (channel, payload), sent by PostgreSQL when the statement's transaction
# commits (no transaction of its own). It adds a row with a NULL id to the result.
_NOTICES = _Part(
    "notices",
    runs,
    (),
    lambda unnest: (
        f"SELECT NULL FROM (SELECT count(pg_notify(v.channel, v.payload)) FROM {unnest}) AS n"
    ),
    extra=(("channel", "TEXT"), ("payload", "TEXT")),
)

_RUN_COLUMNS = tuple(c.name for c in runs.c)
_TASK_COLUMNS = tuple(c.name for c in tasks.c)
_TASK_KEYS = ("run_id", "step_id")
_OUTBOX_COLUMNS = ("run_id", "step_id", "kind", "channel", "payload", "created_at")
_QUEUED_COLUMNS = tuple(c.name for c in analytics_queue.c if c.name != "id")

_PARTS = (
    # Transitions: the run's compare-and-set, then what it changed and appended.
    _Part(
        "r",
        runs,
        ("k_id", "k_version", "k_lease_owner", "k_lease_epoch", *_RUN_FIELDS),
        lambda unnest: (
            f"""UPDATE runs SET {_set(_RUN_FIELDS)}
    FROM {unnest}
    WHERE runs.id = v.k_id AND runs.version = v.k_version
      AND (NOT v.fenced
           OR (runs.lease_owner = v.k_lease_owner AND runs.lease_epoch = v.k_lease_epoch))
    RETURNING runs.id"""
        ),
        extra=(("fenced", "BOOLEAN"),),
    ),
    _update_of_run("r_steps", step_runs, "step_id", _STEP_FIELDS),
    _update_of_run("r_gates", gate_results, "gate_id", _GATE_FIELDS),
    _all_columns(events, "r"),
    _Part("r_outbox", outbox, _OUTBOX_COLUMNS, _insert(outbox, _OUTBOX_COLUMNS, "r")),
    # A run that ends: its row in the analytics queue (folded into the sums later).
    _Part(
        "r_ended", analytics_queue, _QUEUED_COLUMNS, _insert(analytics_queue, _QUEUED_COLUMNS, "r")
    ),
    _Part(
        "r_cleared",
        timers,
        ("run_id", "key"),
        lambda unnest: (
            f"""DELETE FROM timers USING {unnest}
    WHERE timers.run_id = v.run_id AND timers.key = v.key AND {_written("r")}"""
        ),
    ),
    _Part(
        "r_timers",
        timers,
        ("run_id", "key", "fire_at"),
        lambda unnest: (
            _insert(timers, ("run_id", "key", "fire_at"), "r")(unnest)
            + "\n    ON CONFLICT (run_id, key) DO UPDATE SET fire_at = EXCLUDED.fire_at"
        ),
    ),
    _Part(
        "r_commands",
        run_commands,
        ("k_id", "run_id", "outcome", "done_at"),
        lambda unnest: (
            f"""UPDATE run_commands SET outcome = v.outcome, done_at = v.done_at
    FROM {unnest}
    WHERE run_commands.id = v.k_id AND {_written("r")}"""
        ),
    ),
    # A new attempt's task replaces the step's last one; a step the run stopped, its task.
    _Part(
        "r_tasks",
        tasks,
        _TASK_COLUMNS,
        lambda unnest: (
            _insert(tasks, _TASK_COLUMNS, "r")(unnest)
            + "\n    ON CONFLICT (run_id, step_id) DO UPDATE SET "
            + ", ".join(f"{n} = EXCLUDED.{n}" for n in _TASK_COLUMNS if n not in _TASK_KEYS)
        ),
    ),
    _Part(
        "r_tasks_cancelled",
        tasks,
        _TASK_KEYS,
        lambda unnest: (
            f"""UPDATE tasks SET state = 'cancelled'
    FROM {unnest}
    WHERE tasks.run_id = v.run_id AND tasks.step_id = v.step_id
      AND tasks.state IN ('queued', 'active') AND {_written("r")}"""
        ),
    ),
    # Creations: the run (none when its owner already used its request id), then its rows.
    _Part(
        "c",
        runs,
        _RUN_COLUMNS,
        lambda unnest: (
            f"""INSERT INTO runs ({", ".join(_RUN_COLUMNS)})
    SELECT {", ".join(f"v.{n}" for n in _RUN_COLUMNS)}
    FROM {unnest}
    ON CONFLICT DO NOTHING
    RETURNING id"""
        ),
    ),
    _all_columns(step_runs, "c"),
    _all_columns(gate_results, "c"),
    _all_columns(events, "c"),
    _NOTICES,
)
_PART_NAMES = frozenset(p.name for p in _PARTS)

# SQL by the parts present, built on first use.
_VARIANTS: dict[tuple[str, ...], str] = {}


def _build(present: tuple[str, ...]) -> str:
    n = 1
    ctes: list[str] = []
    selects: list[str] = []
    for part in _PARTS:
        if part.name not in present:
            continue
        columns = part.columns
        arrays = ", ".join(f"${n + i}::{kind}[]" for i, (_, kind) in enumerate(columns))
        unnest = f"unnest({arrays}) AS v({', '.join(name for name, _ in columns)})"
        n += len(columns)
        if part is _NOTICES:
            selects.append(part.sql(unnest))
        else:
            ctes.append(f"{part.name} AS (\n    {part.sql(unnest)}\n)")
            if part.name in _ROOTS:
                selects.append(f"SELECT id FROM {part.name}")
    return "WITH " + ",\n".join(ctes) + "\n" + "\nUNION ALL\n".join(selects)


def write_statement(
    transitions: Sequence[Transition], creations: Sequence[Creation], notices: Notices
) -> tuple[str, list[list[Any]]]:
    """Transitions and creations of distinct runs in one statement (and its arguments),
    which returns the ids of the runs it wrote (and a NULL when it sends notices).

    Not written: a transition's run whose version, or (when fenced) lease, is no longer the
    one it expects (`LEASES_SQL` tells which), and a new run whose request id its owner
    already used (perhaps in the same batch)."""
    rows: dict[str, list[Mapping[str, Any]]] = {name: [] for name in _PART_NAMES}
    for t in transitions:
        rows["r"].append(t.run | {"fenced": t.fence is not None})
        rows["r_steps"] += t.steps
        rows["r_gates"] += t.gates
        rows["r_events"] += t.events
        rows["r_outbox"] += t.outbox
        rows["r_ended"] += t.ended
        for key, at in t.timers.items():
            timer = {"run_id": t.run_id, "key": key, "fire_at": at}
            rows["r_timers" if at is not None else "r_cleared"].append(timer)
        if t.command is not None:
            rows["r_commands"].append(t.command | {"run_id": t.run_id})
        rows["r_tasks"] += t.tasks
        rows["r_tasks_cancelled"] += t.cancelled_tasks
    for c in creations:
        lease = {"lease_owner": c.lease, "lease_epoch": 1 if c.lease is not None else 0}
        rows["c"].append(c.rows["runs"][0] | lease)
        for table in (step_runs, gate_results, events):
            rows[f"c_{table.name}"] += c.rows.get(table.name, ())
    arguments: list[list[Any]] = []
    present: list[str] = []
    for part in _PARTS:
        if part is _NOTICES:
            if notices[0]:
                present.append(part.name)
                arguments += notices
        elif rows[part.name]:
            present.append(part.name)
            arguments += part.arrays(rows[part.name])
    variant = tuple(present)
    sql = _VARIANTS.get(variant)
    if sql is None:
        sql = _VARIANTS[variant] = _build(variant)
    return sql, arguments


# Why fenced writes matched nothing: the leases stored now (read once their batch committed).
LEASES_SQL = "SELECT id, lease_owner, lease_epoch FROM runs WHERE id = ANY($1::varchar[])"


class Creation:
    """A new run's rows (`base.creation_writes`) and, on a cluster, the server it is leased
    to from the start (its lease lives as long as that server's heartbeat)."""

    __slots__ = ("lease", "rows", "run_id")

    def __init__(self, writes: Writes, lease: str | None) -> None:
        self.rows: dict[str, Rows] = {
            statement.table.name: rows  # type: ignore[union-attr]
            for statement, rows in writes
        }
        self.run_id: str = self.rows["runs"][0]["id"]
        self.lease = lease
