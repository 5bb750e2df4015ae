"""The domain: templates, runs, steps, gates and events as plain values.

Nothing here knows about gRPC or SQL. Templates are frozen; a run is a mutable
projection of its event log, changed only by `sluice.engine.transitions.apply`.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

_T = TypeVar("_T")

JsonObject = dict[str, Any]


class RunStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL_RUN

    @property
    def resting(self) -> bool:
        """A run rests when nothing happens to it without a call from outside."""
        return self is not RunStatus.RUNNING and self is not RunStatus.PENDING


_TERMINAL_RUN = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


class StepStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    RETRYING = "RETRYING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL_STEP

    @property
    def active(self) -> bool:
        return self is StepStatus.RUNNING or self is StepStatus.RETRYING


_TERMINAL_STEP = frozenset(
    {StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED}
)


class GateType(StrEnum):
    THRESHOLD = "THRESHOLD"
    VALIDATION = "VALIDATION"
    APPROVAL = "APPROVAL"
    # The verdict comes from outside: a webhook or a worker (see sluice.engine.validators).
    EXTERNAL = "EXTERNAL"


class GateAction(StrEnum):
    CONTINUE = "CONTINUE"
    PAUSE = "PAUSE"
    ABORT = "ABORT"


class ApprovalTimeout(StrEnum):
    """What an approval gate's deadline does when no one decided in time."""

    APPROVE = "APPROVE"
    REJECT = "REJECT"
    # The run fails; the gate is recorded FAILED (nobody rejected it: nobody answered).
    FAIL = "FAIL"


class DependencyRule(StrEnum):
    """When a step whose dependencies ended may run."""

    # Every dependency completed (and its gates let it through); a skipped, failed or
    # cancelled one skips the step: skips propagate down a branch not taken.
    ALL_COMPLETED = "ALL_COMPLETED"
    # Every dependency ended and at least one completed: the join after branches.
    ANY_COMPLETED = "ANY_COMPLETED"


class GateStatus(StrEnum):
    PENDING = "PENDING"
    PASSED = "PASSED"
    FAILED = "FAILED"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    SKIPPED = "SKIPPED"

    @property
    def lets_dependents_run(self) -> bool:
        """Whether steps after the gated step may start (a CONTINUE failure does too;
        the caller checks the action)."""
        return self in (GateStatus.PASSED, GateStatus.APPROVED, GateStatus.FAILED)


class Operator(StrEnum):
    GT = "GT"
    GTE = "GTE"
    LT = "LT"
    LTE = "LTE"
    EQ = "EQ"
    NEQ = "NEQ"

    def holds(self, value: float, threshold: float) -> bool:
        match self:
            case Operator.GT:
                return value > threshold
            case Operator.GTE:
                return value >= threshold
            case Operator.LT:
                return value < threshold
            case Operator.LTE:
                return value <= threshold
            case Operator.EQ:
                return value == threshold
            case Operator.NEQ:
                return value != threshold


class EventType(StrEnum):
    WORKFLOW_CREATED = "WORKFLOW_CREATED"
    WORKFLOW_STARTED = "WORKFLOW_STARTED"
    WORKFLOW_PAUSED = "WORKFLOW_PAUSED"
    WORKFLOW_RESUMED = "WORKFLOW_RESUMED"
    WORKFLOW_COMPLETED = "WORKFLOW_COMPLETED"
    WORKFLOW_FAILED = "WORKFLOW_FAILED"
    WORKFLOW_CANCELLED = "WORKFLOW_CANCELLED"
    STEP_STARTED = "STEP_STARTED"
    STEP_RETRYING = "STEP_RETRYING"
    STEP_COMPLETED = "STEP_COMPLETED"
    STEP_FAILED = "STEP_FAILED"
    STEP_SKIPPED = "STEP_SKIPPED"
    STEP_CANCELLED = "STEP_CANCELLED"
    GATE_PASSED = "GATE_PASSED"
    GATE_FAILED = "GATE_FAILED"
    GATE_AWAITING_APPROVAL = "GATE_AWAITING_APPROVAL"
    GATE_APPROVED = "GATE_APPROVED"
    GATE_REJECTED = "GATE_REJECTED"
    NOTIFICATION = "NOTIFICATION"


# --- templates ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failed attempt is retried. Delays follow initial * multiplier^(n-1), spread by
    plus or minus `jitter` of themselves, capped at max_backoff."""

    max_attempts: int = 1
    initial_backoff: timedelta = timedelta(seconds=1)
    multiplier: float = 2.0
    max_backoff: timedelta = timedelta(minutes=5)
    jitter: float = 0.0
    # Error types (as a handler or worker names them) that fail the step at once.
    non_retryable_errors: tuple[str, ...] = ()

    def delay_after(self, attempt: int, draw: float = 0.5) -> timedelta:
        """The wait before attempt `attempt + 1`, given that attempt `attempt` (1-based) failed;
        `draw` (in [0, 1)) places it within the jitter's spread (0.5: in the middle)."""
        seconds = self.initial_backoff.total_seconds() * self.multiplier ** (attempt - 1)
        seconds *= 1 + self.jitter * (2 * draw - 1)
        return min(timedelta(seconds=seconds), self.max_backoff)


