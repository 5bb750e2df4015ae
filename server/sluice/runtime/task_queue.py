"""The workers' side of task steps: taking tasks, reporting on them, handing them back.

Every call works on the task rows (`TaskStore`), by compare-and-set on the task's state and
delivery (its lease epoch): a worker whose lease moved on (its task timed out, went to another
worker, or was cancelled with its step) changes nothing and is told why. Whatever changes a
task is reported through `changed`, which pokes the task's follower (on this server or, by
notice, on the one driving the run).

Waiting polls sleep until a task of one of their types is queued here (`wake`), or another
server's notice says so, or every `recheck` on several servers, in case a notice was lost.
A stream of tasks (`WorkerSession`) holds credits: it takes no more tasks than its worker
granted, and hands back those it holds when it breaks.

Sync match: a task queued while a stream of this server has a credit free and nothing older
waiting for it is handed to that stream in the commit that queues it (written ACTIVE), as
Temporal's matching does for a waiting poller: no activation statement, no wake-up and look.
Under a backlog streams take from the queue, oldest first; where results are recorded in the
commits of their outcomes (`record`), the credits a stream's results free take the oldest
queued tasks in the commit that records those results (`claim`): one transaction for the
results, what they lead to and the worker's next tasks, which go out with their answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any, NamedTuple

from sluice.engine.errors import FailedPrecondition, NotFound
from sluice.engine.ports import (
    Clock,
    QueueStats,
    TaskClaim,
    TaskKey,
    TaskRecord,
    TaskResult,
    TaskState,
    TaskStore,
)
from sluice.runtime.probes import NO_PROBES, Probes
from sluice.runtime.tasks import TaskSettings

Changed = Callable[[Sequence[TaskRecord]], None]
Record = Callable[[TaskResult], asyncio.Future[bool] | None]


class Matched(NamedTuple):
    """A task handed to a stream as it is queued (sync match), ACTIVE for that stream."""

    task: TaskRecord
    session: WorkerSession


class Claimed(NamedTuple):
    """A stream's claim on queued tasks, made for a commit (its credits reserved meanwhile);
    `wakes`: the stream's count of tasks-queued notices when it was made."""

    claim: TaskClaim
    session: WorkerSession
    wakes: int


# Credits a stream may hold at once: more would only fill the worker's memory.
MAX_CREDITS = 1000


