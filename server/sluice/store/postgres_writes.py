"""The hot path's writes on PostgreSQL: a batch of runs' transitions (or of new runs) as ONE
statement, run by asyncpg directly.

Each statement binds one array per column (`unnest`), so a batch of any size is one prepared
statement, one round trip and, run outside a transaction block, one transaction with one
fsync. A transition's compare-and-set UPDATE of its run comes first, in a data-modifying CTE
(`r`) that returns the runs it matched; every other table's rows join on that, so nothing is
written for a run whose UPDATE matched nothing (its lease or its version moved), while the
rest of the batch is written.

A statement has only the parts its batch needs (most transitions touch no gate, outbox,
timer or command): each part left out saves PostgreSQL its planning and execution, which
measured about 0.9 ms for every part at once against 0.13 ms for a run, its steps and events.
The variants are built on first use and prepared once per connection.

The column lists and types come from `schema` and the rows from `base` (the very dicts the
SQLAlchemy path writes): only the shape of the SQL is written here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
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

Rows = list[dict[str, Any]]
Notices = tuple[list[str], list[str]]  # (channel, payload) of each notice, as two arrays
NO_NOTICES: Notices = ([], [])


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
    def _json(self) -> tuple[int, ...]:
        return tuple(
            i
            for i, n in enumerate(self.names)
            if isinstance(self.table.c[n.removeprefix("k_")].type, sa.JSON)
        )

    def arrays(self, rows: Iterable[Mapping[str, Any]]) -> list[list[Any]]:
        names = [n for n, _ in self.columns]
        columns: list[list[Any]] = [[] for _ in names]
        for row in rows:
            for column, name in zip(columns, names, strict=True):
                column.append(row.get(name))
        for i in self._json:
            columns[i] = [_json(v) for v in columns[i]]
        return columns


def _set(names: Iterable[str]) -> str:
    return ", ".join(f"{n} = v.{n}" for n in names)


# Only for the runs whose row was written (r: the runs' CTE).
_IN_R = "v.run_id IN (SELECT id FROM r)"


def _insert(table: sa.Table, names: Sequence[str]) -> Callable[[str], str]:
    def sql(unnest: str) -> str:
        return (
            f"INSERT INTO {table.name} ({', '.join(names)})\n"
            f"    SELECT {', '.join(f'v.{n}' for n in names)} FROM {unnest}\n"
            f"    WHERE {_IN_R}"
        )

    return sql


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


class _Statement:
    """A statement of parts (the first is `r`, the runs' CTE, which returns the ids of the
    runs it wrote; then the others, each joined on it; then the notices), in the variant
    that holds the parts a batch has rows for."""

    def __init__(self, parts: Sequence[_Part]) -> None:
        self.parts = tuple(parts)
        self._variants: dict[tuple[str, ...], str] = {}

    def sql(self, present: tuple[str, ...]) -> str:
        known = self._variants.get(present)
        if known is None:
            known = self._variants[present] = self._build(present)
        return known

    def _build(self, present: tuple[str, ...]) -> str:
        n = 1
        ctes: list[str] = []
        notices = ""
        for part in self.parts:
            if part.name not in present:
                continue
            columns = part.columns
            arrays = ", ".join(f"${n + i}::{kind}[]" for i, (_, kind) in enumerate(columns))
            unnest = f"unnest({arrays}) AS v({', '.join(name for name, _ in columns)})"
            n += len(columns)
            if part is _NOTICES:
                notices = f"\nUNION ALL\n{part.sql(unnest)}"
            else:
                # ("r" for the runs; the others' names never shadow a table they write)
                name = part.name if part.name == "r" else f"w_{part.name}"
                ctes.append(f"{name} AS (\n    {part.sql(unnest)}\n)")
        return "WITH " + ",\n".join(ctes) + f"\nSELECT id FROM r{notices}"

    def arguments(
        self, rows: Mapping[str, Iterable[Mapping[str, Any]]], notices: Notices
    ) -> tuple[str, list[list[Any]]]:
        """The variant's SQL for these rows (by part) and its arguments."""
        arguments: list[list[Any]] = []
        present = []
        for part in self.parts:
            if part is _NOTICES:
                if notices[0]:
                    present.append(part.name)
                    arguments += notices
                continue
            listed = list(rows.get(part.name, ()))
            if listed or part.name == "r":
                present.append(part.name)
                arguments += part.arrays(listed)
        return self.sql(tuple(present)), arguments


# --- transitions ----------------------------------------------------------------------------

