"""The executor: drives runs by committing decisions and running step handlers.

All state changes of a run happen under that run's lock, in `_commit`: apply the events to a
copy, persist copy + events in one transaction, then swap the copy in and publish the events.
The pure `scheduler.decide` says what comes next; this module only carries it out (spawning a
handler for each committed STEP_STARTED, cancelling one for each STEP_CANCELLED).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from sluice.engine import commands, substitution
from sluice.engine.active_runs import ActiveRunCounts
from sluice.engine.bus import EventBus
from sluice.engine.errors import (
    Conflict,
    FailedPrecondition,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from sluice.engine.handlers import HandlerRegistry, PermanentStepError, StepContext, StepResult
from sluice.engine.model import (
    Event,
    EventType,
    ExecutionOptions,
    Publication,
    Run,
    StepSpec,
    StepStatus,
    Template,
)
from sluice.engine.ports import Clock, Store, SystemClock
from sluice.engine.scheduler import Decision, decide_into

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


@dataclass(slots=True)
class _Finished:
    """A step's last attempt is over; its result waits for the run's next flush."""

    step_id: str
    task: asyncio.Task[Any]
    result: StepResult | None
    error: str


class _Driver:
    """One run held in memory: its latest committed state, its lock and its step tasks."""

    __slots__ = ("_rested", "finished", "flusher", "lock", "run", "tasks")

    def __init__(self, run: Run) -> None:
        self.run = run
        self.lock = asyncio.Lock()
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.finished: list[_Finished] = []
        self.flusher: asyncio.Task[None] | None = None
        # Made only while someone waits: most runs are never waited on (an asyncio.Event here
        # cost about 700 bytes, a tenth of a holding run's memory).
        self._rested: asyncio.Future[Run] | None = None

    def set_run(self, run: Run) -> None:
        """Make `run` the current state; wake whoever waits for the run to come to rest."""
        self.run = run
        if self._rested is not None and run.status.resting:
            self._rested.set_result(run)
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
    ) -> None:
        """`on_committed`: called with a run and the events just committed to it (its state
        after them), after its watchers are told; the server logs runs this way."""
        self.store = store
        self.handlers = handlers
        self.settings = settings
        self.clock = clock or SystemClock()
        self.bus = bus or EventBus()
        self._observers = tuple(on_committed)
        self._sleep = sleep
        self._drivers: dict[str, _Driver] = {}
        self._active = ActiveRunCounts(store)
        self._step_slots = asyncio.Semaphore(settings.max_concurrent_steps)
        # Set once shutdown begins: no step starts any more (running ones may finish).
        self._draining = False

    # --- lifecycle ------------------------------------------------------------------------

    async def recover(self) -> int:
        """Resume every run a previous server left RUNNING or PAUSED; returns how many."""
        runs = await self.store.unfinished_runs()

        async def resume(run: Run) -> None:
            driver = self._drivers.setdefault(run.id, _Driver(run))
            async with driver.lock:
                decision = self._then(driver, Decision(driver.run.copy()))
                if decision.events:
                    await self._commit(driver, decision)

        # All at once: their commits share transactions (group commit) instead of queueing.
        await asyncio.gather(*(resume(run) for run in runs))
        if runs:
            log.info("recovered unfinished workflows", count=len(runs))
        return len(runs)

    async def drain(self, grace: float) -> None:
        """Graceful stop: start no new step, give running ones `grace` seconds to finish (their
        results commit as usual), then stop the rest. What did not finish stays RUNNING in the
        store, and the next server runs it again as a new attempt."""
        self._draining = True
        running = self._step_tasks()
        if running and grace > 0:
            await asyncio.wait(running, timeout=grace)
        await self.stop()

    async def stop(self) -> None:
        """Stop every step task at once without recording anything: a restart resumes them.
        (A result still waiting for an unavailable store is dropped too: the step runs again.)"""
        self._draining = True
        flushers = [d.flusher for d in self._drivers.values() if d.flusher is not None]
        tasks = self._step_tasks() + flushers
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _step_tasks(self) -> list[asyncio.Task[None]]:
        return [t for d in self._drivers.values() for t in d.tasks.values()]

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
        run.request_id, run.request_hash = request_id, request_hash
        decision = Decision(run)
        decision.emit(Event(EventType.WORKFLOW_CREATED, now, details={"templateId": template.id}))
        stored = await self.store.create_run(decision.run, decision.events)
        if stored.id == run.id:
            self._active.add(owner, 1)
            # Kept in memory: the ExecuteWorkflow that usually follows need not load it back.
            self._drivers.setdefault(run.id, _Driver(stored))
            self._publish(stored, decision.events)
        elif request_hash and stored.request_hash and stored.request_hash != request_hash:
            raise commands.request_id_reused("CreateWorkflow")
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
        now = self.clock.now()
        run = await self._change(
            owner, run_id, lambda run: commands.start(run, now, options, request_id, request_hash)
        )
        return await self.wait_until_rest(owner, run_id) if wait else run

    async def pause(self, owner: str, run_id: str, reason: str = "") -> Run:
        now = self.clock.now()
        return await self._change(owner, run_id, lambda run: commands.pause(run, now, reason))

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
        now = self.clock.now()
        run = await self._change(
            owner, run_id,
            lambda run: commands.resume(
                run, now, options,
                auto_approve=auto_approve, notify_on_completion=notify_on_completion,
            ),
        )  # fmt: skip
        return await self.wait_until_rest(owner, run_id) if wait else run

    async def cancel(self, owner: str, run_id: str, reason: str = "") -> Run:
        now = self.clock.now()
        return await self._change(owner, run_id, lambda run: commands.cancel(run, now, reason))

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
        now = self.clock.now()
        run = await self._change(
            owner, run_id, lambda run: commands.decide_gate(run, now, gate_id, approve, comment)
        )
        return await self.wait_until_rest(owner, run_id) if wait else run

    async def expire(self, owner: str, run_id: str, reason: str) -> Run:
        """Cancel a run still PENDING (FailedPrecondition once it has started)."""
        now = self.clock.now()
        return await self._change(owner, run_id, lambda run: commands.expire(run, now, reason))

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
        if driver is not None and not driver.tasks:
            del self._drivers[run_id]

    async def wait_until_rest(self, owner: str, run_id: str) -> Run:
        driver = self._drivers.get(run_id)
        if driver is None or driver.run.owner != owner:
            return await self.get_run(owner, run_id)
        return await driver.rest()

    async def watch(
        self, owner: str, run_id: str, after_sequence: int = 0, *, follow: bool = False
    ) -> AsyncGenerator[Event, None]:
        """The run's events after `after_sequence`: stored ones, then live ones, no gap, no
        duplicate; ends after the terminal event unless `follow`."""
        await self.get_run(owner, run_id)  # NotFound for a stranger's run
        if self.bus.watcher_count(run_id) >= self.settings.max_watchers_per_run:
            raise ResourceExhausted(
                f"workflow {run_id} already has {self.settings.max_watchers_per_run} watchers"
            )
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
                events = await live.get()
                if live.lagged or (events and events[0].sequence > last + 1):
                    live.lagged = False
                    events = await self.store.list_events(run_id, last, page)
                for event in events:
                    if event.sequence <= last:
                        continue
                    yield event
                    last = event.sequence
                    if _ends_watch(event, follow):
                        return

    # --- the machinery ----------------------------------------------------------------------

    async def _driver(self, owner: str, run_id: str) -> _Driver:
        driver = self._drivers.get(run_id)
        if driver is None:
            run = await self.store.get_run(owner, run_id)
            if run is None:
                raise NotFound(f"workflow {run_id} not found")
            if run.status.terminal:
                return _Driver(run)  # nothing will change it: keep it out of memory
            # Another call may have loaded it while we awaited the store.
            driver = self._drivers.setdefault(run_id, _Driver(run))
        if driver.run.owner != owner:
            raise NotFound(f"workflow {run_id} not found")
        return driver

    async def _change(self, owner: str, run_id: str, command: Callable[[Run], Decision]) -> Run:
        driver = await self._driver(owner, run_id)
        async with driver.lock:
            decision = self._then(driver, command(driver.run))
            if decision.events:
                await self._commit(driver, decision, call=True)
            return driver.run

    async def _store(
        self,
        run: Run,
        events: Sequence[Event],
        publications: Sequence[tuple[str, Publication]],
        *,
        call: bool,
    ) -> None:
        # A plain loop rather than tenacity: this is on every transition's path, and only the
        # rare failure should pay for retry machinery.
        delay = STORE_RETRY_FIRST_DELAY
        attempt = 1
        while True:
            try:
                return await self.store.commit(run, events, publications)
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
    ) -> None:
        """Persist a decision (lock held), then make it current, publish it and act on it.

        A store that is unavailable for a moment is tried again with exponential backoff: a
        few times for a `call` (its caller then gets UNAVAILABLE and may call again), and for
        the engine's own changes (a step's result, a retry) until stored or the server stops:
        what happened must not wait for a restart to be recorded.
        """
        new = decision.run
        new.version = driver.run.version + 1
        try:
            await self._store(new, decision.events, publications, call=call)
        except Conflict:
            # Another process changed the run: take its state, so the next decision starts
            # from the truth, and let the caller see the conflict (ABORTED).
            stored = await self.store.get_run(driver.run.owner, driver.run.id)
            if stored is not None:
                driver.set_run(stored)
            raise
        if new.status.terminal and not driver.run.status.terminal:
            self._active.add(new.owner, -1)
        driver.set_run(new)
        self._publish(new, decision.events)
        for event in decision.events:
            if event.type is EventType.STEP_STARTED and event.step_id not in driver.tasks:
                self._spawn(driver, event.step_id, event.attempt)
            elif event.type is EventType.STEP_CANCELLED:
                task = driver.tasks.pop(event.step_id, None)
                if task is not None:
                    task.cancel()
        self._forget_if_done(driver)

    def _publish(self, run: Run, events: Sequence[Event]) -> None:
        """Committed events go to watchers and to the log."""
        self.bus.publish(run.id, events)
        for observe in self._observers:
            observe(run, events)

    def _then(self, driver: _Driver, decision: Decision) -> Decision:
        """`decision` followed by what comes next, to commit as one transaction: steps a
        previous server left running start again as new attempts, then `decide`."""
        run = decision.run
        if run.status.terminal:
            return decision
        now = self.clock.now()
        if not self._draining:
            just_started = {e.step_id for e in decision.events if e.type is EventType.STEP_STARTED}
            running = driver.tasks.keys() | just_started
            for step in list(run.steps.values()):
                if step.status.active and step.step_id not in running:
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

    def _spawn(self, driver: _Driver, step_id: str, attempt: int) -> None:
        if self._draining:
            return  # committed as started: the next server runs it as a new attempt
        task = asyncio.create_task(
            self._run_step(driver, step_id, attempt), name=f"{driver.run.id}/{step_id}"
        )
        driver.tasks[step_id] = task

    async def _run_step(self, driver: _Driver, step_id: str, first_attempt: int) -> None:
        spec = driver.run.template.step(step_id)
        try:
            result: StepResult | None = await self._attempts(driver, spec, first_attempt)
            error = _unstorable(result, self.settings.max_output_bytes) if result else ""
            if error:
                result = None
        except asyncio.CancelledError:
            raise  # cancelled by the run (already recorded) or by a server stop (resumed later)
        except Exception as exc:
            result, error = None, _describe(exc)
        task = asyncio.current_task()
        assert task is not None
        driver.finished.append(_Finished(step_id, task, result, error))
        if driver.flusher is None:
            driver.flusher = asyncio.create_task(self._flush(driver))
        # Shielded: this step being cancelled now must not cancel the commit of the others.
        await asyncio.shield(driver.flusher)

    async def _flush(self, driver: _Driver) -> None:
        """Commit every step result that arrived since the last flush, and what they lead to,
        in one transaction: parallel steps that finish together cost one commit."""
        if len(driver.tasks) > len(driver.finished):
            # Other steps still run: let those finishing in this turn of the loop join.
            await asyncio.sleep(0)
        async with driver.lock:
            finished, driver.finished, driver.flusher = driver.finished, [], None
            now = self.clock.now()
            decision = Decision(driver.run.copy())
            publications: list[tuple[str, Publication]] = []
            for item in finished:
                if driver.tasks.get(item.step_id) is item.task:
                    del driver.tasks[item.step_id]
                step = decision.run.steps[item.step_id]
                if not step.status.active:
                    continue  # the run ended (or was cancelled) while it ran
                if item.result is not None:
                    decision.emit(
                        Event(
                            EventType.STEP_COMPLETED, now, item.step_id, attempt=step.attempt,
                            details={"output": item.result.output},
                        )
                    )  # fmt: skip
                    for note in item.result.notifications:
                        decision.emit(
                            Event(EventType.NOTIFICATION, now, item.step_id, details=dict(note))
                        )
                    publications += [(item.step_id, p) for p in item.result.publications]
                else:
                    decision.emit(
                        Event(
                            EventType.STEP_FAILED, now, item.step_id, attempt=step.attempt,
                            details={"error": item.error},
                        )
                    )  # fmt: skip
            if decision.events:
                await self._commit(driver, self._then(driver, decision), publications)
            else:
                self._forget_if_done(driver)

    def _forget_if_done(self, driver: _Driver) -> None:
        """A run that ended and has no step task left needs no memory: the store has it."""
        if driver.run.status.terminal and not driver.tasks:
            self._drivers.pop(driver.run.id, None)

    def _attempts(
        self, driver: _Driver, spec: StepSpec, first_attempt: int
    ) -> Awaitable[StepResult]:
        """Run the handler until it succeeds or the retry policy gives up (tenacity)."""
        remaining = max(1, spec.retry.max_attempts - first_attempt + 1)
        if remaining == 1:  # nothing to retry: no retry machinery, no extra coroutine frame
            return self._call_handler(driver.run, spec, first_attempt)
        return self._retrying(driver, spec, first_attempt, remaining)

    async def _retrying(
        self, driver: _Driver, spec: StepSpec, first_attempt: int, remaining: int
    ) -> StepResult:
        policy = spec.retry

        def attempt_number(state: RetryCallState) -> int:
            return first_attempt + state.attempt_number - 1

        async def before_sleep(state: RetryCallState) -> None:
            assert state.outcome is not None and state.next_action is not None
            await self._record(
                driver,
                Event(
                    EventType.STEP_RETRYING, self.clock.now(), spec.id,
                    attempt=attempt_number(state),
                    details={
                        "error": _describe(state.outcome.exception()),
                        "delaySeconds": state.next_action.sleep,
                    },
                ),
            )  # fmt: skip

        retrying = AsyncRetrying(
            stop=stop_after_attempt(remaining),
            wait=lambda state: policy.delay_after(attempt_number(state)).total_seconds(),
            retry=retry_if_exception(_retryable),
            before_sleep=before_sleep,
            sleep=self._sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                number = attempt_number(attempt.retry_state)
                if number > first_attempt:
                    await self._record(
                        driver,
                        Event(EventType.STEP_STARTED, self.clock.now(), spec.id, attempt=number),
                    )
                return await self._call_handler(driver.run, spec, number)
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def _record(self, driver: _Driver, event: Event) -> None:
        async with driver.lock:
            if not driver.run.steps[event.step_id].status.active:
                raise _Abandoned  # the run ended while this step was between attempts
            decision = Decision(driver.run.copy())
            decision.emit(event)
            await self._commit(driver, decision)

    async def _call_handler(self, run: Run, spec: StepSpec, attempt: int) -> StepResult:
        ctx = self._context(run, spec, attempt)  # built apart: this frame lives as long as the step
        timeout = (spec.timeout or self.settings.default_step_timeout).total_seconds()
        async with self._step_slots:
            try:
                async with asyncio.timeout(timeout):
                    return await self.handlers.get(spec.type).run(ctx)
            except TimeoutError:
                raise TimeoutError(f"attempt timed out after {timeout:g}s") from None

    def _context(self, run: Run, spec: StepSpec, attempt: int) -> StepContext:
        upstream_ids = run.template.upstream(spec.id)
        upstream = {
            step_id: step.output or {}
            for step_id, step in run.steps.items()
            if step_id in upstream_ids and step.status is StepStatus.COMPLETED
        }
        try:
            config = substitution.resolve(dict(spec.config), run.params, upstream)
        except substitution.SubstitutionError as exc:
            raise PermanentStepError(str(exc)) from None
        # Validation could not judge substituted values: the resolved config is checked here.
        self.handlers.check_resolved(spec.type, config)
        return StepContext(
            run_id=run.id,
            step_id=spec.id,
            step_type=spec.type,
            attempt=attempt,
            idempotency_key=f"{run.id}/{spec.id}",
            config=config,
            params=run.params,
            inputs={d: upstream[d] for d in spec.dependencies if d in upstream},
            upstream=upstream,
            owner=run.owner,
            now=self.clock.now(),
        )


def _unstorable(result: StepResult, limit: int) -> str:
    """Why a handler's result cannot be stored and streamed, or "" when it can."""
    try:
        size = len(json.dumps([result.output, result.notifications], allow_nan=False))
    except (TypeError, ValueError) as exc:
        return f"the step's output is not JSON data: {exc}"
    if size > limit:
        return f"the step's output is {size} bytes as JSON; the limit is {limit}"
    return ""


class _Abandoned(PermanentStepError):
    """The step's run ended between two attempts: stop without recording anything."""


def _retryable(exc: BaseException) -> bool:
    # CancelledError is a BaseException: a cancelled step must never be retried.
    return isinstance(exc, Exception) and not isinstance(exc, PermanentStepError)


def _ends_watch(event: Event, follow: bool) -> bool:
    return not follow and event.run_status is not None and event.run_status.terminal


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