class TaskQueue:
    def __init__(
        self,
        store: TaskStore,
        clock: Clock,
        changed: Changed,
        settings: TaskSettings = TaskSettings(),
        recheck: timedelta | None = None,
        probes: Probes = NO_PROBES,
        record: Record | None = None,
    ) -> None:
        """`record`: records a worker's result with the outcome it brings, where it can (see
        `Engine.record_result`: a future saying whether it did, or None when it cannot); a
        result it does not record is recorded here, in the store.
        With it, the credits that come with a stream's results are held back for the commits
        that record them to take tasks with (`claim`), until the results are recorded."""
        self._store = store
        self._record = record
        self._clock = clock
        self._probes = probes
        self._changed = changed
        self.settings = settings
        self.recheck = recheck.total_seconds() if recheck is not None else None
        self._waiting: dict[str, set[asyncio.Future[None]]] = {}
        self._sessions: set[WorkerSession] = set()
        self._holders: dict[TaskKey, WorkerSession] = {}
        self._jobs: set[asyncio.Task[None]] = set()
        self._closing = False

    # --- taking tasks -----------------------------------------------------------------------

    def wake(self, task_types: Iterable[str] | None = None) -> None:
        """Tasks of these types were queued (None: any may have been): waiting polls look."""
        types = set(self._waiting) if task_types is None else set(task_types)
        for task_type in types:
            for woken in self._waiting.pop(task_type, ()):
                if not woken.done():
                    woken.set_result(None)
        for session in self._sessions:
            if task_types is None or not types.isdisjoint(session.task_types):
                session.queued()

    async def poll(
        self,
        owner: str,
        task_types: Sequence[str],
        limit: int,
        worker: str,
        wait: float,
    ) -> list[TaskRecord]:
        """Take up to `limit` of the owner's queued tasks of these types, waiting up to `wait`
        seconds for one to come; [] when none came (or the server is stopping)."""
        deadline = time.monotonic() + wait
        loop = asyncio.get_running_loop()
        while True:
            woken: asyncio.Future[None] = loop.create_future()
            for task_type in task_types:  # before looking: a task queued meanwhile wakes us
                self._waiting.setdefault(task_type, set()).add(woken)
            try:
                taken = await self._take(owner, task_types, limit, worker)
                if taken:
                    self._changed(taken)
                    return taken
                left = deadline - time.monotonic()
                if left <= 0 or self._closing:
                    return []
                if self.recheck is not None:
                    left = min(left, self.recheck)
                await asyncio.wait([woken], timeout=left)
            finally:
                for task_type in task_types:
                    waiting = self._waiting.get(task_type)
                    if waiting is not None:
                        waiting.discard(woken)
                        if not waiting:
                            del self._waiting[task_type]

    async def _take(
        self, owner: str, task_types: Sequence[str], limit: int, worker: str
    ) -> list[TaskRecord]:
        """Activate tasks; a caller that goes away meanwhile (its deadline, its stream) hands
        them straight back rather than leave them to time out."""
        taking = asyncio.ensure_future(
            self._store.activate_tasks(
                owner, task_types, limit, worker, self._clock.now(), self.settings.ack_window
            )
        )
        try:
            taken = await asyncio.shield(taking)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await self.release([t.key for t in await taking])
            raise
        for task in taken:
            if task.delivery == 1 and task.activated_at is not None:  # a first delivery
                waited = (task.activated_at - task.queued_at).total_seconds()
                self._probes.task_taken(task.task_type, waited)
        return taken

    # --- sync match: tasks handed to a waiting stream in the commit that queues them -------

    def match(self, queued: Sequence[TaskRecord]) -> list[Matched]:
        """Tasks a commit is about to queue that a stream of this server can take now (its
        owner's, of its types, with a credit free): each comes back ACTIVE for that stream,
        to be written so in the same commit, its credit reserved. No activation statement,
        no wait for the stream to look. The caller settles each with `matched` once the commit
        is stored, or `unmatched` if it failed."""
        if not queued or self._closing or not self._sessions:
            return []
        now = self._clock.now()
        expires_at = now + self.settings.ack_window
        found: list[Matched] = []
        for task in queued:
            session = self._free_stream(task)
            if session is None:
                continue
            session.credits -= 1
            active = replace(
                task, state=TaskState.ACTIVE, delivery=task.delivery + 1, worker=session.worker,
                activated_at=now, expires_at=expires_at,
            )  # fmt: skip
            found.append(Matched(active, session))
        return found

    def _free_stream(self, task: TaskRecord) -> WorkerSession | None:
        """The stream with the most credits free that may take `task` now. Not one that may
        have older tasks waiting for it (`pending`: it was told of a task it has not looked
        for yet, or its last look filled its credits): it takes those first, oldest first, so
        a new task never overtakes a backlog."""
        best: WorkerSession | None = None
        for session in self._sessions:
            if (
                session.credits > 0
                and not session.pending
                and not session.closed
                and session.owner == task.owner
                and task.task_type in session.types
                and (best is None or session.credits > best.credits)
            ):
                best = session
        return best

    def matched(self, found: Sequence[Matched]) -> None:
        """Their commit is stored: each task goes to its stream, or, when the stream closed
        meanwhile, back to the queue for the next worker."""
        gone: list[TaskKey] = []
        for task, session in found:
            waited = (task.activated_at - task.queued_at).total_seconds()  # type: ignore[operator]
            self._probes.task_taken(task.task_type, waited)
            if session.closed or session not in self._sessions:
                gone.append(task.key)
                continue
            self._holders[task.key] = session
            session.held.add(task.key)
            session.ready.append(task)
            session.nudge()
        if gone:
            self._spawn(self.release(gone))

    def unmatched(self, found: Sequence[Matched]) -> None:
        """Their commit failed: the credits reserved are free again."""
        for _, session in found:
            session.credits += 1
            session.nudge()

    # --- claims: queued tasks taken in a commit, by the credits its results freed -----------

    @property
    def claims_in_commits(self) -> bool:
        return self._record is not None

    def claim(self) -> list[Claimed]:
        """Claims for a commit about to be made: for each stream of this server with credits
        free (held back for results or not) and tasks perhaps waiting for it, all those
        credits, reserved. The caller settles them with `claimed` once the commit is stored
        (what each took), or `unclaimed` if it failed. None where results are not recorded in
        commits (whose stores are sent no claims)."""
        if not self.claims_in_commits or self._closing or not self._sessions:
            return []
        now = self._clock.now()
        found: list[Claimed] = []
        for session in self._sessions:
            free = min(MAX_CREDITS, session.credits + session.held_back)
            if free <= 0 or not session.pending or session.closed:
                continue
            session.credits = session.held_back = 0
            claim = TaskClaim(
                session.owner, session.task_types, free, session.worker, now,
                now + self.settings.ack_window,
            )  # fmt: skip
            found.append(Claimed(claim, session, session.wakes))
        return found

    def claimed(self, found: Sequence[Claimed], taken: Sequence[Sequence[TaskRecord]]) -> None:
        """Their commit is stored, and took `taken` (claim by claim): each stream gets its
        tasks (back to the queue, should it have closed meanwhile) and the credits they did
        not use."""
        gone: list[TaskKey] = []
        changed: list[TaskRecord] = []
        for (claim, session, wakes), tasks in zip(found, taken, strict=True):
            for task in tasks:
                waited = (task.activated_at - task.queued_at).total_seconds()  # type: ignore[operator]
                self._probes.task_taken(task.task_type, waited)
            changed += tasks
            session.credits = min(MAX_CREDITS, session.credits + claim.limit - len(tasks))
            if len(tasks) < claim.limit and session.wakes == wakes:
                session.pending = False  # none of its tasks waits, and none was queued since
            if session.closed or session not in self._sessions:
                gone += [t.key for t in tasks]
                continue
            for task in tasks:
                self._holders[task.key] = session
                session.held.add(task.key)
            session.ready += tasks
            session.nudge()
        if changed:
            self._changed(changed)
        if gone:
            self._spawn(self.release(gone))

    def unclaimed(self, found: Sequence[Claimed]) -> None:
        """Their commit failed: the credits reserved are free again."""
        for claim, session, _ in found:
            session.credits = min(MAX_CREDITS, session.credits + claim.limit)
            session.nudge()

    def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(job)
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    def close_sessions(self) -> None:
        """The server is stopping: every stream ends now, cleanly (its worker keeps the tasks
        it holds and reports them, here until the end or to another server), and waiting
        polls return empty."""
        self._closing = True
        for session in list(self._sessions):
            session.close()
        self.wake()

    def session(self, owner: str, task_types: Sequence[str], worker: str) -> WorkerSession:
        """A stream's session; it ends with `forget` or `hand_back`."""
        session = WorkerSession(self, owner, task_types, worker)
        self._sessions.add(session)
        return session

    # --- reports ----------------------------------------------------------------------------

    async def heartbeat(self, owner: str, key: TaskKey) -> bool:
        """The worker is on it; True when its step was cancelled (stop, report nothing)."""
        acknowledged, task = await self._store.acknowledge_task(owner, key)
        if task is None:
            raise NotFound(_unknown(key))
        if task.key == key and task.state is TaskState.CANCELLED:
            return True
        if task.key != key or task.state is not TaskState.ACTIVE:
            raise FailedPrecondition(_why_not(task, key))
        if acknowledged:
            self._changed([task])  # its deadline moved: the follower reads it again
        return False

    async def complete(
        self, owner: str, key: TaskKey, output: Mapping[str, Any], *, in_commit: bool = True
    ) -> None:
        """`in_commit`: tried with its outcome first (see `record_soon`)."""
        await self._finish(
            owner, key, TaskState.COMPLETED, {"output": dict(output)}, in_commit=in_commit
        )

    async def fail(
        self,
        owner: str,
        key: TaskKey,
        error: str,
        *,
        retryable: bool,
        retry_after: timedelta | None,
        error_type: str = "",
    ) -> None:
        result: dict[str, Any] = {"error": error, "retryable": retryable}
        if error_type:
            result["errorType"] = error_type
        if retry_after is not None:
            result["retryAfter"] = retry_after.total_seconds()
        await self._finish(owner, key, TaskState.FAILED, result)

    def record_soon(self, result: TaskResult) -> asyncio.Future[bool] | None:
        """The result recorded with the outcome it brings, as `complete` and `fail` would
        first try, but without waiting: a future saying whether it was (then it is done);
        None when it cannot be. Not recorded, the caller `complete`s or `fail`s it after all,
        with `in_commit=False`."""
        recording = self._record(result) if self._record is not None else None
        if recording is not None:
            recording.add_done_callback(lambda done: self._recorded(result.key, done))
        return recording

    def _recorded(self, key: TaskKey, recording: asyncio.Future[bool]) -> None:
        if not recording.cancelled() and recording.result():
            self.unhold(key)

    async def _finish(
        self,
        owner: str,
        key: TaskKey,
        state: TaskState,
        result: Mapping[str, Any],
        *,
        in_commit: bool = True,
    ) -> None:
        recording = self.record_soon(TaskResult(key, owner, state, result)) if in_commit else None
        if recording is not None and await recording:
            return
        recorded, task = await self._store.finish_task(owner, key, state, result)
        if task is None:
            raise NotFound(_unknown(key))
        if recorded:
            self.unhold(key)
            self._changed([task])
        elif not (task.key == key and task.state is state and task.result == result):
            why = _why_not(task, key)
            if task.key == key and task.state is state:
                why += " with another result"
            raise FailedPrecondition(why)
        # else: the same report again, already recorded: OK, nothing changes.

    async def release(self, keys: Sequence[TaskKey]) -> None:
        """Hand back tasks whose worker went away: queued again for the next worker."""
        if not keys:
            return
        changed = await self._store.release_tasks(keys, self.settings.max_deliveries)
        if changed:
            self._changed(changed)

    async def stats(self, owner: str | None) -> list[QueueStats]:
        return await self._store.queue_stats(owner)

    def streaming(self, owner: str | None) -> dict[str, int]:
        """Per task type: this server's streams that take tasks of it (not half-closed)."""
        counts: dict[str, int] = {}
        for session in self._sessions:
            if not session.closed and (owner is None or session.owner == owner):
                for task_type in session.task_types:
                    counts[task_type] = counts.get(task_type, 0) + 1
        return counts

    # --- what a session asks of its queue -------------------------------------------------------

    @property
    def closing(self) -> bool:
        return self._closing

    async def take_for(self, session: WorkerSession, limit: int) -> list[TaskRecord]:
        """Tasks for a stream, now held by it (its worker reports on them anywhere)."""
        taken = await self._take(session.owner, session.task_types, limit, session.worker)
        if taken:
            self._changed(taken)
            for task in taken:
                self._holders[task.key] = session
                session.held.add(task.key)
        return taken

    async def still_held(self, key: TaskKey) -> bool:
        """Whether the task is still leased under `key` (not reported, timed out or moved)."""
        task = await self._store.get_task(key.run_id, key.step_id)
        return task is not None and task.key == key and task.state is TaskState.ACTIVE

    def end(self, session: WorkerSession) -> list[TaskKey]:
        """The session is over: what it still held."""
        self._sessions.discard(session)
        held, session.held = list(session.held), set()
        for key in held:
            self._holders.pop(key, None)
        return held

    def drop(self, session: WorkerSession, keys: Sequence[TaskKey]) -> None:
        """The session no longer holds these (matched to it, never sent)."""
        for key in keys:
            self._holders.pop(key, None)
            session.held.discard(key)

    def unhold(self, key: TaskKey) -> None:
        session = self._holders.pop(key, None)
        if session is not None:
            session.held.discard(key)
            session.nudge()


