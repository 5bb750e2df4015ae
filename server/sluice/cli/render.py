"""How things look: rich tables for people, plain lines for logs, proto JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console, Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from sluice.cli import data
from sluice.cli.state import RunView, step_kind
from sluice.client import (
    EventType,
    GateStatus,
    SluiceError,
    StepStatus,
    Template,
    Workflow,
    WorkflowEvent,
    WorkflowStatus,
)
from sluice.v1.template_pb2 import (
    ApprovalTimeoutAction,
    ComparisonOperator,
    DependencyRule,
    GateAction,
    QualityGate,
    StepSpec,
)

_STATUS_STYLE = {
    "COMPLETED": "green",
    "PASSED": "green",
    "APPROVED": "green",
    "RUNNING": "cyan",
    "RETRYING": "yellow",
    "PAUSED": "yellow",
    "AWAITING_APPROVAL": "yellow",
    "FAILED": "red",
    "REJECTED": "red",
    "CANCELLED": "red",
    "SKIPPED": "dim",
    "PENDING": "dim",
}


# --- names and numbers ---------------------------------------------------------------------------


def run_status(value: WorkflowStatus.ValueType) -> str:
    return WorkflowStatus.Name(value).removeprefix("WORKFLOW_STATUS_")


def step_status(value: StepStatus.ValueType) -> str:
    return StepStatus.Name(value).removeprefix("STEP_STATUS_")


def gate_status(value: GateStatus.ValueType) -> str:
    return GateStatus.Name(value).removeprefix("GATE_STATUS_")


def event_name(value: EventType.ValueType) -> str:
    return EventType.Name(value).removeprefix("EVENT_TYPE_").lower().replace("_", " ")


def duration(value: timedelta | None) -> str:
    if value is None:
        return "-"
    seconds = value.total_seconds()
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def _styled(name: str) -> Text:
    return Text(name, style=_STATUS_STYLE.get(name, ""))


# --- JSON ----------------------------------------------------------------------------------------


def to_json(message: Message, *, compact: bool = False) -> str:
    return json_format.MessageToJson(message, indent=None if compact else 2)


def list_json(key: str, messages: Iterable[Message], next_page_token: str = "") -> str:
    """A list response's shape (`{"workflows": [...]}`, the list there even when empty, and
    `nextPageToken` when more follow), so scripts read one object."""
    found: dict[str, object] = {key: [json_format.MessageToDict(m) for m in messages]}
    if next_page_token:
        found["nextPageToken"] = next_page_token
    return json.dumps(found, indent=2)


# --- templates -----------------------------------------------------------------------------------


def templates_table(templates: Sequence[Template]) -> Table:
    table = Table("id", "version", "name", "steps", "predefined", box=None, header_style="bold")
    for t in templates:
        table.add_row(
            t.id, str(t.version), t.name, str(len(t.steps)), "yes" if t.predefined else "no"
        )
    return table


def template_detail(template: Template) -> Group:
    header = Text.assemble(
        (template.id, "bold"), f"  version {template.version}  ", template.name, "\n",
        (template.description, "dim"),
    )  # fmt: skip
    params = Table("param", "required", "default", "description", box=None, header_style="bold")
    for p in template.params:
        default = data.to_text(data.plain(p.default_value)) if p.HasField("default_value") else ""
        params.add_row(p.name, "yes" if p.required else "", default, p.description)
    steps = Table(
        "step", "type", "depends on", "optional", "runs when", box=None, header_style="bold"
    )
    for s in template.steps:
        steps.add_row(
            s.id, step_kind(s), ", ".join(s.dependencies), "yes" if s.optional else "",
            runs_when(s),
        )  # fmt: skip
    gates = Table(
        "gate", "after step", "type", "condition", "on failure", box=None, header_style="bold"
    )
    for g in template.quality_gates:
        kind = g.WhichOneof("condition") or ""
        gates.add_row(g.id, g.step_id, kind, gate_condition(g), gate_action(g))
    return Group(header, "", params, "", steps, "", gates)


def runs_when(step: StepSpec) -> str:
    """A step's condition and its join rule, as `template show` prints them."""
    parts = []
    if step.dependency_rule == DependencyRule.DEPENDENCY_RULE_ANY_COMPLETED:
        parts.append("any dependency completed")
    if step.when:
        parts.append(step.when)
    return "; ".join(parts)


