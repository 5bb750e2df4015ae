"""What the engine needs from the outside world, as small protocols."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from sluice.engine.analytics import Analytics, AnalyticsQuery
from sluice.engine.model import Event, EventType, Publication, Run, RunStatus, Template


class RunKey(NamedTuple):
    owner: str
    run_id: str


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which of an owner's runs a list returns; every field narrows it (empty: no limit)."""

    statuses: tuple[RunStatus, ...] = ()
    template_id: str = ""
    created_from: datetime | None = None  # inclusive
    created_before: datetime | None = None  # exclusive


@dataclass(frozen=True, slots=True)
class RunPage:
    runs: list[Run]
    # (create time, id) of the last run when more may follow; the next page starts after it.
    next_cursor: tuple[datetime, str] | None


@dataclass(frozen=True, slots=True)
class Fence:
    """The lease a server holds on a run: a write of the run succeeds only while the stored
    lease is still this one (`owner` = the server's id, `epoch` = the claim's number)."""

    owner: str
    epoch: int


class Timer(NamedTuple):
    run_id: str
    key: str
    fire_at: datetime


class StoredCommand(NamedTuple):
    """A call on a run, stored for the server that drives the run to carry out."""

    id: int
    run_id: str
    kind: str
    args: Mapping[str, Any]


class TaskState(StrEnum):
    """Where a task (the worker side of one attempt of a "task" step) stands."""

    QUEUED = "queued"  # waiting for a worker
    ACTIVE = "active"  # leased to a worker
    COMPLETED = "completed"  # the worker's output is in `result`
    FAILED = "failed"  # the worker's (or the server's) error is in `result`
    TIMED_OUT = "timed_out"  # no worker took it, or its lease ran out
    CANCELLED = "cancelled"  # the run stopped the step

    @property
    def open(self) -> bool:
        return self in (TaskState.QUEUED, TaskState.ACTIVE)


class TaskKey(NamedTuple):
    """What a task token names: one delivery of one attempt of one step."""

    run_id: str
    step_id: str
    attempt: int
    delivery: int  # the task's lease epoch: one more each time a worker takes it


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """A stored task: the current attempt of a "task" step and its worker side."""

    run_id: str
    step_id: str
    attempt: int
    owner: str
    task_type: str
    state: TaskState
    delivery: int
    queued_at: datetime
    start_by: datetime  # schedule-to-start deadline
    run_timeout: timedelta  # start to close, from a worker taking it
    # The task's input: config, params, inputs, upstream, retriesLeft, templateId.
    input: Mapping[str, Any]
    worker: str | None = None
    activated_at: datetime | None = None
    # Active: the heartbeat deadline until acknowledged, then activated_at + run_timeout.
    expires_at: datetime | None = None
    acked: bool = False
    # Completed: {"output": {...}}; failed: {"error", "retryable", "retryAfter" (seconds)}.
    result: Mapping[str, Any] | None = None

    @property
    def key(self) -> TaskKey:
        return TaskKey(self.run_id, self.step_id, self.attempt, self.delivery)


@dataclass(frozen=True, slots=True)
class TaskResult:
    """A worker's result (COMPLETED or FAILED) for the task `key` names, of `owner`'s run."""

    key: TaskKey
    owner: str
    state: TaskState
    result: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class TaskClaim:
    """Tasks a worker's stream takes in a commit: up to `limit` of `owner`'s oldest queued
    tasks of `task_types`, ACTIVE for `worker` from `now` (their first heartbeat due by
    `expires_at`), as `TaskStore.activate_tasks` takes them, but in the commit's transaction."""

    owner: str
    task_types: Sequence[str]
    limit: int
    worker: str
    now: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class TaskWrites:
    """A commit's tasks: attempts of "task" steps just started (queued, replacing the step's
    previous task), steps whose open task the run stopped, workers' results recorded with
    the outcomes they bring (each a compare-and-set on its task still ACTIVE under its key:
    should one fail, the commit writes nothing and raises `StaleTaskResult`), and queued
    tasks workers' streams take (`claims`, after the rest: a task queued here may be one)."""

    queued: Sequence[TaskRecord] = ()
    cancelled: Sequence[str] = ()  # step ids
    finished: Sequence[TaskResult] = ()
    claims: Sequence[TaskClaim] = ()


@dataclass(frozen=True, slots=True)
class QueueStats:
    task_type: str
    queued: int
    active: int
    oldest_queued_at: datetime | None


