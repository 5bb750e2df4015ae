"""The hot path's writes on PostgreSQL: a batch of runs' transitions (or of new runs) as ONE
statement, run by asyncpg directly.

Each statement binds one array per column (`unnest`), so a batch of any size is one prepared
statement, one round trip and, run outside a transaction block, one transaction with one
fsync. A transition's compare-and-set UPDATE of its run comes first, in a data-modifying CTE
that returns the runs it matched; every other table's rows join on that, so nothing is written
for a run whose UPDATE matched nothing (its lease or its version moved), while the rest of the
batch is written.

The column lists and types come from `schema` and the rows from `base` (the very dicts the
SQLAlchemy path writes): only the shape of the SQL is written here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.base import PGDialect

from sluice.store.base import _GATE_FIELDS, _RUN_FIELDS, _STEP_FIELDS, Transition, Writes
from sluice.store.schema import (
    events,
    gate_results,
    outbox,
    run_commands,
    runs,
    step_runs,
    timers,
)

_DIALECT = PGDialect()  # type: ignore[no-untyped-call]


class _Columns:
    """Columns bound as arrays, `$n::type[]` placeholders numbered from `first`; JSON columns
    are sent as text, as SQLAlchemy sends them."""

    def __init__(self, table: sa.Table, names: Sequence[str], first: int, **extra: str) -> None:
        """`extra`: columns that are not the table's (a flag, a duration), by SQL type."""
        self.names = (*names, *extra)
        self.first = first
        kinds = [table.c[n.removeprefix("k_")].type for n in names]
        self.types = [_array_of(k) for k in kinds] + list(extra.values())
        self.json = tuple(i for i, k in enumerate(kinds) if isinstance(k, sa.JSON))

    @property
    def next(self) -> int:
        return self.first + len(self.names)

    def unnest(self, alias: str) -> str:
        arrays = ", ".join(f"${self.first + i}::{t}[]" for i, t in enumerate(self.types))
        return f"unnest({arrays}) AS {alias}({', '.join(self.names)})"

    def arrays(self, rows: Iterable[Mapping[str, Any]]) -> list[list[Any]]:
        columns: list[list[Any]] = [[] for _ in self.names]
        for row in rows:
            for column, name in zip(columns, self.names, strict=True):
                column.append(row.get(name))
        for i in self.json:
            columns[i] = [_json(v) for v in columns[i]]
        return columns


def _array_of(kind: sa.types.TypeEngine[Any]) -> str:
    # Strings as TEXT, not VARCHAR(n): an explicit cast to VARCHAR(n) cuts a longer value
    # silently, where storing it in the column refuses it, as the SQLAlchemy path does.
    return "TEXT" if isinstance(kind, sa.String) else kind.compile(dialect=_DIALECT)


# The JSON text of values that recur by identity (the template snapshot of every run of a
# template is one dict, rows.snapshot): built once each. Bounded: cleared when full.
_TEXTS: dict[int, tuple[object, str]] = {}
_TEXTS_MAX = 256


def _json(value: Any) -> str:
    # SQLAlchemy's JSON type stores Python None as JSON null, not SQL NULL: so does this.
    if not value and isinstance(value, dict):
        return "{}"  # most event details and step outputs
    if isinstance(value, dict) and len(value) > 4:
        known = _TEXTS.get(id(value))
        if known is not None and known[0] is value:
            return known[1]
        if len(_TEXTS) >= _TEXTS_MAX:
            _TEXTS.clear()
        text = json.dumps(value)
        _TEXTS[id(value)] = (value, text)
        return text
    return json.dumps(value)


def _set(names: Iterable[str], alias: str) -> str:
    return ", ".join(f"{n} = {alias}.{n}" for n in names)


def _in_r(alias: str, column: str = "run_id") -> str:
    """Only for the runs whose row was written (r: the runs' CTE)."""
    return f"{alias}.{column} IN (SELECT id FROM r)"


def _insert(table: sa.Table, columns: _Columns, alias: str = "v") -> str:
    names = [n for n in columns.names if n in table.c]
    return (
        f"INSERT INTO {table.name} ({', '.join(names)})\n"
        f"    SELECT {', '.join(f'{alias}.{n}' for n in names)} FROM {columns.unnest(alias)}\n"
        f"    WHERE {_in_r(alias)}"
    )


