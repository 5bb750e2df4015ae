"""Sluice's own Prometheus metrics, counted from committed events, and the HTTP endpoint that
serves them (`SLUICE_METRICS_LISTEN`; off by default).

Counting from the events the driver has just committed (the same hook as the run log) keeps
the engine and the store free of metrics code, and counts each change once, when it is true.
Labels stay bounded: template ids, step types, outcomes and gate types; never a run id, a step
id or a user. An attempt's duration is measured from its STEP_STARTED to its end as committed
on this server (an attempt another server started is not timed here).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from sluice.engine.model import Event, EventType, GateType, Run
from sluice.observability.outcomes import ATTEMPT_OUTCOMES, GATE_OUTCOMES

# Step attempts: from a few milliseconds (built-in steps) to minutes (workers, webhooks).
ATTEMPT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
LATENESS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
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
        # STEP_STARTED times of attempts under way here, by (run, step).
        self._started: dict[tuple[str, str], datetime] = {}

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
                late = datetime.fromisoformat(woke) - datetime.fromisoformat(wake)
                self.timer_lateness.observe(max(0.0, late.total_seconds()))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


async def serve(metrics: Metrics, listen: str) -> tuple[web.AppRunner, str]:
    """Serve GET /metrics on `listen` (host:port; port 0 picks one); the runner (to clean up)
    and the address it listens on."""

    async def scrape(_: web.Request) -> web.Response:
        return web.Response(
            body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
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
