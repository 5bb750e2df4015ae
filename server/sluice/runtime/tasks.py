"""Remote dispatch: attempts of "task" steps, served by workers through the store.

An attempt of a task step is queued as a task row in the very transaction that commits its
STEP_STARTED (`RemoteDispatcher.writes`): no attempt can start without its task, nor a task
exist for an attempt that did not start. Workers take it and report on it through any server
(`task_queue.TaskQueue`); the row is the truth of where it stands. The server driving the run
follows the row (`start`): it wakes when poked (a change made on this server, or another's
notice) or at the task's next deadline, and delivers the attempt's outcome through the same
channel as local handlers (`Deliver`) once the row is finished, or times the task out when
a deadline passes first:
- queued past its schedule-to-start deadline: no worker took it;
- active past its heartbeat deadline: its worker never acknowledged it;
- acknowledged past activation + the step's timeout: its worker did not finish in time.
A timeout fails the attempt, and the retry policy decides, as for any step.

A worker's result reaching the server that drives its run skips the follower: it becomes the
attempt's outcome at once, and the task's compare-and-set is written in the commit that
records that outcome (`Engine.record_result`), where the store allows (SQLite). One write
then finishes both task and step, and the worker is answered once both are stored.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sluice.engine.handlers import HandlerRegistry, PermanentStepError, StepResult
from sluice.engine.model import Event, EventType, Run, StepSpec
from sluice.engine.ports import (
    Clock,
    TaskClaim,
    TaskKey,
    TaskRecord,
    TaskResult,
    TaskState,
    TaskStore,
    TaskWrites,
)
from sluice.runtime.dispatch import Deliver, Outcome, Tracing, resolve


@dataclass(frozen=True, slots=True)
class TaskSettings:
    # How long an attempt waits for a worker when its step does not say.
    schedule_to_start: timedelta = timedelta(hours=1)
    # A worker must acknowledge a task (a heartbeat or its result) this soon after taking it.
    ack_window: timedelta = timedelta(seconds=30)
    # A task whose worker's stream broke goes back to the queue; after this many deliveries
    # the attempt fails instead (a task that kills every worker must not loop for ever).
    max_deliveries: int = 5
    # Start-to-close when the step sets no timeout.
    default_timeout: timedelta = timedelta(minutes=5)
    # A task's input (config, params, upstream outputs) as JSON, at most: it travels in one
    # message to the worker.
    max_input_bytes: int = 4 * 1024 * 1024 - 64 * 1024
    # Several servers: how often a follower reads its task without being poked, in case a
    # notice was lost (None: one server, every change is made here and pokes).
    recheck: timedelta | None = None


@dataclass(frozen=True, slots=True)
class Queued:
    """A commit's task writes, and the attempts whose task could not be built (their error)."""

    writes: TaskWrites
    refused: dict[str, str]

    @property
    def task_types(self) -> set[str]:
        """The types of the tasks left waiting for a worker (not matched to a stream)."""
        return {t.task_type for t in self.writes.queued if t.state is TaskState.QUEUED}

    def with_active(self, active: Sequence[TaskRecord]) -> Queued:
        """The same writes, these tasks written ACTIVE (matched to a stream) in place of their
        queued selves."""
        taken = {(t.run_id, t.step_id): t for t in active}
        queued = [taken.get((t.run_id, t.step_id), t) for t in self.writes.queued]
        return Queued(replace(self.writes, queued=queued), self.refused)

    def with_claims(self, claims: Sequence[TaskClaim]) -> Queued:
        """The same writes, and these streams' claims on queued tasks taken with them."""
        return Queued(replace(self.writes, claims=claims), self.refused)

    def with_results(self, results: Sequence[TaskResult]) -> Queued:
        """The same writes, and these workers' results recorded with them."""
        return Queued(replace(self.writes, finished=results), self.refused)

    def task(self, step_id: str) -> TaskRecord | None:
        return next((t for t in self.writes.queued if t.step_id == step_id), None)


NOTHING_QUEUED = Queued(TaskWrites(), {})