class WorkerSession:
    """One worker's stream: the tasks it may still receive (credits) and those it holds.

    It looks at the queue when it has credits and may find something: at first, after a look
    that filled its credits (more may wait), and after a task of its types was queued (`wake`
    marks it `pending`, whenever that happens, so none is missed between two looks); with
    several servers also every `recheck`, in case a notice was lost."""

    def __init__(
        self, queue: TaskQueue, owner: str, task_types: Sequence[str], worker: str
    ) -> None:
        self._queue = queue
        self.owner = owner
        self.task_types = list(task_types)
        self.types = frozenset(task_types)
        self.worker = worker
        self.credits = 0
        # Credits that came with results not yet recorded: the commits recording them take
        # tasks with them (`TaskQueue.claim`); the session's own looks do not use them.
        self.held_back = 0
        self.held: set[TaskKey] = set()
        # Tasks matched to this stream as they were queued (their credits already taken).
        self.ready: list[TaskRecord] = []
        self.closed = False
        self.pending = True
        self.wakes = 0  # tasks-queued notices so far
        self._nudge: asyncio.Future[None] | None = None

    def grant(self, credits: int, *, with_results: bool = False) -> None:
        """`with_results`: the credits came with results (freed by them): held back for the
        commits that record those, where the queue takes tasks in commits, until `recorded`.
        A look of the session's own would cost a transaction of its own, and its tasks
        would go out before the results' answers rather than with them."""
        if with_results and self._queue.claims_in_commits:
            self.held_back += credits
            return
        self.credits = min(MAX_CREDITS, self.credits + credits)
        self.nudge()

    def recorded(self) -> None:
        """Results that came with credits are recorded (or refused): the credits no commit
        took are the session's own again."""
        if self.held_back:
            self.credits = min(MAX_CREDITS, self.credits + self.held_back)
            self.held_back = 0
            self.nudge()

    def close(self) -> None:
        """The worker sends no more (or the server stops): take no more tasks for it."""
        self.closed = True
        self.nudge()

    def queued(self) -> None:
        """A task of one of its types was queued (or may have been)."""
        self.pending = True
        self.wakes += 1
        self.nudge()

    async def next(self) -> list[TaskRecord]:
        """The next tasks for the worker, within its credits; [] once closed."""
        loop = asyncio.get_running_loop()
        recheck = self._queue.recheck
        while not self.closed:
            if self.ready:
                ready, self.ready = self.ready, []
                return ready
            if self.credits > 0 and self.pending:
                self.pending = False
                asked = self.credits
                # Reserved for this look: a sync match meanwhile may use only credits granted
                # since, so the worker never holds more than it granted.
                self.credits -= asked
                taken: list[TaskRecord] = []
                try:
                    taken = await self._queue.take_for(self, asked)
                finally:
                    self.credits += asked - len(taken)
                if len(taken) == asked:
                    self.pending = True  # more may wait
                if taken:
                    return taken
                continue
            self._nudge = loop.create_future()
            try:
                async with asyncio.timeout(recheck):
                    await self._nudge
            except TimeoutError:
                self.pending = True
            finally:
                self._nudge = None
        if self.ready:  # matched but never sent: the next worker takes them
            keys, self.ready = [t.key for t in self.ready], []
            self._queue.drop(self, keys)
            await self._queue.release(keys)
        return []

    async def reported(self, every: float = 1.0) -> None:
        """Once the worker half-closed its stream: returns when it has reported every task it
        holds (here, or to another server: those are looked up every `every` seconds), or the
        server stops. The stream stays open meanwhile, so a worker that dies now still hands
        its tasks back at once (a connection lost can look like a half-close to the reader)."""
        loop = asyncio.get_running_loop()
        while self.held and not self._queue.closing:
            self._nudge = loop.create_future()
            try:
                async with asyncio.timeout(every):
                    await self._nudge
                continue
            except TimeoutError:
                pass
            finally:
                self._nudge = None
            for key in list(self.held):
                if not await self._queue.still_held(key):
                    self._queue.unhold(key)

    async def hand_back(self) -> None:
        """The stream broke: every task the worker still holds goes back to the queue."""
        await self._queue.release(self._queue.end(self))

    def forget(self) -> None:
        """The stream ended cleanly: the worker reports on what it holds with unary calls."""
        self._queue.end(self)

    def nudge(self) -> None:
        """Wake the session if it waits (for credits, a task, or its worker's reports)."""
        if self._nudge is not None and not self._nudge.done():
            self._nudge.set_result(None)


def _unknown(key: TaskKey) -> str:
    return f"no task of step {key.step_id!r} of workflow {key.run_id}"


def _why_not(task: TaskRecord, key: TaskKey) -> str:
    """Why a report with `key` is refused, the task being as it is now."""
    if task.attempt != key.attempt:
        return (
            f"attempt {key.attempt} of step {key.step_id!r} is over: attempt {task.attempt} "
            "runs now"
        )
    if task.delivery != key.delivery:
        return (
            "the task was handed to another worker: this worker's lease ended (its stream "
            "closed or it did not acknowledge the task in time)"
        )
    if task.state is TaskState.CANCELLED:
        return "the step was cancelled: its result is not wanted"
    if task.state is TaskState.TIMED_OUT:
        error = (task.result or {}).get("error", "")
        return f"the task timed out: {error}" if error else "the task timed out"
    if task.state in (TaskState.COMPLETED, TaskState.FAILED):
        return f"the task was already reported {task.state.value}"
    return f"the task is {task.state.value}"