class TaskStore(Protocol):
    """The worker side of "task" steps. Every change is a compare-and-set on the task's state
    and delivery, so any server may make it and a stale token changes nothing. Times come from
    the caller's clock."""

    # Whether `commit` records workers' results (`TaskWrites.finished`) in the transaction of
    # the outcomes they bring, and activates the tasks of `TaskWrites.claims` in it; a store
    # that does not records each result with `finish_task` first, and is sent no claims.
    results_in_commits: bool

    async def tasks_of(self, run_ids: Iterable[str]) -> list[TaskRecord]: ...

    async def get_task(self, run_id: str, step_id: str) -> TaskRecord | None: ...

    async def activate_tasks(
        self,
        owner: str,
        task_types: Sequence[str],
        limit: int,
        worker: str,
        now: datetime,
        ack_window: timedelta,
    ) -> list[TaskRecord]:
        """Lease up to `limit` of the owner's queued tasks of these types, oldest first, to
        `worker`, skipping tasks other servers are taking: their delivery moves on, and they
        must be acknowledged by `now + ack_window`."""
        ...

    async def acknowledge_task(self, owner: str, key: TaskKey) -> tuple[bool, TaskRecord | None]:
        """A heartbeat: the first one extends the lease to activated_at + run_timeout.
        (Whether this one did, the task as it is afterwards; None: no such task of the
        owner's.)"""
        ...

    async def finish_task(
        self, owner: str, key: TaskKey, state: TaskState, result: Mapping[str, Any]
    ) -> tuple[bool, TaskRecord | None]:
        """Record the worker's result (COMPLETED or FAILED) if `key` still holds the owner's
        task: (whether it was recorded, the task as it is now; None: no such task)."""
        ...

    async def release_tasks(self, keys: Sequence[TaskKey], max_deliveries: int) -> list[TaskRecord]:
        """Hand tasks whose worker went away back to the queue (or fail them, once delivered
        `max_deliveries` times); the tasks changed."""
        ...

    async def expire_task(self, key: TaskKey, state: TaskState, acked: bool, reason: str) -> bool:
        """Time the task out (`reason`: the attempt's error) if it is still as its follower
        saw it: in `state` under `key`'s delivery, acknowledged or not (an acknowledgement
        moves its deadline)."""
        ...

    async def queue_stats(self, owner: str | None) -> list[QueueStats]:
        """Per task type with open tasks: queued, active, the oldest queued (None: everyone's)."""
        ...


class Store(TaskStore, Protocol):
    """Persistence of runs, their event logs, their tasks and registered templates.

    Every query that reads a run or template takes its owner: a row of another owner is
    as invisible as a row that does not exist.
    """

    async def create_run(self, run: Run, events: Sequence[Event]) -> Run:
        """Insert a new run with its first events. When `run.request_id` is set and the owner
        already has a run with it, insert nothing and return that run instead."""
        ...

    async def commit(
        self,
        run: Run,
        events: Sequence[Event],
        publications: Sequence[tuple[str, Publication]] = (),
        *,
        timers: Mapping[str, datetime | None] | None = None,
        fence: Fence | None = None,
        command: tuple[int, Mapping[str, Any]] | None = None,
        tasks: TaskWrites | None = None,
    ) -> list[list[TaskRecord]]:
        """Persist `run` (whose version is one more than the stored one) with its new events,
        the steps' outbox records, the run's timers to set (a time) or clear (None), the
        outcome of the stored command (id, outcome) it carries out and its tasks queued,
        cancelled, finished or claimed, in one transaction. Returns the tasks each claim
        took (oldest first), in the order of `tasks.claims`.
        Raises Conflict if the stored version is not `run.version - 1`, LeaseLost if `fence`
        is given and no longer the run's lease, StaleTaskResult if a result's task is no
        longer held under its key."""
        ...

    async def timers_of(self, run_ids: Iterable[str]) -> list[Timer]:
        """The durable timers of these runs."""
        ...

    async def get_run(self, owner: str, run_id: str) -> Run | None: ...

    async def get_run_by_request(self, owner: str, request_id: str) -> Run | None:
        """The owner's run created with `request_id` (a schedule's slot looks for its run)."""
        ...

    async def get_run_any(self, run_id: str) -> Run | None:
        """The run whatever its owner: for a server taking runs over, never for a caller."""
        ...

    async def list_runs(
        self,
        owner: str,
        where: RunFilter,
        *,
        limit: int,
        after: tuple[datetime, str] | None,
        outputs: bool = True,
    ) -> RunPage:
        """A page of the owner's runs matching `where`, newest first (by create time, then
        id), after the cursor `after`. Without `outputs`, steps come without their outputs."""
        ...

    async def delete_run(self, owner: str, run_id: str) -> RunStatus | None:
        """Delete the run with its steps, gates, events and outbox records if it has ended.
        Returns the status it had (None: no such run of that owner); a run that has not
        ended is left as it is."""
        ...

    async def pending_runs_created_before(self, cutoff: datetime, limit: int) -> list[RunKey]:
        """(owner, id) of up to `limit` PENDING runs created before `cutoff`, oldest first."""
        ...

    async def delete_runs_ended_before(self, cutoff: datetime, limit: int) -> int:
        """Delete up to `limit` runs that ended before `cutoff` (oldest first), with their
        logs; returns how many."""
        ...

    async def list_events(
        self,
        run_id: str,
        after_sequence: int,
        limit: int,
        *,
        types: Sequence[EventType] = (),
        step_ids: Sequence[str] = (),
    ) -> list[Event]:
        """The run's events after `after_sequence`, in order, at most `limit`; with `types` or
        `step_ids`, only the events of one of those types and of one of those steps."""

    async def count_active_runs(self, owner: str) -> int:
        """The owner's PENDING, RUNNING and PAUSED runs."""
        ...

    async def fold_analytics(self, limit: int = 1000) -> int:
        """Add the runs that ended since the last fold to the analytics sums, `limit` runs a
        transaction, until none is left; how many were added. A run ends with a note in its
        terminal commit (one row, nothing to look up), and is counted here once, by whichever
        server folds it first."""
        ...

    async def analytics(self, owner: str, query: AnalyticsQuery) -> Analytics:
        """The owner's figures over the query's window, as folded so far."""
        ...

    async def unfinished_runs(self) -> list[Run]:
        """Every RUNNING or PAUSED run, of every owner: what a starting server resumes."""
        ...

    async def add_template(self, template: Template) -> Template:
        """Register the next version of the owner's template id; returns it with its version."""
        ...

    async def latest_template_version(self, owner: str, template_id: str) -> int | None:
        """The newest version of the owner's template id, or None when there is none."""
        ...

    async def get_template(self, owner: str, template_id: str, version: int) -> Template | None:
        """A registered template; version 0 means the latest."""
        ...

    async def list_templates(self, owner: str) -> list[Template]:
        """The latest version of each of the owner's registered templates, by id."""
        ...

    async def delete_template(self, owner: str, template_id: str, version: int) -> int:
        """Delete one version of the owner's template, or every version (0); returns how
        many were deleted. Version numbers are never reused."""
        ...

    async def close(self) -> None: ...


