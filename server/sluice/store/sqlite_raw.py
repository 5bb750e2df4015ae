"""The hot-path statements, executed on the raw sqlite3 cursor.

The statements are still the SQLAlchemy constructs of `base` (one definition of the SQL);
this only skips SQLAlchemy's per-execution work on SQLite, where the writes'
interpreter time bounds throughput: each statement is compiled once, and values are converted
the way SQLAlchemy's SQLite types store them (JSON as text, datetimes as
"YYYY-MM-DD HH:MM:SS.ffffff" in UTC), so rows written here read back through SQLAlchemy
unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

_DIALECT = sqlite.dialect()


def _json(value: Any) -> Any:
    if value is None:
        return None
    if not value and isinstance(value, dict):
        return "{}"  # most event details and step outputs: json.dumps costs ~1.5 us even here
    return json.dumps(value)


# Formatted times by value: a run's times (created, started, each step's start) are written
# again with every transition, and a lookup costs a twentieth of formatting. Bounded: cleared
# when full. (Only the writes, on the event loop's thread, format.)
_FORMATTED: dict[datetime, str] = {}
_FORMATTED_MAX = 4096


def _datetime(value: datetime | None) -> str | None:
    if value is None:
        return None
    text = _FORMATTED.get(value)
    if text is None:
        if len(_FORMATTED) >= _FORMATTED_MAX:
            _FORMATTED.clear()
        # SQLAlchemy's format (it ignores the zone; ours are UTC): the first 26 characters of
        # isoformat, which is fixed width with microseconds and faster than strftime.
        text = _FORMATTED[value] = value.isoformat(" ", "microseconds")[:26]
    return text


class RawStatement:
    def __init__(self, statement: sa.Insert | sa.Update | sa.Delete, table: sa.Table) -> None:
        compiled = statement.compile(dialect=_DIALECT)
        assert compiled.positiontup is not None, "the SQLite dialect binds positionally"
        self.sql = str(compiled)
        self.names: tuple[str, ...] = tuple(compiled.positiontup)
        # What each position binds when a row leaves it out: the statement's own literals
        # (e.g. the OFFSET 0 SQLite adds to a bound LIMIT), else NULL.
        self._binds = tuple((name, compiled.params.get(name)) for name in self.names)
        # Only the columns whose values need converting (JSON, datetimes), by position.
        self.conversions: tuple[tuple[int, Callable[[Any], Any]], ...] = tuple(
            (i, convert)
            for i, name in enumerate(self.names)
            if (column := table.c.get(name.removeprefix("k_"))) is not None
            and (convert := _converter(column.type)) is not None
        )

    def execute(self, cursor: Any, rows: Sequence[Mapping[str, Any]]) -> int:
        """Run for every row (executemany); returns the number of rows changed."""
        # A column the row leaves out binds NULL: for the outbox's INTEGER PRIMARY KEY that
        # means "assign the next id"; for a NOT NULL column, an error that surfaces.
        values = []
        for row in rows:
            bound = [row.get(name, default) for name, default in self._binds]
            for i, convert in self.conversions:
                bound[i] = convert(bound[i])
            values.append(bound)
        if len(values) == 1:
            cursor.execute(self.sql, values[0])
        else:
            cursor.executemany(self.sql, values)
        return int(cursor.rowcount)


class RawReturning(RawStatement):
    """An UPDATE ... RETURNING whose rows come back as SQLAlchemy would read them."""

    def __init__(self, statement: sa.Update) -> None:
        super().__init__(statement, cast(sa.Table, statement.table))
        # The returned columns, each with how its stored value is read back.
        self._columns = tuple((c.name, _reader(c.type)) for c in statement.exported_columns)

    def rows(self, cursor: Any, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        self.execute(cursor, [values])
        return [
            {
                name: value if read is None or value is None else read(value)
                for (name, read), value in zip(self._columns, row, strict=True)
            }
            for row in cursor.fetchall()
        ]


def _reader(kind: sa.types.TypeEngine[Any]) -> Callable[[Any], Any] | None:
    if isinstance(kind, sa.JSON):
        return json.loads
    if isinstance(kind, sa.DateTime):
        return datetime.fromisoformat
    if isinstance(kind, sa.Boolean):
        return bool
    return None


def _converter(kind: sa.types.TypeEngine[Any]) -> Callable[[Any], Any] | None:
    if isinstance(kind, sa.JSON):
        return _json
    if isinstance(kind, sa.DateTime):
        return _datetime
    return None