_COMMIT = _Statement(
    [
        _Part(
            "r",
            runs,
            ("k_id", "k_version", "k_lease_owner", "k_lease_epoch", *_RUN_FIELDS),
            lambda unnest: f"""UPDATE runs SET {_set(_RUN_FIELDS)}
    FROM {unnest}
    WHERE runs.id = v.k_id AND runs.version = v.k_version
      AND (NOT v.fenced
           OR (runs.lease_owner = v.k_lease_owner AND runs.lease_epoch = v.k_lease_epoch))
    RETURNING runs.id""",
            extra=(("fenced", "BOOLEAN"),),
        ),
        _Part(
            "steps",
            step_runs,
            ("k_run_id", "k_step_id", *_STEP_FIELDS),
            lambda unnest: f"""UPDATE step_runs SET {_set(_STEP_FIELDS)}
    FROM {unnest}
    WHERE step_runs.run_id = v.k_run_id AND step_runs.step_id = v.k_step_id
      AND v.k_run_id IN (SELECT id FROM r)""",
        ),
        _Part(
            "gates",
            gate_results,
            ("k_run_id", "k_gate_id", *_GATE_FIELDS),
            lambda unnest: f"""UPDATE gate_results SET {_set(_GATE_FIELDS)}
    FROM {unnest}
    WHERE gate_results.run_id = v.k_run_id AND gate_results.gate_id = v.k_gate_id
      AND v.k_run_id IN (SELECT id FROM r)""",
        ),
        _Part("events", events, tuple(c.name for c in events.c),
              _insert(events, [c.name for c in events.c])),
        _Part("outbox", outbox, ("run_id", "step_id", "kind", "channel", "payload", "created_at"),
              _insert(outbox, ("run_id", "step_id", "kind", "channel", "payload", "created_at"))),
        _Part(
            "cleared",
            timers,
            ("run_id", "key"),
            lambda unnest: f"""DELETE FROM timers USING {unnest}
    WHERE timers.run_id = v.run_id AND timers.key = v.key AND {_IN_R}""",
        ),
        _Part(
            "timers",
            timers,
            ("run_id", "key", "fire_at"),
            lambda unnest: _insert(timers, ("run_id", "key", "fire_at"))(unnest)
            + "\n    ON CONFLICT (run_id, key) DO UPDATE SET fire_at = EXCLUDED.fire_at",
        ),
        _Part(
            "commands",
            run_commands,
            ("k_id", "run_id", "outcome", "done_at"),
            lambda unnest: f"""UPDATE run_commands SET outcome = v.outcome, done_at = v.done_at
    FROM {unnest}
    WHERE run_commands.id = v.k_id AND {_IN_R}""",
        ),
        _NOTICES,
    ]
)  # fmt: skip


def commit_statement(batch: Sequence[Transition], notices: Notices) -> tuple[str, list[Any]]:
    """Transitions of distinct runs in one statement, which returns the ids of the runs it
    wrote (and a NULL when it sends notices). Not written: a run whose version, or (when
    fenced) lease, is no longer the one its transition expects; `LEASES_SQL` tells which."""
    cleared: Rows = []
    set_: Rows = []
    for t in batch:
        for key, at in t.timers.items():
            (set_ if at is not None else cleared).append(
                {"run_id": t.run_id, "key": key, "fire_at": at}
            )
    rows: dict[str, Iterable[Mapping[str, Any]]] = {
        "r": [t.run | {"fenced": t.fence is not None} for t in batch],
        "steps": [row for t in batch for row in t.steps],
        "gates": [row for t in batch for row in t.gates],
        "events": [row for t in batch for row in t.events],
        "outbox": [row for t in batch for row in t.outbox],
        "cleared": cleared,
        "timers": set_,
        "commands": [t.command | {"run_id": t.run_id} for t in batch if t.command is not None],
    }
    return _COMMIT.arguments(rows, notices)


# Why fenced writes matched nothing: the leases stored now (read once their batch committed).
LEASES_SQL = "SELECT id, lease_owner, lease_epoch FROM runs WHERE id = ANY($1::varchar[])"


# --- new runs -------------------------------------------------------------------------------


class Creation:
    """A new run's rows (`base.creation_writes`) and, on a cluster, the lease it is created
    with: (server id, time to live; the expiry is set by the database's clock)."""

    __slots__ = ("lease", "rows", "run_id")

    def __init__(self, writes: Writes, lease: tuple[str, timedelta] | None) -> None:
        self.rows: dict[str, Rows] = {
            statement.table.name: rows  # type: ignore[union-attr]
            for statement, rows in writes
        }
        self.run_id: str = self.rows["runs"][0]["id"]
        self.lease = lease


_RUN_COLUMNS = tuple(c.name for c in runs.c if c.name != "lease_expires_at")
_CREATE = _Statement(
    [
        _Part(
            "r",
            runs,
            _RUN_COLUMNS,
            lambda unnest: f"""INSERT INTO runs ({", ".join(_RUN_COLUMNS)}, lease_expires_at)
    SELECT {", ".join(f"v.{n}" for n in _RUN_COLUMNS)},
           now() + make_interval(secs => v.lease_seconds)
    FROM {unnest}
    ON CONFLICT DO NOTHING
    RETURNING id""",
            extra=(("lease_seconds", "FLOAT8"),),
        ),
        *(
            _Part(table.name, table, tuple(c.name for c in table.c),
                  _insert(table, [c.name for c in table.c]))
            for table in (step_runs, gate_results, events)
        ),
        _NOTICES,
    ]
)  # fmt: skip


def create_statement(batch: Sequence[Creation], notices: Notices) -> tuple[str, list[Any]]:
    """New runs in one statement, which returns the ids of the runs it inserted (and a NULL
    when it sends notices): a run whose request id its owner already used is not (nor are its
    steps, gates and events)."""
    run_rows = []
    for c in batch:
        lease: dict[str, Any] = {"lease_owner": None, "lease_epoch": 0, "lease_seconds": None}
        if c.lease is not None:
            owner, ttl = c.lease
            lease = {"lease_owner": owner, "lease_epoch": 1, "lease_seconds": ttl.total_seconds()}
        run_rows.append(c.rows["runs"][0] | lease)
    rows: dict[str, Iterable[Mapping[str, Any]]] = {"r": run_rows}
    for table in (step_runs, gate_results, events):
        rows[table.name] = [r for c in batch for r in c.rows.get(table.name, ())]
    return _CREATE.arguments(rows, notices)