class RemoteDispatcher:
    """Follows the tasks of the attempts of task steps this server drives.

    A follower is a timer at the task's next deadline, not a task of its own: most attempts
    end by their worker's result, recorded with their outcome (`Engine.record_result`), and
    are never looked at again. It reads the store (a look) only when poked without being told
    how the task is now (another server's notice), or when its deadline comes."""

    def __init__(
        self,
        store: TaskStore,
        handlers: HandlerRegistry,
        deliver: Deliver,
        clock: Clock,
        settings: TaskSettings = TaskSettings(),
        tracing: Tracing | None = None,
    ) -> None:
        self._store = store
        self._handlers = handlers
        self._deliver = deliver
        self._clock = clock
        self.settings = settings
        self._tracing = tracing
        self._followers: dict[tuple[str, str], _Follower] = {}
        self._steps_of: dict[str, set[str]] = {}
        self._looks: set[asyncio.Task[None]] = set()

    # --- the driver's side ------------------------------------------------------------------

    def writes(self, run: Run, events: Sequence[Event]) -> Queued:
        """The tasks a commit of `events` (the run's state after them) queues and cancels."""
        queued: list[TaskRecord] = []
        cancelled: list[str] = []
        refused: dict[str, str] = {}
        for event in events:
            if event.type is EventType.STEP_STARTED:
                spec = run.template.step(event.step_id)
                if spec.remote:
                    try:
                        queued.append(self._task(run, spec, event.attempt, event.time))
                    except PermanentStepError as exc:
                        refused[spec.id] = str(exc)
            elif event.type is EventType.STEP_CANCELLED and run.template.step(event.step_id).remote:
                cancelled.append(event.step_id)
        if not queued and not cancelled and not refused:
            return NOTHING_QUEUED
        # A step started and stopped in one commit has no task to queue.
        queued = [t for t in queued if t.step_id not in cancelled]
        return Queued(TaskWrites(queued, cancelled), refused)

    def _task(self, run: Run, spec: StepSpec, attempt: int, now: datetime) -> TaskRecord:
        resolved = resolve(run, spec, self._handlers)
        task_input = {
            "config": resolved.config,
            "params": run.params,
            "inputs": resolved.inputs,
            "upstream": resolved.upstream,
            "retriesLeft": max(0, spec.retry.max_attempts - attempt),
            "templateId": run.template.id,
        }
        if self._tracing is not None and run.trace_context:
            # The attempt's span context: the worker's span joins the run's trace.
            task_input["traceContext"] = self._tracing.carrier(run, spec.id, attempt)
        size = len(json.dumps(task_input, separators=(",", ":")))
        if size > self.settings.max_input_bytes:
            raise PermanentStepError(
                f"the task's input (config, params and upstream outputs) is {size} bytes as "
                f"JSON; the limit is {self.settings.max_input_bytes}"
            )
        return TaskRecord(
            run_id=run.id,
            step_id=spec.id,
            attempt=attempt,
            owner=run.owner,
            task_type=spec.task_type,
            state=TaskState.QUEUED,
            delivery=0,
            queued_at=now,
            start_by=now + (spec.schedule_to_start or self.settings.schedule_to_start),
            run_timeout=spec.timeout or self.settings.default_timeout,
            input=task_input,
        )

    def start(
        self,
        run_id: str,
        step_id: str,
        attempt: int,
        refused: str | None = None,
        task: TaskRecord | None = None,
    ) -> None:
        """Follow the task of attempt `attempt` (committed: queued with its STEP_STARTED, or
        found in the store when a run is taken up; `task`: as it was committed or found);
        `refused`: its task could not be built, the attempt fails at once."""
        if refused is not None:
            self._deliver(Outcome(run_id, step_id, attempt, None, refused, retryable=False))
            return
        key = (run_id, step_id)
        self.cancel(run_id, step_id)
        follower = self._followers[key] = _Follower(attempt, told=task)
        self._steps_of.setdefault(run_id, set()).add(step_id)
        self._consider(key, follower)

    def running(self, run_id: str, step_id: str) -> bool:
        return (run_id, step_id) in self._followers

    def cancel(self, run_id: str, step_id: str) -> None:
        """Stop following: the attempt's outcome is never delivered (its task, cancelled in
        the same commit as the step, tells its worker so on its next heartbeat)."""
        follower = self._followers.get((run_id, step_id))
        if follower is not None:
            self._forget((run_id, step_id), follower)
            if follower.look is not None:
                follower.look.cancel()

    def poke(self, run_id: str, step_id: str | None = None, task: TaskRecord | None = None) -> None:
        """A task of the run changed (or may have): its follower looks again, at `task` when
        the change made here says how it left the task, else in the store. (A finished task
        is never replaced by an older report of it: what a follower is told may come out of
        order, and only finished states are final; the rest its compare-and-sets check.)"""
        for step in (step_id,) if step_id is not None else list(self._steps_of.get(run_id, ())):
            key = (run_id, step)
            follower = self._followers.get(key)
            if follower is None:
                continue
            if task is not None and (follower.told is None or follower.told.state.open):
                follower.told = task
            if follower.look is not None:
                follower.again = True  # the look under way reads again once it has read
            else:
                self._consider(key, follower)

    def poke_all(self) -> None:
        for run_id in list(self._steps_of):
            self.poke(run_id)

    async def stop(self) -> None:
        looks = [f.look for f in self._followers.values() if f.look is not None]
        for key, follower in list(self._followers.items()):
            self._forget(key, follower)
        for look in looks:
            look.cancel()
        await asyncio.gather(*looks, return_exceptions=True)

    def _forget(self, key: tuple[str, str], follower: _Follower) -> None:
        if self._followers.get(key) is follower:
            del self._followers[key]
            steps = self._steps_of.get(key[0])
            if steps is not None:
                steps.discard(key[1])
                if not steps:
                    del self._steps_of[key[0]]
        if follower.timer is not None:
            follower.timer.cancel()
            follower.timer = None

    # --- following a task -------------------------------------------------------------------

    def _consider(self, key: tuple[str, str], follower: _Follower) -> None:
        """Decide on the task as the follower was told it is, or look at it in the store."""
        if follower.timer is not None:
            follower.timer.cancel()
            follower.timer = None
        task, follower.told = follower.told, None
        if task is None:
            self._look(key, follower)
        else:
            self._judge(key, follower, task)

    def _judge(self, key: tuple[str, str], follower: _Follower, task: TaskRecord | None) -> None:
        """The task is as `task` says: deliver the attempt's outcome, time it out, or wait for
        its next deadline (or a poke)."""
        if self._followers.get(key) is not follower:
            return  # cancelled meanwhile
        if task is None or task.attempt != follower.attempt or task.state is TaskState.CANCELLED:
            self._forget(key, follower)  # the run moved on without this attempt
            return
        outcome = _outcome(task)
        if outcome is not None:
            self._forget(key, follower)
            self._deliver(outcome)
            return
        due, reason = self._deadline(task)
        wait = (due - self._clock.now()).total_seconds()
        if wait <= 0:
            self._look(key, follower, expiring=(task, reason))
            return
        if self.settings.recheck is not None:
            wait = min(wait, self.settings.recheck.total_seconds())
        loop = asyncio.get_running_loop()
        follower.timer = loop.call_later(wait, self._due, key, follower)

    def _due(self, key: tuple[str, str], follower: _Follower) -> None:
        follower.timer = None
        if self._followers.get(key) is follower:
            self._look(key, follower)

    def _look(
        self,
        key: tuple[str, str],
        follower: _Follower,
        expiring: tuple[TaskRecord, str] | None = None,
    ) -> None:
        """Read the task in the store (timing it out first, with `expiring`), then judge it."""
        look = asyncio.create_task(
            self._read(key, follower, expiring), name=f"task {key[0]}/{key[1]}"
        )
        follower.look = look
        self._looks.add(look)
        look.add_done_callback(self._looks.discard)

    async def _read(
        self,
        key: tuple[str, str],
        follower: _Follower,
        expiring: tuple[TaskRecord, str] | None,
    ) -> None:
        try:
            if expiring is not None:
                task, reason = expiring
                await self._store.expire_task(task.key, task.state, task.acked, reason)
            while True:
                follower.again = False  # before reading: a change made meanwhile pokes again
                found, follower.told = follower.told, None
                if found is None:
                    found = await self._store.get_task(*key)
                if not follower.again:
                    break
        except BaseException:
            self._forget(key, follower)  # cancelled, or the store failed: no longer followed
            raise
        finally:
            follower.look = None
        self._judge(key, follower, found)

    def _deadline(self, task: TaskRecord) -> tuple[datetime, str]:
        """When the task times out as it stands, and what its attempt's error then says."""
        if task.state is TaskState.QUEUED:
            waited = _seconds(task.start_by - task.queued_at)
            return task.start_by, f"no worker took the task within {waited} (schedule to start)"
        assert task.expires_at is not None
        if not task.acked:
            return task.expires_at, (
                f"worker {task.worker!r} neither acknowledged the task nor reported on it within "
                f"{_seconds(self.settings.ack_window)} of taking it"
            )
        return task.expires_at, (
            f"worker {task.worker!r} did not finish the task within "
            f"{_seconds(task.run_timeout)} (the step's timeout)"
        )


