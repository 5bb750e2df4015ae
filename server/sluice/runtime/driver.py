"""The driver: carries out the pure engine's decisions for the runs this server holds.

Every change of a run happens under that run's lock, in `_commit`: apply the events to a copy,
persist copy + events (+ timers, fenced by the run's lease) in one transaction, then swap the
copy in, publish the events and act on them: dispatch an attempt for each committed
STEP_STARTED, stop one for each STEP_CANCELLED, arm the run's next timer. `scheduler` says what
comes next (including what follows a failed attempt); this module only carries it out.

On one server (SQLite) this server holds every run. With several servers on one database
(PostgreSQL, a `Cluster`), a server holds the runs it leases: it creates runs leased to itself,
claims runs whose lease expired, renews its leases in one statement per heartbeat, and drops a
run whose lease it lost. A call on a run another server holds is stored as a command for that
server, and its outcome read back (see `_remote`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import structlog

from sluice.engine import commands
from sluice.engine import rerun as reruns
from sluice.engine.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    LeaseLost,
    NotFound,
    ResourceExhausted,
    SluiceError,
    StaleTaskResult,
    Unavailable,
)
from sluice.engine.handlers import HandlerRegistry
from sluice.engine.model import (
    Event,
    EventType,
    ExecutionOptions,
    Publication,
    Run,
    StepStatus,
    Template,
)
from sluice.engine.ports import (
    Clock,
    Fence,
    Store,
    SystemClock,
    TaskRecord,
    TaskResult,
    TaskState,
)
from sluice.engine.scheduler import Decision, attempt_failed, decide_into, wake_at
from sluice.runtime.active_runs import ActiveRunCounts
from sluice.runtime.bus import EventBus, Subscription
from sluice.runtime.cluster import ATTEMPTS, COMMANDS, EVENTS, TASKS, Cluster, LeaseKeeper
from sluice.runtime.dispatch import DispatchSettings, LocalDispatcher, Outcome, Report, Tracing
from sluice.runtime.event_reads import SharedEventReads
from sluice.runtime.probes import NO_PROBES, Probes
from sluice.runtime.task_queue import TaskQueue
from sluice.runtime.tasks import Queued, RemoteDispatcher, TaskSettings, outcome_of

log = structlog.get_logger(__name__)

Sleep = Callable[[float], Awaitable[None]]
Observer = Callable[[Run, Sequence[Event]], None]

# A store that fails for a moment (Unavailable) is tried again after 0.05 s, 0.1 s, ... at most
# 5 s apart: a call's change 3 times in all, the engine's own until stored or shut down.
STORE_RETRY_FIRST_DELAY = 0.05
STORE_RETRY_MAX_DELAY = 5.0
STORE_RETRY_CALL_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class EngineSettings:
    max_parallel_steps_per_run: int = 8
    max_concurrent_steps: int = 256
    default_step_timeout: timedelta = timedelta(minutes=5)
    watch_page: int = 500
    max_watchers_per_run: int = 100
    # A step's output (as JSON) larger than this fails the step: it is stored and streamed.
    max_output_bytes: int = 1024 * 1024
    tasks: TaskSettings = field(default_factory=TaskSettings)


class _Driver:
    """One run held in memory: its latest committed state, its lock, its lease, its timer."""

    __slots__ = ("_rested", "dropped", "fence", "finished", "flusher", "lock", "run", "wake")

    def __init__(self, run: Run, fence: Fence | None = None) -> None:
        self.run = run
        self.fence = fence
        self.lock = asyncio.Lock()
        self.finished: list[Outcome] = []
        self.flusher: asyncio.Task[None] | None = None
        self.wake: asyncio.Task[None] | None = None
        self.dropped = False
        # Made only while someone waits: most runs are never waited on (an asyncio.Event here
        # cost about 700 bytes, a tenth of a holding run's memory).
        self._rested: asyncio.Future[Run] | None = None

    def set_run(self, run: Run) -> None:
        """Make `run` the current state; wake whoever waits for the run to come to rest."""
        self.run = run
        if self._rested is not None and run.status.resting:
            self._rested.set_result(run)
            self._rested = None

    def lose(self) -> None:
        """This server no longer holds the run: waiters go and ask the store."""
        self.dropped = True
        if self.wake is not None:
            self.wake.cancel()
        if self._rested is not None:
            self._rested.set_exception(LeaseLost(f"workflow {self.run.id} moved"))
            self._rested = None

    async def rest(self) -> Run:
        """The state the run next rests in (the current one when it is resting now)."""
        if self.run.status.resting:
            return self.run
        if self._rested is None:
            self._rested = asyncio.get_running_loop().create_future()
        # Shielded: one waiter giving up must not cancel the future the others wait on.
        return await asyncio.shield(self._rested)


class Engine:
    def __init__(
        self,
        store: Store,
        handlers: HandlerRegistry,
        *,
        settings: EngineSettings = EngineSettings(),
        clock: Clock | None = None,
        sleep: Sleep = asyncio.sleep,
        bus: EventBus | None = None,
        on_committed: Sequence[Observer] = (),
        cluster: Cluster | None = None,
        probes: Probes = NO_PROBES,
        tracing: Tracing | None = None,
    ) -> None:
        """`on_committed`: called with a run and the events just committed to it (its state
        after them), after its watchers are told; the server logs runs this way. `cluster`:
        leases and notices for several servers on one database (None: this server alone).
        `probes`: told what only the runtime sees (the server's metrics). `tracing`: a traced
        server's (None: not traced); new runs get a trace context from it, and step attempts
        run under their spans."""
        self.store = store
        self.settings = settings
        self.clock = clock or SystemClock()
        self.bus = bus or EventBus()
        self.cluster = cluster
        self._observers = tuple(on_committed)
        self._probes = probes
        self._tracing = tracing
        self._sleep = sleep
        self._drivers: dict[str, _Driver] = {}
        self._acquiring: dict[str, asyncio.Future[_Driver | None]] = {}
        self._active = ActiveRunCounts(store)
        self.dispatcher = LocalDispatcher(
            handlers,
            self._on_outcome,
            self.clock,
            DispatchSettings(
                max_concurrent_steps=settings.max_concurrent_steps,
                default_step_timeout=settings.default_step_timeout,
                max_output_bytes=settings.max_output_bytes,
            ),
            probes=probes,
            tracing=tracing,
        )
        # Task steps: this server follows the tasks of the runs it drives (`remote`); workers
        # take and report on any run's tasks through `task_queue`.
        task_settings = settings.tasks
        if cluster is not None and task_settings.recheck is None:
            task_settings = replace(task_settings, recheck=cluster.settings.renew_every)
        self.remote = RemoteDispatcher(
            store, handlers, self._on_outcome, self.clock, task_settings, tracing
        )
        self.task_queue = TaskQueue(
            store,
            self.clock,
            self._tasks_changed,
            task_settings,
            recheck=cluster.settings.recheck if cluster is not None else None,
            probes=probes,
            record=self.record_result if store.results_in_commits else None,
        )
        self._background: set[asyncio.Task[Any]] = set()
        self._event_reads = SharedEventReads(store.list_events)
        self._heartbeat: asyncio.Task[None] | None = None
        self._keeper: LeaseKeeper[_Driver] | None = None
        # Set once shutdown begins: no step starts any more (running ones may finish).
        self._draining = False

    @property
    def handlers(self) -> HandlerRegistry:
        return self.dispatcher.handlers

    def driven_runs(self) -> list[Run]:
        """The runs this server drives now, as it holds them."""
        return [driver.run for driver in self._drivers.values()]

    @property
    def server_id(self) -> str:
        return self.cluster.server_id if self.cluster is not None else ""

    # --- lifecycle ------------------------------------------------------------------------

    async def recover(self) -> int:
        """Resume the runs a previous server left unfinished; returns how many. Alone, every
        RUNNING or PAUSED run; in a cluster, the RUNNING runs whose lease expired (and from
        then on, every heartbeat claims more)."""
        if self.cluster is not None:
            await self.cluster.notifier.start(self._on_notice)
            await self.cluster.leases.join(self.server_id, self.cluster.settings.lease_ttl)
            await self.cluster.leases.forget_servers()  # a row per server start: keep few
            count = await self._claim()
            self._keeper = LeaseKeeper(self.cluster, self._leased, self._drop, self._after_renewal)
            self._heartbeat = asyncio.create_task(self._keeper.run(), name="leases")
        else:
            runs = await self.store.unfinished_runs()
            drivers = [self._drivers.setdefault(run.id, _Driver(run)) for run in runs]
            await self._resume(drivers)
            count = len(runs)
        if count:
            log.info("recovered unfinished workflows", count=count)
        return count

    async def _resume(self, drivers: Sequence[_Driver]) -> None:
        """Take up runs just loaded: carry out their stored commands, start again the steps a
        previous server left running, arm their timers."""
        pending: dict[str, list[Any]] = {}
        if self.cluster is not None and drivers:
            for command in await self.cluster.leases.pending_commands([d.run.id for d in drivers]):
                pending.setdefault(command.run_id, []).append(command)
        timers = await self.store.timers_of([d.run.id for d in drivers]) if drivers else []
        due = {t.run_id: t.fire_at for t in sorted(timers, key=lambda t: t.fire_at, reverse=True)}
        await self._follow_tasks(drivers)

        async def resume(driver: _Driver) -> None:
            async with driver.lock:
                for command in pending.get(driver.run.id, ()):
                    await self._carry_out(driver, command.id, command.kind, command.args)
                if driver.dropped:
                    return
                decision = self._then(driver, Decision(driver.run.copy()))
                if decision.events:
                    await self._commit(driver, decision)
                else:
                    self._arm(driver, due.get(driver.run.id))

        # All at once: their commits share transactions (group commit) instead of queueing.
        results = await asyncio.gather(*(resume(d) for d in drivers), return_exceptions=True)
        for driver, result in zip(drivers, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, LeaseLost):
                log.error("could not resume a workflow", run_id=driver.run.id, error=repr(result))

    async def _follow_tasks(self, drivers: Sequence[_Driver]) -> None:
        """Follow the tasks of task steps a previous server left running: their workers
        carry on (a task finished meanwhile is delivered at once)."""
        remote = {
            (d.run.id, s.step_id): s.attempt
            for d in drivers
            for s in d.run.steps.values()
            if s.status is StepStatus.RUNNING and d.run.template.step(s.step_id).remote
        }
        if not remote:
            return
        for task in await self.store.tasks_of({run_id for run_id, _ in remote}):
            followed = self.remote.running(task.run_id, task.step_id)
            if remote.get((task.run_id, task.step_id)) == task.attempt and not followed:
                self.remote.start(task.run_id, task.step_id, task.attempt, task=task)

    async def drain(self, grace: float) -> None:
        """Graceful stop: start no new step, give running ones `grace` seconds to finish (their
        results commit as usual), then stop the rest. What did not finish stays RUNNING in the
        store, and the next server runs it again as a new attempt (in a cluster, at once: this
        server gives its leases up)."""
        self._draining = True
        deadline = time.monotonic() + grace
        running = self.dispatcher.tasks()
        if running and grace > 0:
            await asyncio.wait(running, timeout=grace)
        # The outcomes of the attempts that finished are committing: let them.
        flushers = [d.flusher for d in self._drivers.values() if d.flusher is not None]
        if flushers:
            await asyncio.wait(flushers, timeout=max(0.1, deadline - time.monotonic()))
        await self.stop()

    async def stop(self) -> None:
        """Stop every step task at once without recording anything: a restart resumes them.
        (A result still waiting for an unavailable store is dropped too: the step runs again.)"""
        self._draining = True
        tasks = [d.flusher for d in self._drivers.values() if d.flusher is not None]
        tasks += list(self._background)
        if self._heartbeat is not None:
            tasks.append(self._heartbeat)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._keeper is not None:
            await self._keeper.stop()
        await self.dispatcher.stop()
        await self.remote.stop()
        for driver in self._drivers.values():
            if driver.wake is not None:
                driver.wake.cancel()
        if self.cluster is not None:
            held = [d.run.id for d in self._drivers.values() if d.fence is not None]
            try:
                await self.cluster.leases.leave(self.server_id, held)
            except SluiceError as exc:
                log.warning("could not release leases: they expire instead", error=str(exc))
            await self.cluster.notifier.close()
            await self.cluster.leases.close()

    # --- calls ------------------------------------------------------------------------------

    async def create_run(
        self,
        owner: str,
        template: Template,
        params: dict[str, Any],
        request_id: str = "",
        request_hash: str = "",
    ) -> Run:
        """A new PENDING run. With a `request_id` the owner already used, the run that call
        created instead, provided `request_hash` shows it is the same request (AIP-155)."""
        now = self.clock.now()
        run = Run.new(id=str(uuid.uuid4()), owner=owner, template=template, params=params, now=now)
        decision = Decision(run)
        decision.emit(Event(EventType.WORKFLOW_CREATED, now, details={"templateId": template.id}))
        return await self._create(decision, request_id, request_hash, "CreateWorkflow")

    async def rerun(
        self,
        owner: str,
        run_id: str,
        *,
        from_step: str = "",
        options: ExecutionOptions | None = None,
        wait: bool = False,
        request_id: str = "",
        request_hash: str = "",
    ) -> Run:
        """A new run linked to the FAILED or CANCELLED run `run_id`, taking over what it
        completed (see `sluice.engine.rerun`), started with `options` (None: the original's).
        A retry with the same `request_id` gets the run the first call made, started once."""
        original = await self.get_run(owner, run_id)
        made = reruns.rerun(
            original, id=str(uuid.uuid4()), now=self.clock.now(), from_step=from_step
        )
        run = await self._create(made, request_id, request_hash, "RerunWorkflow")
        if run.rerun_of != original.id or run.rerun_from_step != from_step:
            # The request_id went to another call whose fingerprint happens to match.
            raise commands.request_id_reused("RerunWorkflow")
        return await self.execute(
            owner, run.id, options or original.options, wait=wait,
            request_id=request_id, request_hash=request_hash,
        )  # fmt: skip

    async def _create(
        self, decision: Decision, request_id: str, request_hash: str, method: str
    ) -> Run:
        """Store the new run `decision` made (its first events applied), unless its owner
        already used `request_id`: then that call's run, provided `request_hash` matches."""
        run = decision.run
        owner = run.owner
        run.request_id, run.request_hash = request_id, request_hash
        if self._tracing is not None:
            run.trace_context = self._tracing.new_run(run)
        fence: Fence | None = None
        if self.cluster is not None and len(self._drivers) < self.cluster.settings.max_runs:
            # Leased here from the start: the ExecuteWorkflow that usually follows, on any
            # server, is carried out by this one, which has the run in memory.
            stored, epoch = await self.cluster.leases.create_leased(
                decision.run, decision.events, self.server_id
            )
            fence = Fence(self.server_id, epoch) if epoch else None
        else:
            stored = await self.store.create_run(decision.run, decision.events)
        if stored.id == run.id:
            self._active.add(owner, 1)
            if self.cluster is None or fence is not None:
                # Kept in memory: the ExecuteWorkflow that usually follows need not load it back.
                self._drivers.setdefault(run.id, _Driver(stored, fence))
            self._publish(stored, decision.events)
        elif request_hash and stored.request_hash and stored.request_hash != request_hash:
            raise commands.request_id_reused(method)
        return stored

    async def active_runs(self, owner: str) -> int:
        """How many PENDING, RUNNING or PAUSED runs `owner` has (exact for what this engine
        did; what other servers did shows within a few seconds)."""
        return await self._active.get(owner)

    async def get_run(self, owner: str, run_id: str) -> Run:
        driver = self._drivers.get(run_id)
        if driver is not None:
            if driver.run.owner != owner:
                raise NotFound(f"workflow {run_id} not found")
            return driver.run
        run = await self.store.get_run(owner, run_id)
        if run is None:
            raise NotFound(f"workflow {run_id} not found")
        return run

    async def execute(
        self,
        owner: str,
        run_id: str,
        options: ExecutionOptions,
        *,
        wait: bool = False,
        request_id: str = "",
        request_hash: str = "",
    ) -> Run:
        args = {
            "options": commands.options_arg(options),
            "requestId": request_id,
            "requestHash": request_hash,
        }
        run = await self._change(owner, run_id, "start", args)
        return await self.wait_until_rest(owner, run_id) if wait else run

    async def pause(self, owner: str, run_id: str, reason: str = "") -> Run:
        return await self._change(owner, run_id, "pause", {"reason": reason})

    async def resume(
        self,
        owner: str,
        run_id: str,
        options: ExecutionOptions | None,
        *,
        auto_approve: bool | None = None,
        notify_on_completion: bool | None = None,
        wait: bool = False,
    ) -> Run:
        args = {
            "options": commands.options_arg(options),
            "autoApprove": auto_approve,
            "notifyOnCompletion": notify_on_completion,
        }
        run = await self._change(owner, run_id, "resume", args)
        return await self.wait_until_rest(owner, run_id) if wait else run

    async def cancel(self, owner: str, run_id: str, reason: str = "") -> Run:
        return await self._change(owner, run_id, "cancel", {"reason": reason})

    async def decide_gate(
        self,
        owner: str,
        run_id: str,
        gate_id: str,
        *,
        approve: bool,
        comment: str = "",
        wait: bool = False,
    ) -> Run:
        args = {"gateId": gate_id, "approve": approve, "comment": comment}
        run = await self._change(owner, run_id, "decide_gate", args)
        return await self.wait_until_rest(owner, run_id) if wait else run

    async def retry_step(self, owner: str, run_id: str, step_id: str) -> Run:
        """Start the next attempt of a RETRYING step now (its retry timer is cleared)."""
        return await self._change(owner, run_id, "retry_step", {"stepId": step_id})

    async def expire(self, owner: str, run_id: str, reason: str) -> Run:
        """Cancel a run still PENDING (FailedPrecondition once it has started)."""
        return await self._change(owner, run_id, "expire", {"reason": reason})

    async def delete(self, owner: str, run_id: str) -> None:
        """Remove a run that has ended, with its log. NotFound for an unknown (or another
        owner's) run; FailedPrecondition while it has not ended."""
        found = await self.store.delete_run(owner, run_id)
        if found is None:
            raise NotFound(f"workflow {run_id} not found")
        if not found.terminal:
            raise FailedPrecondition(
                f"workflow {run_id} is {found}; only a COMPLETED, FAILED or CANCELLED workflow "
                "can be deleted: cancel it first"
            )
        driver = self._drivers.get(run_id)
        if driver is not None and not self._running_steps(driver):
            del self._drivers[run_id]

    async def wait_until_rest(self, owner: str, run_id: str) -> Run:
        while True:
            driver = self._drivers.get(run_id)
            if driver is None or driver.run.owner != owner:
                return await self._wait_in_store(owner, run_id)
            try:
                return await driver.rest()
            except LeaseLost:
                continue  # another server drives it now

    async def _wait_in_store(self, owner: str, run_id: str) -> Run:
        """Wait for a run this server does not drive to come to rest, reading the store on
        each notice of a change (and every `recheck`, should a notice be lost)."""
        with self.bus.subscribe(run_id) as changes:
            while True:
                run = await self.get_run(owner, run_id)
                if run.status.resting or run_id in self._drivers:
                    return run if run.status.resting else await self.wait_until_rest(owner, run_id)
                await self._next_notice(changes)

    async def _next_notice(self, changes: Subscription) -> None:
        timeout = self.cluster.settings.recheck.total_seconds() if self.cluster else None
        try:
            async with asyncio.timeout(timeout):
                await changes.get()
        except TimeoutError:
            pass

    async def watch(
        self, owner: str, run_id: str, after_sequence: int = 0, *, follow: bool = False
    ) -> AsyncGenerator[Event, None]:
        """The run's events after `after_sequence`: stored ones, then live ones, no gap, no
        duplicate; ends after the terminal event unless `follow`. Events another server
        commits are read from the store on each of its notices (and every `recheck`)."""
        await self.get_run(owner, run_id)  # NotFound for a stranger's run
        if self.bus.watcher_count(run_id) >= self.settings.max_watchers_per_run:
            raise ResourceExhausted(
                f"workflow {run_id} already has {self.settings.max_watchers_per_run} watchers"
            )
        recheck = self.cluster.settings.recheck.total_seconds() if self.cluster else None
        with self.bus.subscribe(run_id) as live:
            last = after_sequence
            page = self.settings.watch_page
            while True:  # the stored log first: subscribing before reading leaves no gap
                batch = await self.store.list_events(run_id, last, page)
                for event in batch:
                    yield event
                    last = event.sequence
                    if _ends_watch(event, follow):
                        return
                if len(batch) == page:
                    continue
                if follow:
                    break
                run = await self.get_run(owner, run_id)
                if not run.status.terminal:
                    break
                if run.last_sequence <= last:
                    return  # the caller already has the terminal event
                # The run ended after our read: its last events are in the store now.
            while True:
                # The bus hears every commit of a run this server drives; a run driven
                # elsewhere is heard of by notice, and read again every `recheck` in case one
                # was lost. (A run this server stops driving pokes its watchers: see _drop.)
                local = run_id in self._drivers
                try:
                    async with asyncio.timeout(None if local else recheck):
                        events = await live.get()
                except TimeoutError:
                    events = ()
                    live.lagged = True
                if live.lagged or (events and events[0].sequence > last + 1):
                    live.lagged = False
                    events = await self._event_reads.read(run_id, last, page)
                for event in events:
                    if event.sequence <= last:
                        continue
                    yield event
                    last = event.sequence
                    if _ends_watch(event, follow):
                        return

    # --- holding runs -----------------------------------------------------------------------

    async def _hold(self, owner: str, run_id: str) -> _Driver | None:
        """The run's driver on this server, taking its lease if no live server holds it;
        None when another server does. NotFound for an unknown (or a stranger's) run."""
        driver = self._drivers.get(run_id)
        if driver is None:
            waiting = self._acquiring.get(run_id)
            if waiting is not None:  # another call on this server is taking it: share that
                driver = await asyncio.shield(waiting)
            else:
                future: asyncio.Future[_Driver | None] = asyncio.get_running_loop().create_future()
                self._acquiring[run_id] = future
                try:
                    driver = await self._take(owner, run_id)
                    future.set_result(driver)
                except BaseException as exc:
                    future.set_exception(exc)
                    future.exception()  # retrieved: no "never retrieved" warning
                    raise
                finally:
                    del self._acquiring[run_id]
            if driver is None:
                return None
        if driver.run.owner != owner:
            raise NotFound(f"workflow {run_id} not found")
        return driver

    async def _take(self, owner: str, run_id: str) -> _Driver | None:
        run = await self.store.get_run(owner, run_id)
        if run is None:
            raise NotFound(f"workflow {run_id} not found")
        if run.status.terminal:
            return _Driver(run)  # nothing will change it: keep it out of memory
        if self.cluster is None:
            return self._drivers.setdefault(run_id, _Driver(run))
        epoch = await self.cluster.leases.acquire(run_id, self.server_id)
        if epoch is None:
            return None
        # Read again under the lease: the state before it may have changed since.
        run = await self.store.get_run(owner, run_id)
        assert run is not None, "a leased run cannot be deleted: it has not ended"
        driver = self._drivers[run_id] = _Driver(run, Fence(self.server_id, epoch))
        self._resume_soon([driver])
        return driver

    def _leased(self) -> dict[str, _Driver]:
        return {d.run.id: d for d in self._drivers.values() if d.fence is not None}

    def _resume_soon(self, drivers: Sequence[_Driver]) -> None:
        task = asyncio.create_task(self._resume(drivers))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _drop(self, driver: _Driver, why: str) -> None:
        """Forget a run this server no longer holds: stop its steps (their outcomes are not
        delivered) and let the server that holds it now carry on."""
        if self._drivers.get(driver.run.id) is driver:
            del self._drivers[driver.run.id]
        for step_id in driver.run.steps:
            self.dispatcher.cancel(driver.run.id, step_id)
            self.remote.cancel(driver.run.id, step_id)
        driver.lose()
        self.bus.poke(driver.run.id)  # its watchers here now read what others commit
        log.warning("dropped a workflow this server no longer holds", run_id=driver.run.id, why=why)

    async def _claim(self) -> int:
        assert self.cluster is not None
        cluster = self.cluster
        free = cluster.settings.max_runs - len(self._drivers)
        if free <= 0 or self._draining:
            return 0
        claimed = await cluster.leases.claim(
            self.server_id, min(free, cluster.settings.claim_batch)
        )
        # Epoch 1 is a run's first holder (its creator, or the first claim of a run nobody
        # took); past it, the run was held by another server before.
        self._probes.runs_taken_over(sum(1 for _, epoch in claimed if epoch > 1))
        drivers = []
        for run_id, epoch in claimed:
            run = await self.store.get_run_any(run_id)
            if run is None or run_id in self._drivers:
                continue
            driver = self._drivers[run_id] = _Driver(run, Fence(self.server_id, epoch))
            drivers.append(driver)
        if drivers:
            log.info("took over workflows", count=len(drivers))
            await self._resume(drivers)
        return len(drivers)

    async def _after_renewal(self, kept: Set[str]) -> None:
        await self._claim()
        await self._carry_out_pending(list(kept))

    # --- commands from other servers ------------------------------------------------------

    def _on_notice(self, channel: str, run_ids: Sequence[str]) -> None:
        """Another server committed to these runs or stored commands for them (no ids: notices
        may have been lost, look at everything)."""
        if channel == TASKS:
            self.task_queue.wake(run_ids or None)  # (task types, here)
            return
        if channel == ATTEMPTS:
            if not run_ids:
                self.remote.poke_all()
            for run_id in run_ids:
                self.remote.poke(run_id)
            return
        if not run_ids:
            run_ids = list(self._drivers) if channel == COMMANDS else self.bus.watched()
        if channel == COMMANDS:
            mine = [r for r in run_ids if r in self._drivers]
            if mine:
                task = asyncio.create_task(self._carry_out_pending(mine))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
        for run_id in run_ids:
            if run_id not in self._drivers:
                self.bus.poke(run_id)

    async def _carry_out_pending(self, run_ids: Sequence[str]) -> None:
        assert self.cluster is not None
        if not run_ids:
            return
        for command in await self.cluster.leases.pending_commands(run_ids):
            driver = self._drivers.get(command.run_id)
            if driver is None:
                continue
            async with driver.lock:
                if not driver.dropped:
                    await self._carry_out(driver, command.id, command.kind, command.args)

    async def _carry_out(
        self, driver: _Driver, command_id: int, kind: str, args: Mapping[str, Any]
    ) -> None:
        """A stored command, under the run's lock: its change and its outcome in one commit
        (or only its outcome, when refused)."""
        assert self.cluster is not None
        try:
            decision = self._then(driver, commands.build(kind, args)(driver.run, self.clock.now()))
        except (FailedPrecondition, NotFound, InvalidArgument) as exc:
            await self.cluster.leases.finish_command(command_id, commands.outcome_of(exc))
            self.cluster.notifier.send(EVENTS, driver.run.id)
            return
        await self._commit(driver, decision, command=(command_id, commands.outcome_of(None)))
        if not decision.events:
            self.cluster.notifier.send(EVENTS, driver.run.id)

    async def _remote(self, owner: str, run_id: str, kind: str, args: Mapping[str, Any]) -> Run:
        """Store a command for the server that holds the run and wait for its outcome. Should
        that server die, its lease expires and this one takes the run (and the command)."""
        assert self.cluster is not None
        cluster = self.cluster
        with self.bus.subscribe(run_id) as changes:
            command_id = await cluster.leases.send_command(run_id, kind, args)
            cluster.notifier.send(COMMANDS, run_id)
            deadline = time.monotonic() + (cluster.settings.lease_ttl * 2).total_seconds()
            while True:
                outcome = await cluster.leases.command_outcome(command_id)
                if outcome is not None:
                    commands.raise_(outcome)
                    return await self.get_run(owner, run_id)
                if run_id not in self._drivers:
                    await self._hold(owner, run_id)  # takes it (and the command) if its holder died
                if time.monotonic() > deadline and await cluster.leases.withdraw_command(
                    command_id
                ):
                    raise Unavailable(
                        f"the server driving workflow {run_id} did not answer; nothing was "
                        "changed: try again"
                    )
                await self._next_notice(changes)

    # --- the machinery ----------------------------------------------------------------------

    async def _change(self, owner: str, run_id: str, kind: str, args: Mapping[str, Any]) -> Run:
        command = commands.build(kind, args)
        for _ in range(3):
            driver = await self._hold(owner, run_id)
            if driver is None:
                return await self._remote(owner, run_id, kind, args)
            async with driver.lock:
                if driver.dropped:
                    continue
                decision = self._then(driver, command(driver.run, self.clock.now()))
                try:
                    if decision.events:
                        await self._commit(driver, decision, call=True)
                except LeaseLost:
                    continue
                return driver.run
        raise Unavailable(f"workflow {run_id} is moving between servers: try again")

    async def _store(
        self,
        driver: _Driver,
        run: Run,
        decision: Decision,
        publications: Sequence[tuple[str, Publication]],
        command: tuple[int, Mapping[str, Any]] | None,
        queued: Queued,
        *,
        call: bool,
    ) -> list[list[TaskRecord]]:
        # A plain loop rather than tenacity: this is on every transition's path, and only the
        # rare failure should pay for retry machinery.
        delay = STORE_RETRY_FIRST_DELAY
        attempt = 1
        while True:
            try:
                return await self.store.commit(
                    run, decision.events, publications,
                    timers=decision.timers or None, fence=driver.fence, command=command,
                    tasks=queued.writes,
                )  # fmt: skip
            except Unavailable as exc:
                if self._draining or (call and attempt >= STORE_RETRY_CALL_ATTEMPTS):
                    raise
                log.warning(
                    "could not store a change of a workflow, trying again", run_id=run.id,
                    attempt=attempt, delay_s=delay, error=str(exc),
                )  # fmt: skip
            await self._sleep(delay)
            delay = min(2 * delay, STORE_RETRY_MAX_DELAY)
            attempt += 1

    async def _commit(
        self,
        driver: _Driver,
        decision: Decision,
        publications: Sequence[tuple[str, Publication]] = (),
        *,
        call: bool = False,
        command: tuple[int, Mapping[str, Any]] | None = None,
        results: Sequence[TaskResult] = (),
    ) -> None:
        """Persist a decision (lock held), then make it current, publish it and act on it.
        `results`: workers' results that brought its outcomes, recorded in the same commit
        (StaleTaskResult, and nothing written, should one no longer hold its task).

        A store that is unavailable for a moment is tried again with exponential backoff: a
        few times for a `call` (its caller then gets UNAVAILABLE and may call again), and for
        the engine's own changes (a step's result, a retry) until stored or the server stops:
        what happened must not wait for a restart to be recorded.
        """
        new = decision.run
        new.version = driver.run.version + 1
        queued = self.remote.writes(new, decision.events)
        if results:
            queued = queued.with_results(results)
        # Tasks a stream here has a credit for go to it in this very commit (sync match), and
        # streams whose credits results freed take the oldest queued tasks in it.
        matched = self.task_queue.match(queued.writes.queued)
        if matched:
            queued = queued.with_active([m.task for m in matched])
        claims = self.task_queue.claim()
        if claims:
            queued = queued.with_claims([c.claim for c in claims])
        committed = False
        taken: list[list[TaskRecord]] = []
        try:
            taken = await self._store(
                driver, new, decision, publications, command, queued, call=call
            )
            committed = True
        except LeaseLost:
            self._drop(driver, "its lease was taken by another server")
            raise
        except Conflict:
            # Another process changed the run: take its state, so the next decision starts
            # from the truth, and let the caller see the conflict (ABORTED).
            stored = await self.store.get_run(driver.run.owner, driver.run.id)
            if stored is not None:
                driver.set_run(stored)
            raise
        finally:
            if matched:  # each to its stream once stored; their credits back if not
                settle = self.task_queue.matched if committed else self.task_queue.unmatched
                settle(matched)
            if claims:
                if committed:
                    self.task_queue.claimed(claims, taken)
                else:
                    self.task_queue.unclaimed(claims)
        for result in results:  # recorded: their followers have nothing left to say
            self.remote.cancel(result.key.run_id, result.key.step_id)
        if new.status.terminal and not driver.run.status.terminal:
            self._active.add(new.owner, -1)
        driver.set_run(new)
        self._publish(new, decision.events)
        for event in decision.events:
            if event.type is EventType.STEP_STARTED:
                spec = new.template.step(event.step_id)
                if spec.waits:
                    continue  # a wait: a timer, armed below; nothing runs it
                if spec.remote:
                    # Followed even while draining: its worker carries on regardless.
                    refused = queued.refused.get(event.step_id)
                    task = queued.task(event.step_id)
                    self.remote.start(new.id, event.step_id, event.attempt, refused, task)
                elif not self._draining:
                    self.dispatcher.start(new, event.step_id, event.attempt)
            elif event.type is EventType.STEP_CANCELLED:
                self.dispatcher.cancel(new.id, event.step_id)
                self.remote.cancel(new.id, event.step_id)
        if waiting := queued.task_types:
            self._tasks_queued(waiting)
        self._arm(driver, wake_at(new))
        self._forget_if_done(driver)

    def _publish(self, run: Run, events: Sequence[Event]) -> None:
        """Committed events go to watchers (here and, through a notice, elsewhere) and to the
        log."""
        self.bus.publish(run.id, events)
        if self.cluster is not None and not self.cluster.commits_notify:
            self.cluster.notifier.send(EVENTS, run.id)
        for observe in self._observers:
            observe(run, events)

    def _arm(self, driver: _Driver, at: datetime | None) -> None:
        """Wake the run at `at` (its earliest timer), replacing the wake set before. (Through
        the engine's `sleep`, so a test with a clock of its own passes time at will.)"""
        if driver.wake is not None and driver.wake is not asyncio.current_task():
            driver.wake.cancel()
        driver.wake = None
        if at is None or self._draining:
            return
        delay = max(0.0, (at - self.clock.now()).total_seconds())
        driver.wake = asyncio.create_task(self._wake_after(driver, delay))

    async def _wake_after(self, driver: _Driver, delay: float) -> None:
        await self._sleep(delay)
        driver.wake = None
        await self._wake(driver)

    async def _wake(self, driver: _Driver) -> None:
        """A timer of the run fell due: decide again (the retry it waited for starts)."""
        async with driver.lock:
            if driver.dropped or driver.run.status.terminal:
                return
            decision = self._then(driver, Decision(driver.run.copy()))
            try:
                if decision.events:
                    await self._commit(driver, decision)
                else:
                    self._arm(driver, wake_at(driver.run))
            except LeaseLost:
                pass

    def _then(self, driver: _Driver, decision: Decision) -> Decision:
        """`decision` followed by what comes next, to commit as one transaction: steps a
        previous server left running start again as new attempts, then `decide`."""
        run = decision.run
        if run.status.terminal:
            return decision
        now = self.clock.now()
        if not self._draining:
            # Attempts still under way here: running, just started, or finished with their
            # outcome waiting for the next flush. Any other RUNNING step was cut off.
            under_way = {e.step_id for e in decision.events if e.type is EventType.STEP_STARTED}
            under_way.update(o.step_id for o in driver.finished)
            for step in list(run.steps.values()):
                if (
                    step.status is StepStatus.RUNNING
                    and step.wake_at is None  # a waiting step is a timer, never cut off
                    and step.step_id not in under_way
                    and not self._attempt_running(run.id, step.step_id)
                ):
                    decision.emit(
                        Event(
                            EventType.STEP_STARTED, now, step.step_id, attempt=step.attempt + 1,
                            details={"recovered": True},
                        )
                    )  # fmt: skip
        decide_into(
            decision, now, 0 if self._draining else self.settings.max_parallel_steps_per_run
        )
        return decision

    def _on_outcome(self, outcome: Outcome) -> None:
        """An attempt ended (the dispatcher's channel back): its outcome waits for the run's
        next flush, which commits every outcome that arrived meanwhile in one transaction."""
        driver = self._drivers.get(outcome.run_id)
        if driver is None or driver.dropped:
            return
        driver.finished.append(outcome)
        if driver.flusher is None:
            driver.flusher = asyncio.create_task(self._flush(driver))

    async def _flush(self, driver: _Driver) -> None:
        """Commit every attempt outcome that arrived since the last flush, and what they lead
        to, in one transaction: parallel steps that finish together cost one commit."""
        finished: list[Outcome] = []
        try:
            if any(self.dispatcher.running(driver.run.id, s) for s in driver.run.steps):
                # Let outcomes of handlers ending in this turn of the loop join. (Workers'
                # results come in messages of their own: none would in this turn.)
                await asyncio.sleep(0)
            async with driver.lock:
                finished, driver.finished, driver.flusher = driver.finished, [], None
                if not driver.dropped:
                    await self._commit_outcomes(driver, finished)
        except asyncio.CancelledError:  # the server stops
            finished += driver.finished
            raise
        finally:
            # A worker's result not recorded with its outcome (stale, the run moved on or
            # away, the server stopping): its caller records it in the store itself.
            for outcome in finished:
                if outcome.report is not None:
                    outcome.report.answer(False)

    async def _commit_outcomes(self, driver: _Driver, finished: Sequence[Outcome]) -> None:
        now = self.clock.now()
        decision = Decision(driver.run.copy())
        publications: list[tuple[str, Publication]] = []
        carried: list[Outcome] = []  # the outcomes this commit records
        for outcome in finished:
            step = decision.run.steps[outcome.step_id]
            if step.status is not StepStatus.RUNNING or step.attempt != outcome.attempt:
                continue  # the run ended (or the step was cancelled) while it ran
            carried.append(outcome)
            if outcome.result is not None:
                decision.emit(
                    Event(
                        EventType.STEP_COMPLETED, now, outcome.step_id, attempt=step.attempt,
                        details={"output": outcome.result.output},
                    )
                )  # fmt: skip
                for note in outcome.result.notifications:
                    decision.emit(
                        Event(EventType.NOTIFICATION, now, outcome.step_id, details=dict(note))
                    )
                publications += [(outcome.step_id, p) for p in outcome.result.publications]
            else:
                attempt_failed(
                    decision, now, outcome.step_id, outcome.error,
                    retryable=outcome.retryable, retry_after=outcome.retry_after,
                    error_type=outcome.error_type,
                )  # fmt: skip
        reports = [o.report for o in carried if o.report is not None]
        try:
            if decision.events:
                results = [r.result for r in reports]
                await self._commit(
                    driver, self._then(driver, decision), publications, results=results
                )
            else:
                self._forget_if_done(driver)
        except LeaseLost:
            return
        except StaleTaskResult:
            # A result lost its task meanwhile (it timed out, say): nothing was written. The
            # results go back to their callers, which record them (or are refused) in the
            # store; the other outcomes are committed again without them.
            for outcome in carried:
                if outcome.report is None:
                    self._on_outcome(outcome)
            return
        for report in reports:
            report.answer(True)

    def _running_steps(self, driver: _Driver) -> bool:
        return any(self._attempt_running(driver.run.id, s) for s in driver.run.steps)

    def _attempt_running(self, run_id: str, step_id: str) -> bool:
        return self.dispatcher.running(run_id, step_id) or self.remote.running(run_id, step_id)

    # --- tasks ------------------------------------------------------------------------------

    def record_result(self, result: TaskResult) -> asyncio.Future[bool] | None:
        """Record a worker's result for the running attempt of a run this server drives in
        the commit of the outcome it brings: one transaction for both, and nothing to wake.
        The future says whether it was, once that commit is made; None when it is not done
        so at once (the run is driven elsewhere or not at that attempt). Not recorded (None,
        or False: the task moved on meanwhile, the server stops), the caller records the
        result in the store, and the task's follower brings the outcome (or the caller is
        refused)."""
        key = result.key
        driver = self._drivers.get(key.run_id)
        if driver is None or driver.dropped or driver.run.owner != result.owner:
            return None
        step = driver.run.steps.get(key.step_id)
        if (
            step is None
            or step.status is not StepStatus.RUNNING
            or step.attempt != key.attempt
            or not self.remote.running(key.run_id, key.step_id)
        ):
            return None
        recorded: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        outcome = outcome_of(key, result.state, result.result)
        self._on_outcome(replace(outcome, report=Report(result, recorded)))
        return recorded

    def _tasks_changed(self, tasks: Sequence[TaskRecord]) -> None:
        """Workers took, reported on or handed back these tasks: their followers look again
        (here, or by notice on the server driving the run); tasks queued again wake polls."""
        for task in tasks:
            if task.run_id in self._drivers:
                self.remote.poke(task.run_id, task.step_id, task)
            elif self.cluster is not None:
                self.cluster.notifier.send(ATTEMPTS, task.run_id)
        requeued = {t.task_type for t in tasks if t.state is TaskState.QUEUED}
        if requeued:
            self._tasks_queued(requeued)

    def _tasks_queued(self, task_types: Set[str]) -> None:
        self.task_queue.wake(task_types)
        if self.cluster is not None:
            for task_type in task_types:
                self.cluster.notifier.send(TASKS, task_type)

    def _forget_if_done(self, driver: _Driver) -> None:
        """A run that ended and has no step task left needs no memory: the store has it."""
        done = driver.run.status.terminal and not self._running_steps(driver)
        if done and self._drivers.get(driver.run.id) is driver:
            del self._drivers[driver.run.id]


def _ends_watch(event: Event, follow: bool) -> bool:
    return not follow and event.run_status is not None and event.run_status.terminal
