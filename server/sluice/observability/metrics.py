"""Sluice's own Prometheus metrics, counted from committed events, and the HTTP endpoint that
serves them (`SLUICE_METRICS_LISTEN`; off by default).

Counting from the events the driver has just committed (the same hook as the run log) keeps
the engine and the store free of metrics code, and counts each change once, when it is true.
Labels stay bounded: template ids, step types, outcomes and gate types; never a run id, a step
id or a user. An attempt's duration is measured from its STEP_STARTED to its end as committed
on this server (an attempt another server started is not timed here).

The runtime reports what no event says (a handler beginning, a task taken, runs taken over,
a batch committed) through `Probes`, which `Metrics` implements. What is a state rather than
a change (queues, watchers, the runs this server drives) is read when Prometheus scrapes.
Queue figures come from the shared database: with several servers, each reports the same
queues (aggregate them with max, not sum).
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from sluice.engine.model import Event, EventType, GateType, Run
from sluice.engine.ports import QueueStats
from sluice.observability.grpc_metrics import GrpcMetrics
from sluice.observability.outcomes import ATTEMPT_OUTCOMES, GATE_OUTCOMES

# Each series once: no `_created` twin per counter and histogram (noise on every scrape).
disable_created_metrics()  # type: ignore[no-untyped-call]

# Step attempts: from a few milliseconds (built-in steps) to minutes (workers, webhooks).
ATTEMPT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
LATENESS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Ready to started: a built-in step waits for a commit (milliseconds) and a free slot; a task
# waits for a worker (up to its schedule-to-start timeout, an hour by default).
DELAY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
_ENDS = {
    EventType.WORKFLOW_COMPLETED: "COMPLETED",
    EventType.WORKFLOW_FAILED: "FAILED",
    EventType.WORKFLOW_CANCELLED: "CANCELLED",
}


class Metrics:
    """The metrics of one server, in a registry of their own (tests run several servers)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.runs_started = Counter(
            "sluice_workflow_runs_started_total", "Runs started, by template.",
            ["template"], registry=self.registry,
        )  # fmt: skip
        self.runs_ended = Counter(
            "sluice_workflow_runs_ended_total", "Runs that ended, by template and status.",
            ["template", "status"], registry=self.registry,
        )  # fmt: skip
        self.attempts = Histogram(
            "sluice_step_attempt_duration_seconds",
            "Step attempts from their start to their end, by step type and outcome.",
            ["step_type", "outcome"], buckets=ATTEMPT_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.skipped = Counter(
            "sluice_steps_skipped_total", "Steps skipped (a condition, a branch not taken, the "
            "run's end), by step type.", ["step_type"], registry=self.registry,
        )  # fmt: skip
        self.gates = Counter(
            "sluice_gate_outcomes_total", "Quality gate outcomes, by gate type and outcome.",
            ["gate_type", "outcome"], registry=self.registry,
        )  # fmt: skip
        self.timer_lateness = Histogram(
            "sluice_timer_lateness_seconds",
            "How late wait steps woke: their completion minus their wake time.",
            buckets=LATENESS_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.step_start_delay = Histogram(
            "sluice_step_start_delay_seconds",
            "Built-in steps: from an attempt's start (as the engine decided it) to its handler "
            "running, by step type.", ["step_type"], buckets=DELAY_BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.schedule_to_start = Histogram(
            "sluice_task_schedule_to_start_seconds",
            "Task steps: from a task queued to a worker taking it, by task type.",
            ["task_type"], buckets=DELAY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.takeovers = Counter(
            "sluice_lease_takeovers_total",
            "Runs this server claimed that another server held before (it died, stopped or "
            "let them go).", registry=self.registry,
        )  # fmt: skip
        self.commit_batch = Histogram(
            "sluice_store_commit_batch_writes",
            "Writes (run creations, transitions) committed together in one transaction.",
            buckets=BATCH_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.commit_duration = Histogram(
            "sluice_store_commit_duration_seconds",
            "How long a batch of writes took to commit, its statements included.",
            buckets=COMMIT_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.watchers = Gauge(
            "sluice_watch_streams", "WatchWorkflow streams open on this server.",
            registry=self.registry,
        )  # fmt: skip
        self.grpc = GrpcMetrics(self.registry)
        self._state = _State()
        self.registry.register(self._state)
        self._queues: Callable[[], Awaitable[list[QueueStats]]] | None = None
        # STEP_STARTED times of attempts under way here, by (run, step).
        self._started: dict[tuple[str, str], datetime] = {}

    def follow(
        self,
        driven_runs: Callable[[], Sequence[Run]],
        queues: Callable[[], Awaitable[list[QueueStats]]],
        watch_streams: Callable[[], int],
        now: Callable[[], datetime],
    ) -> None:
        """Where the states scraped are read: the runs this server drives, the task queues,
        the open watch streams; `now`, the server's clock (the queues' times are by it)."""
        self._state.driven_runs = driven_runs
        self._state.now = now
        self._queues = queues
        self.watchers.set_function(lambda: float(watch_streams()))

    # --- Probes (sluice.runtime.probes) ------------------------------------------------------

    def step_began(self, step_type: str, started: datetime) -> None:
        waited = (self._state.now() - started).total_seconds()
        self.step_start_delay.labels(step_type).observe(max(0.0, waited))

    def task_taken(self, task_type: str, waited: float) -> None:
        self.schedule_to_start.labels(task_type).observe(max(0.0, waited))

    def runs_taken_over(self, count: int) -> None:
        if count:
            self.takeovers.inc(count)

    def batch_committed(self, writes: int, seconds: float) -> None:
        self.commit_batch.observe(writes)
        self.commit_duration.observe(seconds)

    def committed(self, run: Run, events: Sequence[Event]) -> None:
        """Count what `events`, just committed, did to `run` (its state after them)."""
        template = run.template.id
        for event in events:
            kind = event.type
            if kind is EventType.STEP_STARTED:
                self._started[(run.id, event.step_id)] = event.time
            elif kind in ATTEMPT_OUTCOMES:
                self._attempt_ended(run, event, ATTEMPT_OUTCOMES[kind])
            elif kind is EventType.STEP_SKIPPED:
                self.skipped.labels(run.template.step(event.step_id).type).inc()
            elif kind in GATE_OUTCOMES:
                gate_type = run.template_gate(event.gate_id).type or GateType.THRESHOLD
                self.gates.labels(gate_type.value.lower(), GATE_OUTCOMES[kind]).inc()
            elif kind is EventType.WORKFLOW_STARTED:
                self.runs_started.labels(template).inc()
            elif kind in _ENDS:
                self.runs_ended.labels(template, _ENDS[kind]).inc()

    def _attempt_ended(self, run: Run, event: Event, outcome: str) -> None:
        spec = run.template.step(event.step_id)
        began = self._started.pop((run.id, event.step_id), None)
        if began is not None:
            self.attempts.labels(spec.type, outcome).observe(
                max(0.0, (event.time - began).total_seconds())
            )
        if spec.waits and outcome == "completed":
            output = event.details.get("output") or {}
            wake, woke = output.get("wakeAt"), output.get("wokeAt")
            if isinstance(wake, str) and isinstance(woke, str):
                # A wait until a time already past when it began is not late: it was due then.
                due = datetime.fromisoformat(wake)
                due = max(due, began) if began is not None else due
                late = datetime.fromisoformat(woke) - due
                self.timer_lateness.observe(max(0.0, late.total_seconds()))

    async def exposition(self) -> bytes:
        if self._queues is not None:
            self._state.queues = await self._queues()
        return generate_latest(self.registry)


class _State(Collector):
    """States read at each scrape: the runs this server drives by template and status, and
    the task queues (read from the store by the scrape just before)."""

    def __init__(self) -> None:
        self.driven_runs: Callable[[], Sequence[Run]] = list
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.queues: list[QueueStats] = []

    def collect(self) -> Iterator[Metric]:
        runs = GaugeMetricFamily(
            "sluice_workflow_runs_active",
            "Runs this server drives now, by template and status.",
            labels=["template", "status"],
        )
        for (template, status), count in Tally(
            (run.template.id, run.status.value) for run in self.driven_runs()
        ).items():
            runs.add_metric([template, status], count)
        yield runs
        depth = GaugeMetricFamily(
            "sluice_task_queue_depth", "Tasks waiting for a worker, by task type.",
            labels=["task_type"],
        )  # fmt: skip
        held = GaugeMetricFamily(
            "sluice_task_queue_in_progress", "Tasks held by workers, by task type.",
            labels=["task_type"],
        )  # fmt: skip
        oldest = GaugeMetricFamily(
            "sluice_task_queue_oldest_age_seconds",
            "How long the oldest waiting task of each task type has waited (0: none waits).",
            labels=["task_type"],
        )
        now = self.now()
        for queue in self.queues:
            depth.add_metric([queue.task_type], queue.queued)
            held.add_metric([queue.task_type], queue.active)
            since = queue.oldest_queued_at
            age = (now - since).total_seconds() if since is not None else 0.0
            oldest.add_metric([queue.task_type], max(0.0, age))
        yield from (depth, held, oldest)


async def serve(metrics: Metrics, listen: str) -> tuple[web.AppRunner, str]:
    """Serve GET /metrics on `listen` (host:port; port 0 picks one); the runner (to clean up)
    and the address it listens on."""

    async def scrape(_: web.Request) -> web.Response:
        return web.Response(
            body=await metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = listen.rsplit(":", 1)
    site = web.TCPSite(runner, host, int(port))
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else int(port)
    return runner, f"{host}:{bound}"