_OPERATORS = {
    ComparisonOperator.COMPARISON_OPERATOR_GT: ">",
    ComparisonOperator.COMPARISON_OPERATOR_GTE: ">=",
    ComparisonOperator.COMPARISON_OPERATOR_LT: "<",
    ComparisonOperator.COMPARISON_OPERATOR_LTE: "<=",
    ComparisonOperator.COMPARISON_OPERATOR_EQ: "==",
    ComparisonOperator.COMPARISON_OPERATOR_NEQ: "!=",
}


def gate_condition(gate: QualityGate) -> str:
    """`qualityScore >= 0.7`, the CEL expression, or what an approval waits for."""
    match gate.WhichOneof("condition"):
        case "threshold":
            t = gate.threshold
            operator = _OPERATORS.get(t.operator, "?")
            return f"{t.metric} {operator} {data.number(t.threshold)}"
        case "validation":
            return gate.validation.expression
        case "approval":
            waits = "waits for `sluice approve` (or --auto-approve)"
            if gate.approval.HasField("timeout"):
                action = ApprovalTimeoutAction.Name(gate.approval.on_timeout)
                action = action.removeprefix("APPROVAL_TIMEOUT_ACTION_").lower()
                seconds = gate.approval.timeout.ToTimedelta()
                waits += (
                    f", at most {duration(seconds)}, then {action.replace('unspecified', 'reject')}"
                )
            return waits
        case "external":
            source = gate.external.webhook_url or f"workers of task type {gate.external.task_type}"
            return f"asks {source} for the verdict"
        case _:
            return ""


def gate_action(gate: QualityGate) -> str:
    """What a failure does; unset on an approval gate means it pauses (and a rejection aborts)."""
    if gate.action == GateAction.GATE_ACTION_UNSPECIFIED:
        return "pause" if gate.HasField("approval") else ""
    return GateAction.Name(gate.action).removeprefix("GATE_ACTION_").lower()


# --- runs ----------------------------------------------------------------------------------------


def runs_table(workflows: Sequence[Workflow]) -> Table:
    table = Table("id", "template", "status", "steps", "created", box=None, header_style="bold")
    table.columns[0].no_wrap = table.columns[1].no_wrap = True
    for w in workflows:
        created = w.create_time.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M")
        m = w.metrics
        # Completed of all; the skipped ones said apart (a branch not taken is not missing).
        skipped = f" ({m.skipped_steps} skipped)" if m.skipped_steps else ""
        table.add_row(
            w.id, w.template_id, _styled(run_status(w.status)),
            f"{m.completed_steps}/{m.total_steps}{skipped}", created,
        )  # fmt: skip
    return table


def run_view(view: RunView, now: datetime | None = None, *, hint: bool = False) -> Group:
    """Steps, gates and progress: the live view's frame, and `show`'s body; with `hint`, how to
    continue a paused run (for a live view that keeps waiting)."""
    now = now or datetime.now(UTC)
    header = Text.assemble(
        ("run ", "bold"), view.id, "  ", view.template_id, "  ", _styled(run_status(view.status))
    )
    steps = Table("step", "type", "status", "attempt", "duration", box=None, header_style="bold")
    for s in view.steps.values():
        steps.add_row(
            s.id + (" (optional)" if s.optional else ""), s.type, _styled(step_status(s.status)),
            str(s.attempt or "-"), duration(s.duration(now)),
        )  # fmt: skip
    parts: list[RenderableType] = [header, "", steps]
    if view.gates:
        gates = Table("gate", "type", "status", "message", box=None, header_style="bold")
        for g in view.gates.values():
            gates.add_row(g.id, g.type, _styled(gate_status(g.status)), g.message)
        parts += ["", gates]
    total = len(view.steps)
    bar = ProgressBar(
        total=max(total, 1), completed=view.settled_steps, width=40,
        complete_style="cyan", finished_style="green",
    )  # fmt: skip
    progress = Table.grid(padding=(0, 1))
    progress.add_row(bar, f"{view.settled_steps}/{total} steps settled")
    parts += ["", progress]
    if hint and view.status == WorkflowStatus.WORKFLOW_STATUS_PAUSED:
        lines = pause_hint(view.id, view.paused_gate_id, view.pause_reason)
        parts += ["", *(Text(line, style="yellow") for line in lines)]
    return Group(*parts)


