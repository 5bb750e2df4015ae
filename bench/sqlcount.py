"""Counts the SQL statements a server sends to its database, for the benchmarks.

PostgreSQL counts transactions and rows per database without an extension, but not statements
(pg_stat_statements must be preloaded, which means restarting a cluster others use). So the
server counts them itself: the plugin `bench.sqlcount:register` (loaded with SLUICE_PLUGINS)
hooks SQLAlchemy's cursor execution in the server process and answers the running totals, as
one JSON object, to anyone who connects to the Unix socket named by SLUICE_BENCH_SQL_COUNTS.
A scenario reads them before and after its measured part (`read`), so warm-up and start-up
are left out.

What is counted is what SQLAlchemy hands the driver: one statement per execute, and an
executemany as one statement with `rows` parameter sets (asyncpg runs it as that many
executions of one prepared statement, in one round trip). Not counted: BEGIN, COMMIT and
ROLLBACK, which asyncpg sends itself (PostgreSQL's own transaction counts are in
`bench.pgstat`), and the connection pool's pre-ping (SQLAlchemy's asyncpg driver pings in a
transaction of its own, BEGIN, ";", ROLLBACK, on every checkout: `checkouts` counts them).
`connects` counts the connections the pools opened: each starts a PostgreSQL backend and runs
the driver's set-up queries (a pool's overflow connections are closed when given back while
the pool is full, and opened again on the next burst).
"""

from __future__ import annotations

import json
import os
import socket
import threading
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

ENV = "SLUICE_BENCH_SQL_COUNTS"  # the bench Server's setting bench_sql_counts


class _Counts:
    def __init__(self) -> None:
        self.statements = 0
        self.rows = 0  # parameter sets: executemany counts each
        self.by_verb: dict[str, int] = {}
        self.commits = 0
        self.checkouts = 0  # connections taken from the pool: each is pre-pinged
        self.connects = 0  # new connections opened (a PostgreSQL backend started for each)
        self._verbs: dict[str, str] = {}  # statement text -> its first word (texts repeat)

    def executed(self, statement: str, parameters: Any, executemany: bool) -> None:
        verb = self._verbs.get(statement)
        if verb is None:
            verb = self._verbs[statement] = (statement.split(None, 1) or ["?"])[0].upper()
        self.statements += 1
        self.rows += len(parameters) if executemany else 1
        self.by_verb[verb] = self.by_verb.get(verb, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "statements": self.statements,
            "rows": self.rows,
            "by_verb": dict(self.by_verb),
            "commits": self.commits,
            "checkouts": self.checkouts,
            "connects": self.connects,
        }


_counts = _Counts()


def _before_cursor_execute(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    _counts.executed(statement, parameters, executemany)


def _commit(conn: Any) -> None:
    _counts.commits += 1


def _checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    _counts.checkouts += 1


def _connect(dbapi_connection: Any, record: Any) -> None:
    _counts.connects += 1


def _serve(path: str) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    while True:
        peer, _ = listener.accept()
        with peer:
            peer.sendall(json.dumps(_counts.snapshot()).encode())


def register(registry: object) -> None:
    """The plugin: adds no step type; hooks every engine of the process (the class-level
    listeners reach engines created before and after) and serves the counts."""
    path = os.environ.get(ENV)
    if not path:
        return
    event.listen(Engine, "before_cursor_execute", _before_cursor_execute)
    event.listen(Engine, "commit", _commit)
    event.listen(Pool, "checkout", _checkout)
    event.listen(Pool, "connect", _connect)
    threading.Thread(target=_serve, args=(path,), name="bench-sqlcount", daemon=True).start()


def read(path: str, timeout: float = 10) -> dict[str, Any]:
    """The totals a server's plugin serves at `path`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(path)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    value: dict[str, Any] = json.loads(b"".join(chunks))
    return value


def delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """after - before, verb by verb."""
    verbs = set(after["by_verb"]) | set(before["by_verb"])
    return {
        "statements": after["statements"] - before["statements"],
        "rows": after["rows"] - before["rows"],
        "commits": after["commits"] - before["commits"],
        "checkouts": after["checkouts"] - before["checkouts"],
        "connects": after.get("connects", 0) - before.get("connects", 0),
        "by_verb": {
            v: after["by_verb"].get(v, 0) - before["by_verb"].get(v, 0) for v in sorted(verbs)
        },
    }
