"""Group commit on PostgreSQL: the writes waiting at a moment share one statement.

A few writer tasks, each with its own asyncpg connection, take every write waiting in the
queue (up to MAX_BATCH, at most one per run) and hand them to their kind (`BatchKind`), which
writes them all in one statement: outside a transaction block that is one round trip and one
transaction, so one fsync for many runs' transitions, each caller released once it committed.
While one writer waits for the database, the next takes what arrived meanwhile.

A write the database refuses (a constraint, a deadlock) fails its whole statement: each write
of that batch is then run again alone, so only the failing one sees its error (a failure is
rare: savepoints around every write would cost every batch). A write the kind reports as not
made (a run whose lease or version moved) fails alone without failing the statement. A lost
or refused connection fails every write not yet committed with `Unavailable` (the driver
tries again); the next batch connects again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import asyncpg
import structlog
from asyncpg.exceptions import InternalClientError

from sluice.engine.errors import Unavailable
from sluice.store.executors import _TRY_AGAIN_SQLSTATES, _UNAVAILABLE_SQLSTATES

log = structlog.get_logger(__name__)

I = TypeVar("I")  # noqa: E741 - an item of a batch
I_contra = TypeVar("I_contra", contravariant=True)


class BatchKind(Protocol[I_contra]):
    async def run(self, conn: asyncpg.Connection, batch: Sequence[I_contra]) -> list[object]:
        """Write `batch` in one transaction; for each item, its result, or the exception its
        caller gets (the others' writes stand)."""
        ...


@dataclass(slots=True)
class _Pending(Generic[I]):
    kind: BatchKind[I]
    item: I
    key: str  # two writes with one key (a run) never share a batch
    future: asyncio.Future[Any]


def unavailable(error: BaseException) -> bool:
    """Whether asyncpg's `error` says "not now" (a lost or refused connection, a database
    shutting down or not accepting connections) rather than "wrong". A connection asyncpg
    finds in a state it cannot go on from (InternalClientError: the server ended the session
    between two statements, say) is as good as lost."""
    if isinstance(error, OSError | asyncpg.InterfaceError | InternalClientError | TimeoutError):
        return True
    sqlstate = str(getattr(error, "sqlstate", "") or "")
    return bool(sqlstate) and sqlstate.startswith(_UNAVAILABLE_SQLSTATES)


class GroupCommit:
    # How many writes one statement takes at most: enough to amortise the round trip and the
    # fsync, few enough that no caller waits long behind the others.
    MAX_BATCH = 256

    def __init__(self, dsn: str, *, writers: int = 2) -> None:
        self._dsn = dsn
        self._pending: deque[_Pending[Any]] = deque()
        self._ready = asyncio.Event()
        self._closed = False
        self._connections: list[asyncpg.Connection | None] = [None] * writers
        # Told each batch's size and how long its transaction took (the server's metrics).
        self.on_batch: Callable[[int, float], None] | None = None
        self._writers = [
            asyncio.create_task(self._write_loop(i), name=f"sluice-pg-writer-{i}")
            for i in range(writers)
        ]

    async def write(self, kind: BatchKind[I], item: I, key: str) -> Any:
        """`item` written with the others waiting now; its result once it committed."""
        if self._closed:
            raise Unavailable("the store is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(kind, item, key, future))
        self._ready.set()
        return await future

    async def close(self) -> None:
        self._closed = True
        for task in self._writers:
            task.cancel()
        await asyncio.gather(*self._writers, return_exceptions=True)
        for pending in self._pending:
            if not pending.future.done():
                pending.future.set_exception(Unavailable("the store is closed"))
        for conn in self._connections:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)

    def _take(self) -> list[_Pending[Any]]:
        batch: list[_Pending[Any]] = []
        keys: set[str] = set()
        later: list[_Pending[Any]] = []
        while self._pending and len(batch) < self.MAX_BATCH:
            pending = self._pending.popleft()
            if pending.future.done():
                continue  # its caller was cancelled before it was written
            if pending.key in keys:
                later.append(pending)  # the next batch, after this one committed
            else:
                keys.add(pending.key)
                batch.append(pending)
        self._pending.extendleft(reversed(later))
        return batch

    async def _write_loop(self, slot: int) -> None:
        while True:
            while not self._pending:
                self._ready.clear()
                await self._ready.wait()
            batch = self._take()
            if not batch:
                continue
            settled: dict[int, tuple[bool, Any]] = {}  # index -> (ok, result or error)
            try:
                conn = self._connections[slot]
                if conn is None or conn.is_closed():
                    conn = self._connections[slot] = await asyncpg.connect(self._dsn)
                began = time.perf_counter()
                for kind in {id(p.kind): p.kind for p in batch}.values():
                    await self._run(conn, kind, batch, settled)
                if self.on_batch is not None:
                    self.on_batch(len(batch), time.perf_counter() - began)
            except asyncio.CancelledError:  # closed with these in flight: they may or may not
                for pending in batch:  # have committed, as when a connection is lost
                    if not pending.future.done():
                        pending.future.set_exception(Unavailable("the store was closed"))
                raise
            except Exception as error:
                if not unavailable(error):
                    # A bug, or something nothing here knows how to undo: its callers see it.
                    log.error("a batch of writes failed", error=repr(error))
                failure = (
                    Unavailable(f"the database is unavailable: {error}")
                    if unavailable(error)
                    else error
                )
                for i in range(len(batch)):
                    settled.setdefault(i, (False, failure))
                await self._drop(slot)
            for i, pending in enumerate(batch):
                if pending.future.done():
                    continue
                ok, value = settled[i]
                if ok:
                    pending.future.set_result(value)
                else:
                    pending.future.set_exception(value)

    async def _run(
        self,
        conn: asyncpg.Connection,
        kind: BatchKind[Any],
        batch: list[_Pending[Any]],
        settled: dict[int, tuple[bool, Any]],
    ) -> None:
        """The writes of `batch` that are of `kind`, in one statement (or, should it fail,
        one by one); each one's outcome into `settled`."""
        mine = [i for i, p in enumerate(batch) if p.kind is kind]
        try:
            outcomes = await kind.run(conn, [batch[i].item for i in mine])
        except Exception as error:
            if unavailable(error):
                raise
            if len(mine) == 1:
                settled[mine[0]] = (False, _for_caller(error))
                return
            for i in mine:
                try:
                    (outcome,) = await kind.run(conn, [batch[i].item])
                except Exception as alone:
                    if unavailable(alone):
                        raise
                    settled[i] = (False, _for_caller(alone))
                else:
                    settled[i] = _outcome(outcome)
            return
        for i, outcome in zip(mine, outcomes, strict=True):
            settled[i] = _outcome(outcome)

    async def _drop(self, slot: int) -> None:
        conn, self._connections[slot] = self._connections[slot], None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()


def _for_caller(error: Exception) -> Exception:
    """A deadlock or serialization failure of a write run alone: `Unavailable`, which its
    caller tries again (another batch of runs, or a lease renewal, held a lock it wanted)."""
    sqlstate = str(getattr(error, "sqlstate", "") or "")
    if sqlstate.startswith(_TRY_AGAIN_SQLSTATES):
        return Unavailable(f"the database could not do it now: {error}")
    return error


def _outcome(value: object) -> tuple[bool, Any]:
    return (False, value) if isinstance(value, BaseException) else (True, value)