class CommitStatement:
    """Transitions of distinct runs in one statement, which returns the ids of the runs it
    wrote. Not written: a run whose version, or (when fenced) lease, is no longer the one its
    transition expects; see `LEASES_SQL` for telling which."""

    def __init__(self) -> None:
        self.run = _Columns(
            runs, ("k_id", "k_version", "k_lease_owner", "k_lease_epoch", *_RUN_FIELDS), 1,
            fenced="BOOLEAN",
        )  # fmt: skip
        self.steps = _Columns(step_runs, ("k_run_id", "k_step_id", *_STEP_FIELDS), self.run.next)
        self.gates = _Columns(
            gate_results, ("k_run_id", "k_gate_id", *_GATE_FIELDS), self.steps.next
        )
        self.events = _Columns(events, [c.name for c in events.c], self.gates.next)
        self.outbox = _Columns(
            outbox, ("run_id", "step_id", "kind", "channel", "payload", "created_at"),
            self.events.next,
        )  # fmt: skip
        self.cleared = _Columns(timers, ("run_id", "key"), self.outbox.next)
        self.timers = _Columns(timers, ("run_id", "key", "fire_at"), self.cleared.next)
        self.commands = _Columns(
            run_commands, ("k_id", "run_id", "outcome", "done_at"), self.timers.next
        )
        self.sql = f"""WITH r AS (
    UPDATE runs SET {_set(_RUN_FIELDS, "k")}
    FROM {self.run.unnest("k")}
    WHERE runs.id = k.k_id AND runs.version = k.k_version
      AND (NOT k.fenced
           OR (runs.lease_owner = k.k_lease_owner AND runs.lease_epoch = k.k_lease_epoch))
    RETURNING runs.id
), s AS (
    UPDATE step_runs SET {_set(_STEP_FIELDS, "v")}
    FROM {self.steps.unnest("v")}
    WHERE step_runs.run_id = v.k_run_id AND step_runs.step_id = v.k_step_id
      AND {_in_r("v", "k_run_id")}
), g AS (
    UPDATE gate_results SET {_set(_GATE_FIELDS, "v")}
    FROM {self.gates.unnest("v")}
    WHERE gate_results.run_id = v.k_run_id AND gate_results.gate_id = v.k_gate_id
      AND {_in_r("v", "k_run_id")}
), e AS (
    {_insert(events, self.events)}
), o AS (
    {_insert(outbox, self.outbox)}
), tc AS (
    DELETE FROM timers USING {self.cleared.unnest("v")}
    WHERE timers.run_id = v.run_id AND timers.key = v.key AND {_in_r("v")}
), ts AS (
    {_insert(timers, self.timers)}
    ON CONFLICT (run_id, key) DO UPDATE SET fire_at = EXCLUDED.fire_at
), c AS (
    UPDATE run_commands SET outcome = v.outcome, done_at = v.done_at
    FROM {self.commands.unnest("v")}
    WHERE run_commands.id = v.k_id AND {_in_r("v")}
)
SELECT id FROM r"""

    def arguments(self, batch: Sequence[Transition]) -> list[list[Any]]:
        cleared: list[dict[str, Any]] = []
        set_: list[dict[str, Any]] = []
        for t in batch:
            for key, at in t.timers.items():
                (set_ if at is not None else cleared).append(
                    {"run_id": t.run_id, "key": key, "fire_at": at}
                )
        return [
            *self.run.arrays(t.run | {"fenced": t.fence is not None} for t in batch),
            *self.steps.arrays(row for t in batch for row in t.steps),
            *self.gates.arrays(row for t in batch for row in t.gates),
            *self.events.arrays(row for t in batch for row in t.events),
            *self.outbox.arrays(row for t in batch for row in t.outbox),
            *self.cleared.arrays(cleared),
            *self.timers.arrays(set_),
            *self.commands.arrays(
                t.command | {"run_id": t.run_id} for t in batch if t.command is not None
            ),
        ]


# Why fenced writes matched nothing: the leases stored now (read once their batch committed).
LEASES_SQL = "SELECT id, lease_owner, lease_epoch FROM runs WHERE id = ANY($1::varchar[])"


class Creation:
    """A new run's rows (`base.creation_writes`) and, on a cluster, the lease it is created
    with: (server id, time to live; the expiry is set by the database's clock)."""

    __slots__ = ("lease", "rows", "run_id")

    def __init__(self, writes: Writes, lease: tuple[str, timedelta] | None) -> None:
        self.rows: dict[str, list[dict[str, Any]]] = {
            statement.table.name: rows  # type: ignore[union-attr]
            for statement, rows in writes
        }
        self.run_id: str = self.rows["runs"][0]["id"]
        self.lease = lease


class CreateStatement:
    """New runs in one statement, which returns the ids of the runs it inserted: a run whose
    request id its owner already used is not (nor are its steps, gates and events)."""

    _LEASE = ("lease_owner", "lease_epoch", "lease_expires_at")

    def __init__(self) -> None:
        names = [c.name for c in runs.c if c.name != "lease_expires_at"]
        self.run = _Columns(runs, names, 1, lease_seconds="FLOAT8")
        self.children: list[tuple[sa.Table, _Columns]] = []
        first = self.run.next
        for table in (step_runs, gate_results, events):
            columns = _Columns(table, [c.name for c in table.c], first)
            first = columns.next
            self.children.append((table, columns))
        ctes = ",\n".join(
            f"c{i} AS (\n    {_insert(table, columns)}\n)"
            for i, (table, columns) in enumerate(self.children)
        )
        self.sql = f"""WITH r AS (
    INSERT INTO runs ({", ".join(names)}, lease_expires_at)
    SELECT {", ".join(f"u.{n}" for n in names)},
           now() + make_interval(secs => u.lease_seconds)
    FROM {self.run.unnest("u")}
    ON CONFLICT DO NOTHING
    RETURNING id
),
{ctes}
SELECT id FROM r"""

    def arguments(self, batch: Sequence[Creation]) -> list[list[Any]]:
        run_rows = []
        for c in batch:
            lease: dict[str, Any] = {"lease_owner": None, "lease_epoch": 0, "lease_seconds": None}
            if c.lease is not None:
                owner, ttl = c.lease
                lease = {"lease_owner": owner, "lease_epoch": 1,
                         "lease_seconds": ttl.total_seconds()}  # fmt: skip
            run_rows.append(c.rows["runs"][0] | lease)
        arguments = self.run.arrays(run_rows)
        for table, columns in self.children:
            arguments += columns.arrays(r for c in batch for r in c.rows.get(table.name, ()))
        return arguments