@dataclass(slots=True)
class _Follower:
    """An attempt's task as this server follows it."""

    attempt: int
    # How the last change made here left the task: judged without reading the store.
    told: TaskRecord | None = None
    timer: asyncio.TimerHandle | None = None  # at the task's next deadline
    look: asyncio.Task[None] | None = None  # a read of the store under way
    again: bool = False  # poked while that read was out: read once more


def _outcome(task: TaskRecord) -> Outcome | None:
    """The attempt's outcome once its task is finished (None while it is open)."""
    if task.state.open or task.state is TaskState.CANCELLED:
        return None
    return outcome_of(task.key, task.state, task.result or {})


def outcome_of(key: TaskKey, state: TaskState, result: Mapping[str, Any]) -> Outcome:
    """The outcome a finished task's state and result (COMPLETED, FAILED, TIMED_OUT) give
    its attempt."""
    if state is TaskState.COMPLETED:
        output = StepResult(output=dict(result.get("output") or {}))
        return Outcome(key.run_id, key.step_id, key.attempt, output)
    after = result.get("retryAfter")
    return Outcome(
        key.run_id,
        key.step_id,
        key.attempt,
        None,
        str(result.get("error") or "the task failed"),
        retryable=bool(result.get("retryable", True)),
        retry_after=timedelta(seconds=after) if after is not None else None,
        error_type=str(result.get("errorType") or ""),
    )


def _seconds(value: timedelta) -> str:
    return f"{value.total_seconds():g}s"