@dataclass(frozen=True, slots=True)
class StepSpec:
    id: str
    type: str
    name: str = ""
    description: str = ""
    config: Mapping[str, Any] = field(default_factory=dict)
    dependencies: tuple[str, ...] = ()
    optional: bool = False
    retry: RetryPolicy = RetryPolicy()
    timeout: timedelta | None = None
    # A step of type TASK_STEP_TYPE is served by workers that poll for its task type.
    task_type: str = ""
    # How long such a step's attempt may wait for a worker (None: the server's default).
    schedule_to_start: timedelta | None = None
    # A CEL condition over params and upstream outputs; false skips the step ("": always).
    when: str = ""
    dependency_rule: DependencyRule = DependencyRule.ALL_COMPLETED
    # Set on the step that asks an external gate's validator: the gate's id (and the step's).
    validates: str = ""

    @property
    def remote(self) -> bool:
        return self.type == TASK_STEP_TYPE

    @property
    def waits(self) -> bool:
        """A wait step is a durable timer kept by the engine: no handler runs it."""
        return self.type == WAIT_STEP_TYPE


# The step type served by workers (WorkerService) rather than a handler in the server.
TASK_STEP_TYPE = "task"
# The step type that waits, durably, for a duration or until a time (as Conductor's WAIT).
WAIT_STEP_TYPE = "wait"


@dataclass(frozen=True, slots=True)
class GateSpec:
    id: str
    # None only in a template that has not passed validation (no condition / no action set).
    type: GateType | None
    step_id: str
    action: GateAction | None
    name: str = ""
    # threshold
    metric: str = ""
    operator: Operator | None = None
    threshold: float = 0.0
    # validation
    expression: str = ""
    # approval: how long it may wait for a decision (None: forever), and what then
    approval_timeout: timedelta | None = None
    on_timeout: ApprovalTimeout | None = None  # None: REJECT
    # external: who gives the verdict (one of the two), and how its attempts are bounded
    webhook_url: str = ""
    task_type: str = ""
    validator_timeout: timedelta | None = None
    validator_retry: RetryPolicy = RetryPolicy()


@dataclass(frozen=True, slots=True)
class ParamSpec:
    name: str
    description: str = ""
    required: bool = False
    default: Any = None


# eq=False: identity hashing, so a template can key caches (its config dicts are unhashable).
@dataclass(frozen=True, slots=True, eq=False)
class Template:
    id: str
    name: str = ""
    description: str = ""
    steps: tuple[StepSpec, ...] = ()
    gates: tuple[GateSpec, ...] = ()
    params: tuple[ParamSpec, ...] = ()
    version: int = 0
    predefined: bool = False
    owner: str = ""
    created_at: datetime | None = None

    # Lookups derived from the (immutable) fields, built on first use.
    _derived: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def step(self, step_id: str) -> StepSpec:
        index: dict[str, StepSpec] | None = self._derived.get("steps")
        if index is None:
            index = self._derived["steps"] = {s.id: s for s in self.steps}
        return index[step_id]

    def upstream(self, step_id: str) -> frozenset[str]:
        """Every step `step_id` depends on, directly or transitively."""
        key = f"upstream:{step_id}"
        found: frozenset[str] | None = self._derived.get(key)
        if found is None:
            from sluice.engine.graph import upstream_of

            graph = {s.id: s.dependencies for s in self.steps}
            found = self._derived[key] = frozenset(upstream_of(step_id, graph))
        return found

    @property
    def order(self) -> tuple[str, ...]:
        """Step ids, each after its dependencies (the template must be free of cycles)."""
        order: tuple[str, ...] | None = self._derived.get("order")
        if order is None:
            from sluice.engine.graph import topological_order

            graph = {s.id: s.dependencies for s in self.steps}
            order = self._derived["order"] = tuple(topological_order(graph))
        return order

    def gates_after(self, step_id: str) -> tuple[GateSpec, ...]:
        return tuple(g for g in self.gates if g.step_id == step_id)


# --- runs --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExecutionOptions:
    auto_approve: bool = False
    notify_on_completion: bool = False


