"""Where the store's SQL runs.

The SQL itself is written once, as plain functions of a synchronous SQLAlchemy `Connection`.
How they run differs by database:

- SQLite (`SqliteExecutor`): writes on the event loop's thread and their commit on a thread
  of its own, reads on two reader threads, each with its own pysqlite connection. Every write
  waiting at a moment shares ONE transaction (group commit): one fsync for many runs'
  transitions, each caller released only after that commit.
- PostgreSQL (`AsyncExecutor`): asyncpg through SQLAlchemy's async engine, one transaction per
  write, for everything but the hot path: a run's creation and its transitions have their
  own group commit on asyncpg directly (`postgres_group_commit`).

On a full disk the SQLite writer checkpoints the write-ahead log so that freeing space is
enough for writes to resume (`sqlite_wal`).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.engine.errors import Unavailable
from sluice.store.sqlite_wal import WalKeeper

T = TypeVar("T")
Work = Callable[[sa.Connection], T]


class Executor(Protocol):
    async def write(self, work: Work[T]) -> T:
        """Run `work` in a transaction that has committed when this returns. If `work` raises,
        nothing it wrote is kept and the error reaches the caller; `Unavailable` when the
        database could not do it now."""
        ...

    async def read(self, work: Work[T]) -> T: ...

    async def close(self) -> None: ...


# PostgreSQL error classes that say "not now" rather than "wrong": connection exceptions,
# insufficient resources, operator intervention (shutdown, "cannot connect now"), and 55000,
# which is what a database that is not accepting connections answers.
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P", "55000")
# A deadlock or a serialization failure: the same work succeeds when tried again (a lease
# renewal that met a batch of transitions locking the same runs in another order).
_TRY_AGAIN_SQLSTATES = ("40P01", "40001")


def unavailable(error: BaseException) -> bool:
    """Whether `error` says the database could not do the work now (a lock held past the busy
    timeout, a lost or refused connection, a full disk) rather than that the work is wrong."""
    # sqlalchemy's TimeoutError: no pooled connection came free in time (the database slow
    # or locked): "not now" too, though no DBAPI error says so.
    if isinstance(
        error, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError | OSError
    ):
        return True
    if isinstance(error, sa_exc.DBAPIError):
        sqlstate = str(getattr(error.orig, "sqlstate", "") or "")
        return error.connection_invalidated or sqlstate.startswith(
            _UNAVAILABLE_SQLSTATES + _TRY_AGAIN_SQLSTATES
        )
    return False


class _Translated:
    """`with _Translated():` turns the database's "not now" errors into `Unavailable`. (A class
    rather than @contextmanager: it wraps every transaction, and costs an eighth as much.)"""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, error: BaseException | None, _tb: object) -> None:
        if isinstance(error, sa_exc.DBAPIError | sa_exc.TimeoutError | OSError) and unavailable(
            error
        ):
            detail = error.orig if isinstance(error, sa_exc.DBAPIError) else error
            raise Unavailable(f"the database is unavailable: {detail}") from error


_translated = _Translated()


class AsyncExecutor:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        # A read is several statements (a run's row, then its steps, gates and template): in
        # one snapshot, or under READ COMMITTED a commit landing between them would give a
        # run whose steps are newer than its row. (Read-only, so it never fails to serialize.)
        self._reader = engine.execution_options(isolation_level="REPEATABLE READ")

    async def write(self, work: Work[T]) -> T:
        with _translated:
            async with self._engine.begin() as conn:
                return await conn.run_sync(work)

    async def read(self, work: Work[T]) -> T:
        with _translated:
            async with self._reader.connect() as conn:
                return await conn.run_sync(work)

    async def close(self) -> None:
        await self._engine.dispose()


@dataclass
class _Pending:
    work: Work[Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    result: Any = None
    error: BaseException | None = None


class SqliteExecutor:
    """SQLite's writes on the event loop's thread, their commits on a thread of their own;
    reads on two reader threads.

    The writes waiting at a moment share one transaction (group commit): their statements run
    on the loop's thread, then the commit (the fsync) on the committer thread while the loop
    goes on; the next batch starts once it returns. Statements ran on a writer thread before:
    pysqlite gives up the GIL around every statement and takes it back from a busy event loop
    (up to the interpreter's 5 ms switch interval each time), so a batch of two transitions
    took 2.4-3.5 ms where its commit alone takes 0.34 ms, and under load commits queued for
    hundreds of milliseconds (bench/README.md). Now a batch hands the GIL over twice."""

    # How many waiting writes one transaction takes at most: enough to amortise the fsync,
    # few enough that no caller waits long behind the others.
    MAX_BATCH = 256

    def __init__(self, writer: sa.Engine, reader: sa.Engine) -> None:
        self._engine = writer
        self._reader = reader
        self._waiting: deque[_Pending] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self._conn: sa.Connection | None = None  # the writer's, kept across transactions
        self._closed = False
        self._committer = _Committer()
        # Two readers: SQLite in WAL mode reads concurrently, and a call's independent reads
        # (say, a template and a count) can overlap. Each thread keeps its connection (a pool
        # checkout and return per read cost more than many reads themselves).
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sluice-sqlite-reader")
        self._reader_local = threading.local()
        self._reader_connections: list[sa.Connection] = []
        self._reader_lock = threading.Lock()
        self._wal = WalKeeper(Path(writer.url.database or ""))
        # Told each batch's size and how long its transaction took (the server's metrics).
        self.on_batch: Callable[[int, float], None] | None = None

    async def write(self, work: Work[T]) -> T:
        if self._closed:
            raise Unavailable("the store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._waiting.append(_Pending(work, future, loop))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush(), name="sluice-sqlite-writes")
        with _translated:
            return await future

    async def read(self, work: Work[T]) -> T:
        with _translated:
            return await asyncio.get_running_loop().run_in_executor(self._readers, self._read, work)

    async def close(self) -> None:
        self._closed = True
        if self._flusher is not None:
            await asyncio.shield(self._flusher)  # the writes already waiting are made
        await self._committer.close()
        self._readers.shutdown(wait=True)
        for conn in self._reader_connections:
            conn.close()
        if self._conn is not None:
            self._conn.close()
        self._engine.dispose()
        self._reader.dispose()

    def _read(self, work: Work[T]) -> T:
        conn: sa.Connection | None = getattr(self._reader_local, "conn", None)
        if conn is None or conn.invalidated:
            conn = self._reader_local.conn = self._reader.connect()
            with self._reader_lock:
                self._reader_connections.append(conn)
        try:
            return work(conn)
        finally:
            conn.rollback()  # end the read transaction: the next read sees what committed since

    async def _flush(self) -> None:
        """Write batches until none waits."""
        try:
            while self._waiting:
                batch = [
                    self._waiting.popleft() for _ in range(min(self.MAX_BATCH, len(self._waiting)))
                ]
                try:
                    if self._conn is None or self._conn.invalidated:
                        self._conn = self._engine.connect()
                    began = time.perf_counter()
                    await self._commit(self._conn, batch)
                    if self.on_batch is not None:
                        self.on_batch(len(batch), time.perf_counter() - began)
                except Exception as error:  # could not connect, or not even begin
                    for pending in batch:
                        pending.result, pending.error = None, error
                _settle(batch)
        finally:
            self._flusher = None

    async def _commit(
        self, conn: sa.Connection, batch: list[_Pending], *, may_retry: bool = True
    ) -> None:
        """All of `batch` in one transaction. Should one write fail, the transaction is undone
        and each write runs again in its own, so only the failing one sees its error (a
        failure is rare: savepoints around every write would cost every batch). A batch that
        failed for lack of space runs again once if a checkpoint gave the log's space back."""
        raw: Any = conn.connection.dbapi_connection
        if self._wal.full:
            await self._committer.run(self._wal.before_write, raw)
        transaction = conn.begin()
        try:
            for pending in batch:
                pending.result = pending.work(conn)
            await self._committer.run(self._commit_now, transaction, raw)
        except Exception as error:
            # (A commit that failed leaves its transaction inactive but still the
            # connection's: it must be rolled back before the next one can begin.)
            with contextlib.suppress(Exception):
                transaction.rollback()
            if may_retry and await self._committer.run(self._wal.write_failed, raw, error):
                return await self._commit(conn, batch, may_retry=False)
            if len(batch) == 1 or unavailable(error):
                # The database itself failed (say, locked past the busy timeout): every write
                # would fail the same way, so all of them get the error at once.
                for pending in batch:
                    pending.result, pending.error = None, error
                return
            for pending in batch:
                pending.result = None
                await self._commit(conn, [pending])

    def _commit_now(self, transaction: sa.RootTransaction, raw: Any) -> None:
        """(On the committer thread.) The fsync, then the log's upkeep."""
        transaction.commit()
        self._wal.after_commit(raw)


class _Committer:
    """The thread SQLite's commits (and checkpoints) run on, fed by a queue: lighter than an
    executor's futures on a path every transaction takes."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any]] | None]
        self._queue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="sluice-sqlite-commit", daemon=True)
        self._thread.start()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put((lambda: fn(*args), future))
        return await future

    async def close(self) -> None:
        self._queue.put(None)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            call, future = item
            try:
                outcome: tuple[bool, Any] = (True, call())
            except BaseException as error:  # handed to the waiting caller, whatever it is
                outcome = (False, error)
            future.get_loop().call_soon_threadsafe(_resolve, future, outcome)


def _resolve(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.cancelled():
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def _settle(batch: list[_Pending]) -> None:
    """Each caller gets its result or error (on its own loop, should it have another)."""
    here = asyncio.get_running_loop()
    by_loop: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
    for pending in batch:
        by_loop.setdefault(pending.loop, []).append(pending)
    for loop, settled in by_loop.items():
        if loop is here:
            _settle_all(settled)
        else:
            loop.call_soon_threadsafe(_settle_all, settled)


def _settle_all(batch: list[_Pending]) -> None:
    for pending in batch:
        if pending.future.cancelled():
            continue
        if pending.error is not None:
            pending.future.set_exception(pending.error)
        else:
            pending.future.set_result(pending.result)
