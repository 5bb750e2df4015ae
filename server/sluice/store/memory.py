"""The Store in memory, for engine tests that need no SQL: same semantics as the SQL stores
(owner isolation, the version compare-and-set, request_id dedupe, list pages and cursors,
delete rules, template versions never reused), checked against them by
tests/integration/test_store_conformance.py.

It writes what the SQL stores write and nothing more: a commit changes the run's mutable
fields and only the steps and gates its events name (every gate when the run ends), so an
engine bug that leaves a change out of its events shows here as it would on a database.
Values go in and come out as copies: a caller changing what it holds changes nothing here.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sluice.engine import analytics as counting
from sluice.engine.analytics import Analytics, AnalyticsQuery, Sums, Tally
from sluice.engine.errors import Conflict, StaleTaskResult
from sluice.engine.model import (
    Event,
    EventType,
    Publication,
    Run,
    RunStatus,
    Template,
)
from sluice.engine.ports import (
    Fence,
    QueueStats,
    RunFilter,
    RunKey,
    RunPage,
    TaskClaim,
    TaskKey,
    TaskRecord,
    TaskState,
    TaskWrites,
    Timer,
)

_TERMINAL_EVENTS = frozenset(
    {EventType.WORKFLOW_COMPLETED, EventType.WORKFLOW_FAILED, EventType.WORKFLOW_CANCELLED}
)
_ACTIVE = frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.PAUSED})
_UNFINISHED = frozenset({RunStatus.RUNNING, RunStatus.PAUSED})
# What a commit changes of the run itself (as the SQL stores' UPDATE of runs).
_RUN_FIELDS = (
    "status", "options", "error", "pause_reason", "paused_gate_id", "started_at", "ended_at",
    "updated_at", "last_sequence", "version", "start_request_id", "start_request_hash",
)  # fmt: skip


@dataclass
class _StoredRun:
    run: Run
    events: list[Event] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    timers: dict[str, datetime] = field(default_factory=dict)


@dataclass
class _StoredTemplate:
    template: Template
    deleted: bool = False


class MemoryStore:
    results_in_commits = True

    def __init__(self) -> None:
        self._runs: dict[str, _StoredRun] = {}
        self._by_request: dict[tuple[str, str], str] = {}
        # (owner, id) -> every version ever registered, oldest first (deleted ones marked).
        self._templates: dict[tuple[str, str], list[_StoredTemplate]] = {}
        self._outbox_ids = itertools.count(1)
        self._tasks: dict[tuple[str, str], TaskRecord] = {}
        # Analytics sums by (owner, hour, template id, version, kind, subject), added as each
        # run ends (no queue to fold here).
        self._sums: dict[tuple[Any, ...], Tally] = {}

    async def close(self) -> None:
        return None

    # --- runs ---------------------------------------------------------------------------------

    async def create_run(self, run: Run, events: Sequence[Event]) -> Run:
        await _suspend()
        if run.request_id:
            existing = self._by_request.get((run.owner, run.request_id))
            if existing is not None:
                return self._runs[existing].run.copy()
        if run.id in self._runs:
            raise ValueError(f"a run with id {run.id} exists")  # the SQL stores' IntegrityError
        self._runs[run.id] = _StoredRun(run.copy(), list(events))
        if run.request_id:
            self._by_request[(run.owner, run.request_id)] = run.id
        return run

    async def get_run_by_request(self, owner: str, request_id: str) -> Run | None:
        await _suspend()
        run_id = self._by_request.get((owner, request_id))
        return self._runs[run_id].run.copy() if run_id is not None else None

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
        """As the SQL stores' commit; leases and stored commands belong to several servers
        on PostgreSQL, which this store never serves (`fence` and `command` must be None)."""
        assert fence is None and command is None, "the memory store serves one server"
        await _suspend()
        stored = self._runs.get(run.id)
        if stored is None or stored.run.version != run.version - 1:
            raise Conflict(f"workflow {run.id} was changed by another writer")
        known = {e.sequence for e in stored.events}
        if any(e.sequence in known for e in events):
            raise Conflict(f"workflow {run.id} was changed by another writer")
        finished = tasks.finished if tasks else ()
        for result in finished:
            held = self._holding(result.key, TaskState.ACTIVE)
            if held is None or held.owner != result.owner:
                raise StaleTaskResult(
                    f"the task of step {result.key.step_id!r} of workflow {run.id} is no longer "
                    "held under the token reported"
                )
        for result in finished:
            held = self._tasks[(run.id, result.key.step_id)]
            self._tasks[(run.id, result.key.step_id)] = replace(
                held, state=result.state, result=result.result
            )
        kept = stored.run
        for name in _RUN_FIELDS:
            setattr(kept, name, getattr(run, name))
        ends = any(e.type in _TERMINAL_EVENTS for e in events)
        for step_id in {e.step_id for e in events if e.step_id}:
            kept.steps[step_id] = replace(run.steps[step_id])
        for gate_id in set(run.gates) if ends else {e.gate_id for e in events if e.gate_id}:
            kept.gates[gate_id] = replace(run.gates[gate_id])
        stored.events.extend(events)
        for key, at in (timers or {}).items():
            if at is None:
                stored.timers.pop(key, None)
            else:
                stored.timers[key] = at
        stored.outbox.extend(
            {"id": next(self._outbox_ids), "run_id": run.id, "step_id": step_id,
             "kind": p.kind, "channel": p.channel, "payload": dict(p.payload),
             "created_at": run.updated_at}
            for step_id, p in publications
        )  # fmt: skip
        if ends:
            self._count(kept)
        for task in tasks.queued if tasks else ():
            self._tasks[(task.run_id, task.step_id)] = task
        for step_id in tasks.cancelled if tasks else ():
            found = self._tasks.get((run.id, step_id))
            if found is not None and found.state.open:
                self._tasks[(run.id, step_id)] = replace(found, state=TaskState.CANCELLED)
        return [self._activate(claim) for claim in tasks.claims] if tasks else []

    # --- tasks ----------------------------------------------------------------------------------

    async def tasks_of(self, run_ids: Iterable[str]) -> list[TaskRecord]:
        await _suspend()
        wanted = set(run_ids)
        return [t for t in self._tasks.values() if t.run_id in wanted]

    async def get_task(self, run_id: str, step_id: str) -> TaskRecord | None:
        await _suspend()
        return self._tasks.get((run_id, step_id))

    async def activate_tasks(
        self,
        owner: str,
        task_types: Sequence[str],
        limit: int,
        worker: str,
        now: datetime,
        ack_window: timedelta,
    ) -> list[TaskRecord]:
        await _suspend()
        return self._activate(TaskClaim(owner, task_types, limit, worker, now, now + ack_window))

    def _activate(self, claim: TaskClaim) -> list[TaskRecord]:
        queued = sorted(
            (
                t for t in self._tasks.values()
                if t.state is TaskState.QUEUED and t.owner == claim.owner
                and t.task_type in claim.task_types
            ),
            key=lambda t: t.queued_at,
        )[:claim.limit]  # fmt: skip
        taken = [
            replace(
                t, state=TaskState.ACTIVE, delivery=t.delivery + 1, worker=claim.worker,
                activated_at=claim.now, expires_at=claim.expires_at, acked=False,
            )
            for t in queued
        ]  # fmt: skip
        for t in taken:
            self._tasks[(t.run_id, t.step_id)] = t
        return taken

    def _holding(self, key: TaskKey, state: TaskState) -> TaskRecord | None:
        found = self._tasks.get((key.run_id, key.step_id))
        return found if found is not None and found.key == key and found.state is state else None

    async def acknowledge_task(self, owner: str, key: TaskKey) -> tuple[bool, TaskRecord | None]:
        await _suspend()
        found = self._tasks.get((key.run_id, key.step_id))
        if found is None or found.owner != owner:
            return False, None
        task = self._holding(key, TaskState.ACTIVE)
        if task is None or task.acked:
            return False, found
        assert task.activated_at is not None
        task = replace(task, acked=True, expires_at=task.activated_at + task.run_timeout)
        self._tasks[(key.run_id, key.step_id)] = task
        return True, task

    async def finish_task(
        self, owner: str, key: TaskKey, state: TaskState, result: Mapping[str, Any]
    ) -> tuple[bool, TaskRecord | None]:
        await _suspend()
        found = self._tasks.get((key.run_id, key.step_id))
        if found is None or found.owner != owner:
            return False, None
        task = self._holding(key, TaskState.ACTIVE)
        if task is not None:
            self._tasks[(key.run_id, key.step_id)] = replace(task, state=state, result=result)
        return task is not None, self._tasks.get((key.run_id, key.step_id))

    async def release_tasks(self, keys: Sequence[TaskKey], max_deliveries: int) -> list[TaskRecord]:
        await _suspend()
        changed = []
        for key in keys:
            task = self._holding(key, TaskState.ACTIVE)
            if task is None:
                continue
            if task.delivery < max_deliveries:
                task = replace(
                    task, state=TaskState.QUEUED, worker=None, activated_at=None,
                    expires_at=None, acked=False,
                )  # fmt: skip
            else:
                error = f"the task was handed to {max_deliveries} workers and none finished it"
                task = replace(
                    task, state=TaskState.FAILED, result={"error": error, "retryable": True}
                )
            self._tasks[(key.run_id, key.step_id)] = task
            changed.append(task)
        return changed

    async def expire_task(self, key: TaskKey, state: TaskState, acked: bool, reason: str) -> bool:
        await _suspend()
        task = self._holding(key, state)
        if task is None or task.acked != acked:
            return False
        self._tasks[(key.run_id, key.step_id)] = replace(
            task, state=TaskState.TIMED_OUT, result={"error": reason, "retryable": True}
        )
        return True

    async def queue_stats(self, owner: str | None) -> list[QueueStats]:
        await _suspend()
        by_type: dict[str, list[TaskRecord]] = {}
        for t in self._tasks.values():
            if t.state.open and (owner is None or t.owner == owner):
                by_type.setdefault(t.task_type, []).append(t)
        return [
            QueueStats(
                task_type,
                sum(t.state is TaskState.QUEUED for t in found),
                sum(t.state is TaskState.ACTIVE for t in found),
                min((t.queued_at for t in found if t.state is TaskState.QUEUED), default=None),
            )
            for task_type, found in sorted(by_type.items())
        ]

    async def timers_of(self, run_ids: Iterable[str]) -> list[Timer]:
        await _suspend()
        found = (self._runs.get(run_id) for run_id in run_ids)
        return [
            Timer(s.run.id, k, at) for s in found if s is not None for k, at in s.timers.items()
        ]

    async def get_run_any(self, run_id: str) -> Run | None:
        await _suspend()
        stored = self._runs.get(run_id)
        return stored.run.copy() if stored is not None else None

    async def get_run(self, owner: str, run_id: str) -> Run | None:
        await _suspend()
        stored = self._runs.get(run_id)
        if stored is None or stored.run.owner != owner:
            return None
        return stored.run.copy()

    async def list_runs(
        self,
        owner: str,
        where: RunFilter,
        *,
        limit: int,
        after: tuple[datetime, str] | None,
        outputs: bool = True,
    ) -> RunPage:
        await _suspend()
        matching = sorted(
            (s.run for s in self._runs.values() if _matches(s.run, owner, where, after)),
            key=lambda r: (r.created_at, r.id),
            reverse=True,
        )
        page = [_without_outputs(r) if not outputs else r.copy() for r in matching[:limit]]
        more = len(matching) > limit
        cursor = (page[-1].created_at, page[-1].id) if more and page else None
        return RunPage(page, cursor)

    async def delete_run(self, owner: str, run_id: str) -> RunStatus | None:
        await _suspend()
        stored = self._runs.get(run_id)
        if stored is None or stored.run.owner != owner:
            return None
        status = stored.run.status
        if status.terminal:
            self._forget(run_id)
        return status

    async def pending_runs_created_before(self, cutoff: datetime, limit: int) -> list[RunKey]:
        await _suspend()
        pending = sorted(
            (s.run for s in self._runs.values()
             if s.run.status is RunStatus.PENDING and s.run.created_at < cutoff),
            key=lambda r: r.created_at,
        )  # fmt: skip
        return [RunKey(r.owner, r.id) for r in pending[:limit]]

    async def delete_runs_ended_before(self, cutoff: datetime, limit: int) -> int:
        await _suspend()
        ended = sorted(
            (s.run for s in self._runs.values()
             if s.run.ended_at is not None and s.run.ended_at < cutoff),
            key=lambda r: r.ended_at or cutoff,
        )[:limit]  # fmt: skip
        for run in ended:
            self._forget(run.id)
        return len(ended)

    async def list_events(
        self,
        run_id: str,
        after_sequence: int,
        limit: int,
        *,
        types: Sequence[EventType] = (),
        step_ids: Sequence[str] = (),
    ) -> list[Event]:
        await _suspend()
        stored = self._runs.get(run_id)
        if stored is None:
            return []
        # Stored in sequence order: each commit appends the events after the last one.
        return [
            e for e in stored.events
            if e.sequence > after_sequence
            and (not types or e.type in types)
            and (not step_ids or e.step_id in step_ids)
        ][:limit]  # fmt: skip

    async def list_outbox(self, run_id: str) -> list[dict[str, Any]]:
        await _suspend()
        stored = self._runs.get(run_id)
        return [dict(r) for r in stored.outbox] if stored is not None else []

    def _count(self, run: Run) -> None:
        if run.ended_at is None:
            return
        hour = counting.floor_hour(run.ended_at)
        for c in counting.counts_of(run):
            key = (run.owner, hour, run.template.id, run.template.version, c.kind, c.subject)
            tally = self._sums.get(key)
            if tally is None:
                self._sums[key] = tally = Tally()
            tally.add(c)

    async def fold_analytics(self, limit: int = 1000) -> int:
        await _suspend()
        return 0  # counted as each run ends

    async def analytics(self, owner: str, query: AnalyticsQuery) -> Analytics:
        await _suspend()
        sums = [
            Sums(template_id, kind, subject, tally)
            for (who, hour, template_id, version, kind, subject), tally in self._sums.items()
            if who == owner and query.start <= hour < query.end
            and (not query.template_id or template_id == query.template_id)
            and (not query.template_version or version == query.template_version)
        ]  # fmt: skip
        return counting.summarize(query, sums)

    async def count_active_runs(self, owner: str) -> int:
        await _suspend()
        return sum(
            1 for s in self._runs.values() if s.run.owner == owner and s.run.status in _ACTIVE
        )

    async def unfinished_runs(self) -> list[Run]:
        await _suspend()
        unfinished = [s.run for s in self._runs.values() if s.run.status in _UNFINISHED]
        return [r.copy() for r in sorted(unfinished, key=lambda r: r.created_at)]

    def _forget(self, run_id: str) -> None:
        stored = self._runs.pop(run_id)
        if stored.run.request_id:
            self._by_request.pop((stored.run.owner, stored.run.request_id), None)
        for key in [k for k in self._tasks if k[0] == run_id]:
            del self._tasks[key]

    # --- templates ----------------------------------------------------------------------------

    async def add_template(self, template: Template) -> Template:
        await _suspend()
        versions = self._templates.setdefault((template.owner, template.id), [])
        added = replace(template, version=len(versions) + 1)
        versions.append(_StoredTemplate(added))
        return added

    async def latest_template_version(self, owner: str, template_id: str) -> int | None:
        await _suspend()
        live = self._live_versions(owner, template_id)
        return live[-1].version if live else None

    async def get_template(self, owner: str, template_id: str, version: int) -> Template | None:
        await _suspend()
        live = self._live_versions(owner, template_id)
        if version:
            live = [t for t in live if t.version == version]
        return live[-1] if live else None

    async def list_templates(self, owner: str) -> list[Template]:
        await _suspend()
        latest = (
            self._live_versions(owner, template_id)
            for (o, template_id) in sorted(self._templates)
            if o == owner
        )
        return [live[-1] for live in latest if live]

    async def delete_template(self, owner: str, template_id: str, version: int) -> int:
        await _suspend()
        deleted = 0
        for stored in self._templates.get((owner, template_id), []):
            if not stored.deleted and version in (0, stored.template.version):
                stored.deleted = True
                deleted += 1
        return deleted

    def _live_versions(self, owner: str, template_id: str) -> list[Template]:
        return [s.template for s in self._templates.get((owner, template_id), []) if not s.deleted]


async def _suspend() -> None:
    """Give other tasks a turn, as a call to a database does: the engine's tests then see the
    interleavings it meets in production, not ones only a store that never waits allows."""
    await asyncio.sleep(0)


def _matches(run: Run, owner: str, where: RunFilter, after: tuple[datetime, str] | None) -> bool:
    return (
        run.owner == owner
        and (not where.statuses or run.status in where.statuses)
        and (not where.template_id or run.template.id == where.template_id)
        and (where.created_from is None or run.created_at >= where.created_from)
        and (where.created_before is None or run.created_at < where.created_before)
        and (after is None or (run.created_at, run.id) < after)
    )


def _without_outputs(run: Run) -> Run:
    copy = run.copy()
    for step in copy.steps.values():
        step.output = None
    return copy