class LeaseStore(Protocol):
    """Run leases, stored commands and notifications: what several servers on one database
    need to share runs (PostgreSQL).

    A run's lease names its owner, a server, and an epoch that every claim moves on; it lives
    as long as the owner's heartbeat, which one `renew` extends for all its runs. Expiry is
    judged by the database's clock."""

    async def join(self, owner: str, ttl: timedelta) -> None:
        """Start `owner`'s heartbeat, live for `ttl`; or start it again after it expired, letting
        go of the runs it held before (whichever server claims them first takes them)."""
        ...

    async def renew(self, owner: str, ttl: timedelta) -> bool:
        """Extend `owner`'s heartbeat, and so every lease it holds, by `ttl`; False when it had
        expired already (others may hold its runs now: forget them, then `join` again)."""
        ...

    async def create_leased(self, run: Run, events: Sequence[Event], owner: str) -> tuple[Run, int]:
        """`Store.create_run`, with the new run leased to `owner` (epoch returned; 0 when an
        existing run came back for a reused request id)."""
        ...

    async def acquire(self, run_id: str, owner: str) -> int | None:
        """Lease the run to `owner` if no live server holds it; the new epoch, or None."""
        ...

    async def claim(self, owner: str, limit: int) -> list[tuple[str, int]]:
        """Lease up to `limit` RUNNING runs held by no live server, skipping rows other
        servers are claiming: (run id, epoch) of each."""
        ...

    async def leave(self, owner: str, run_ids: Sequence[str]) -> None:
        """Give these runs' leases up and end `owner`'s heartbeat: others may claim its runs
        at once."""
        ...

    async def forget_servers(self) -> int:
        """Delete servers gone for long whose runs all ended or were taken; how many."""
        ...

    async def send_command(self, run_id: str, kind: str, args: Mapping[str, Any]) -> int: ...

    async def pending_commands(self, run_ids: Sequence[str]) -> list[StoredCommand]: ...

    async def finish_command(self, command_id: int, outcome: Mapping[str, Any]) -> None:
        """Record the outcome of a command that changed nothing (it was refused)."""
        ...

    async def command_outcome(self, command_id: int) -> Mapping[str, Any] | None: ...

    async def withdraw_command(self, command_id: int) -> bool:
        """Delete a command not yet carried out; False when it already was."""
        ...

    async def close(self) -> None: ...


Notice = Callable[[str, Sequence[str]], None]


class Notifier(Protocol):
    """Tells the other servers which runs changed or have commands (the database stays the
    truth: a notice only says "look")."""

    async def start(self, notice: Notice) -> None:
        """Listen: `notice(channel, run_ids)` for every notice another server sends."""
        ...

    def send(self, channel: str, run_id: str) -> None:
        """Queue a notice; sent soon, batched with others."""
        ...

    async def close(self) -> None: ...