@dataclass(slots=True)
class StepRun:
    step_id: str
    status: StepStatus = StepStatus.PENDING
    attempt: int = 0
    started_at: datetime | None = None
    ended_at: datetime | None = None
    output: JsonObject | None = None
    error: str = ""
    # While RETRYING: when the next attempt is due; while a wait step runs: when it ends. A
    # durable timer fires it.
    wake_at: datetime | None = None

    @property
    def duration(self) -> timedelta | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at

    @property
    def reused(self) -> bool:
        """Completed without an attempt of its own: a rerun took the output over from the run
        it reruns (a step that ran has attempt 1 or more)."""
        return self.status is StepStatus.COMPLETED and self.attempt == 0


@dataclass(slots=True)
class GateResult:
    gate_id: str
    status: GateStatus = GateStatus.PENDING
    observed_value: float | None = None
    message: str = ""
    decided_at: datetime | None = None
    # While AWAITING_APPROVAL: when its approval timeout acts (a durable timer fires it).
    deadline: datetime | None = None


@dataclass(slots=True)
class Run:
    """A workflow run: the current projection of its event log."""

    id: str
    owner: str
    template: Template
    params: JsonObject
    created_at: datetime
    status: RunStatus = RunStatus.PENDING
    steps: dict[str, StepRun] = field(default_factory=dict)
    gates: dict[str, GateResult] = field(default_factory=dict)
    options: ExecutionOptions = ExecutionOptions()
    error: str = ""
    pause_reason: str = ""
    paused_gate_id: str = ""
    started_at: datetime | None = None
    ended_at: datetime | None = None
    updated_at: datetime | None = None
    last_sequence: int = 0
    # Incremented by every committed change; the store's compare-and-set guard.
    version: int = 0
    # Idempotency keys of the CreateWorkflow and ExecuteWorkflow calls that created and started
    # it, and fingerprints of those requests: a key reused for a different request is refused.
    request_id: str = ""
    start_request_id: str = ""
    request_hash: str = ""
    start_request_hash: str = ""
    # A rerun (RerunWorkflow): the run it reruns, and the step it was asked to rerun from ("":
    # from the steps that did not complete).
    rerun_of: str = ""
    rerun_from_step: str = ""
    # Where the run's trace hangs, when the server traced it as it was created (empty when
    # tracing was off): W3C Trace Context fields of the run's own span ("traceparent"), and of
    # the call that created it ("link"). Opaque to the engine; set once, stored with the run, so
    # every server that drives it later adds to the same trace.
    trace_context: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def new(
        cls, *, id: str, owner: str, template: Template, params: JsonObject, now: datetime
    ) -> Run:
        return cls(
            id=id,
            owner=owner,
            template=template,
            params=params,
            created_at=now,
            updated_at=now,
            steps={s.id: StepRun(s.id) for s in template.steps},
            gates={g.id: GateResult(g.id) for g in template.gates},
        )

    def upstream_outputs(self, step_id: str) -> dict[str, JsonObject]:
        """The outputs of the completed steps upstream of `step_id`, by step id: what its
        substitutions may read."""
        upstream_ids = self.template.upstream(step_id)
        return {
            other: step.output or {}
            for other, step in self.steps.items()
            if other in upstream_ids and step.status is StepStatus.COMPLETED
        }

    def template_gate(self, gate_id: str) -> GateSpec:
        for gate in self.template.gates:
            if gate.id == gate_id:
                return gate
        raise KeyError(gate_id)

    def copy(self) -> Run:
        """A deep enough copy to apply events to without touching this one."""
        run = _copy_run(self)
        run.steps = {k: _copy_step(v) for k, v in self.steps.items()}
        run.gates = {k: _copy_gate(v) for k, v in self.gates.items()}
        return run


def _copier(cls: type[_T]) -> Callable[[_T], _T]:
    """A shallow copy of a dataclass instance by positional construction: runs are copied for
    every decision, and this is several times cheaper than `dataclasses.replace`."""
    fields = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    get = operator.attrgetter(*fields)
    return lambda obj: cls(*get(obj))


_copy_run = _copier(Run)
_copy_step = _copier(StepRun)
_copy_gate = _copier(GateResult)


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of a run's log. `sequence` is assigned when the event is applied."""

    type: EventType
    time: datetime
    step_id: str = ""
    gate_id: str = ""
    attempt: int = 0
    details: Mapping[str, Any] = field(default_factory=dict)
    sequence: int = 0
    run_id: str = ""
    # The run's status once this event is applied (filled in by `apply`).
    run_status: RunStatus | None = None


@dataclass(frozen=True, slots=True)
class Publication:
    """A record a step writes to the outbox in the same transaction as its completion."""

    kind: str  # "post" or "notification"
    channel: str
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Metrics:
    total_steps: int
    completed_steps: int
    failed_steps: int
    skipped_steps: int
    cancelled_steps: int
    total_duration: timedelta
    quality_gates_passed: int
    quality_gates_failed: int
    total_attempts: int
    step_durations: Mapping[str, timedelta]