def metrics_lines(workflow: Workflow) -> list[str]:
    """The run's outcome in a few lines; the last thing `run` and `watch` print."""
    m = workflow.metrics
    total = m.total_duration.ToTimedelta() if workflow.metrics.HasField("total_duration") else None
    lines = [
        f"Run {workflow.id} {run_status(workflow.status)}",
        f"  steps:    {m.completed_steps} completed, {m.failed_steps} failed, "
        f"{m.skipped_steps} skipped, {m.cancelled_steps} cancelled (of {m.total_steps})",
        f"  gates:    {m.quality_gates_passed} passed, {m.quality_gates_failed} failed",
        f"  duration: {duration(total)}",
    ]
    if workflow.error:
        lines.insert(1, f"  error:    {workflow.error}")
    return lines


def step_details(workflow: Workflow, *, full_outputs: bool = False) -> list[str]:
    """Each step's error (or why it was skipped or cancelled) and output, for `show`: outputs
    as a few `key: value` lines, or whole with `full_outputs`."""
    lines: list[str] = []
    cut = False
    for step in workflow.steps:
        if step.error:
            lines.append(f"{step.step_id} {step_status(step.status)}: {step.error}")
        if step.HasField("wake_time"):
            wake = step.wake_time.ToDatetime(UTC).isoformat(timespec="seconds")
            verb = (
                "next attempt at"
                if step.status == StepStatus.STEP_STATUS_RETRYING
                else "waits until"
            )
            lines.append(f"{step.step_id} {verb} {wake}")
        if step.HasField("output"):
            output = data.plain(step.output)
            if full_outputs:
                body = data.to_text(output, indent=2).splitlines()
            else:
                body, step_cut = data.summary_lines(output)
                cut = cut or step_cut
            lines.append(f"{step.step_id} output:")
            lines.extend(f"  {line}" for line in body)
    if cut:
        lines.append("(cut short: --outputs shows every output whole)")
    return lines


def run_params(workflow: Workflow) -> list[str]:
    return (
        [f"params: {data.to_text(data.plain(workflow.params))}"] if workflow.params.fields else []
    )


def next_step_hint(workflow: Workflow) -> list[str]:
    """For a paused run: why, and the command that continues it."""
    if workflow.status != WorkflowStatus.WORKFLOW_STATUS_PAUSED:
        return []
    gate = next((g for g in workflow.gate_results if g.gate_id == workflow.paused_gate_id), None)
    deadline = gate.deadline.ToDatetime(UTC) if gate and gate.HasField("deadline") else None
    return pause_hint(workflow.id, workflow.paused_gate_id, workflow.pause_reason, deadline)


def pause_hint(
    run_id: str, gate_id: str, reason: str, deadline: datetime | None = None
) -> list[str]:
    reason = reason or "paused"
    if gate_id:
        late = (
            [f"Its timeout acts at {deadline.isoformat(timespec='seconds')}."] if deadline else []
        )
        return [
            f"Paused at gate {gate_id}: {reason}.",
            *late,
            f"Continue with: sluice approve {run_id} {gate_id}   (or --reject to fail the run)",
        ]
    return [f"Paused: {reason}.", f"Continue with: sluice resume {run_id}"]


def event_line(event: WorkflowEvent) -> str:
    """One event for a log: `#7 gate passed quality-check (review-content): qualityScore = 1 ...`."""
    parts = [f"#{event.sequence}", event_name(event.type)]
    if event.gate_id:
        parts.append(event.gate_id + (f" ({event.step_id})" if event.step_id else ""))
    elif event.step_id:
        parts.append(event.step_id)
    if event.attempt and event.type != EventType.EVENT_TYPE_STEP_COMPLETED:
        parts.append(f"attempt {event.attempt}")
    line = " ".join(parts)
    wake = event.details.fields.get("wakeAt")
    if wake is not None and wake.string_value:
        return f"{line}: waits until {wake.string_value}"
    for key in ("message", "reason", "error"):
        value = event.details.fields.get(key)
        if value is not None and value.string_value:
            return f"{line}: {value.string_value}"
    return line


def reconnecting_notice(error: SluiceError, delay: float) -> str:
    message = " ".join(error.message.split())
    return (
        f"Reconnecting to the server ({error.code.name}: {message}); next try in {delay:.1f}s. "
        "Events resume where they stopped."
    )


def console(*, force_terminal: bool = False) -> Console:
    """stdout for tables and the live view; `force_terminal` draws the live view into a pipe."""
    # No markup or emoji codes: names and messages come from users and must print as written.
    out = Console(highlight=False, markup=False, emoji=False, force_terminal=force_terminal or None)
    if not out.is_terminal:
        # A pipe has no width; rich's 80 columns would fold ids that grep and awk need whole.
        out.width = 200
    return out
