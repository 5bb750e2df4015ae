"""Bytes on disk per stored run, per store: what a run costs to keep.

SQLite: the database file and its write-ahead log (read after the server has stopped, which
checkpoints the log into the file), and each table's share with its indexes from SQLite's
`dbstat` table. PostgreSQL: `pg_total_relation_size` (heap, indexes, TOAST) of each table, from
`bench.pgstat.usage`. Both divided by the runs the database holds; and both again compacted
(SQLite's VACUUM INTO a copy, PostgreSQL's VACUUM FULL): the live rows alone, without the free
pages and dead row versions that the updates of a run's life leave behind.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Any


def sqlite_usage(path: Path) -> dict[str, Any]:
    wal = path.with_name(path.name + "-wal")
    file_bytes = path.stat().st_size
    wal_bytes = wal.stat().st_size if wal.exists() else 0
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        runs = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
        owner = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE tbl_name <> ''"))
        tables: dict[str, int] = {}
        for name, size in conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
            table = owner.get(name, name)
            tables[table] = tables.get(table, 0) + size
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            copy = Path(tmp) / "compact.db"
            conn.execute("VACUUM INTO ?", (str(copy),))
            compact = copy.stat().st_size
    conn.close()
    return _per_run(runs, file_bytes + wal_bytes, tables, compact, wal_bytes=wal_bytes)


def postgres_usage(
    tables: dict[str, dict[str, int]], runs: int, compact: dict[str, int]
) -> dict[str, Any]:
    sizes = {name.removeprefix("public."): t["bytes"] for name, t in tables.items()}
    compacted = {name.removeprefix("public."): size for name, size in compact.items()}
    return _per_run(
        runs, sum(sizes.values()), sizes, sum(compact.values()),
        compact_tables=dict(sorted(compacted.items(), key=lambda kv: -kv[1])),
    )  # fmt: skip


def _per_run(
    runs: int, total: int, tables: dict[str, int], compact: int, **extra: Any
) -> dict[str, Any]:
    return {
        "runs": runs,
        "bytes": total,
        "bytes_per_run": total / runs if runs else None,
        "compact_bytes": compact,
        "compact_bytes_per_run": compact / runs if runs else None,
        "tables": dict(sorted(tables.items(), key=lambda kv: -kv[1])),
        **extra,
    }
