"""A template's DAG as Mermaid or Graphviz DOT text (or JSON), optionally with a run's statuses."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field

from sluice.cli.render import gate_status, step_status
from sluice.cli.state import GateView, RunView, StepView, gates_of, steps_of
from sluice.client import Template, Workflow

FORMATS = ("mermaid", "dot")


@dataclass(frozen=True, slots=True)
class Dag:
    name: str
    steps: list[StepView]
    edges: list[tuple[str, str]]
    gates: list[GateView]
    # Statuses are shown only for a run: a template's "PENDING" everywhere would be noise.
    with_status: bool = False
    gates_after: dict[str, list[GateView]] = field(default_factory=dict)

    @classmethod
    def of_template(cls, template: Template) -> Dag:
        return cls._build(template, steps_of(template), gates_of(template), with_status=False)

    @classmethod
    def of_run(cls, workflow: Workflow) -> Dag:
        view = RunView.of(workflow)
        return cls._build(workflow.template, view.steps, view.gates, with_status=True)

    @classmethod
    def _build(
        cls,
        template: Template,
        steps: dict[str, StepView],
        gates: dict[str, GateView],
        *,
        with_status: bool,
    ) -> Dag:
        edges = [(dep, s.id) for s in template.steps for dep in s.dependencies]
        after: dict[str, list[GateView]] = defaultdict(list)
        for gate in gates.values():
            after[gate.step_id].append(gate)
        return cls(
            template.id or template.name,
            list(steps.values()),
            edges,
            list(gates.values()),
            with_status,
            dict(after),
        )

    def has_dependents(self, step_id: str) -> bool:
        return any(source == step_id for source, _ in self.edges)


def render(dag: Dag, fmt: str) -> str:
    return _mermaid(dag) if fmt == "mermaid" else _dot(dag)


def to_json(dag: Dag) -> str:
    """The graph as data, for scripts that draw it themselves."""
    return json.dumps(
        {
            "name": dag.name,
            "nodes": [
                {"id": s.id, "type": s.type, "optional": s.optional}
                | ({"status": _step_status(s)} if dag.with_status else {})
                for s in dag.steps
            ],
            "edges": [{"from": a, "to": b} for a, b in dag.edges],
            "gates": [
                {"id": g.id, "type": g.type, "stepId": g.step_id}
                | ({"status": _gate_status(g)} if dag.with_status else {})
                for g in dag.gates
            ],
        },
        indent=2,
    )


# --- Mermaid -------------------------------------------------------------------------------------


def _mermaid(dag: Dag) -> str:
    ids = _mermaid_ids([s.id for s in dag.steps], "step")
    gate_ids = _mermaid_ids([g.id for g in dag.gates], "gate")
    lines = ["flowchart TD"]
    for s in dag.steps:
        lines.append(f'    {ids[s.id]}["{_mermaid_text(_step_label(dag, s, "<br/>"))}"]')
    for source, target in dag.edges:
        label = ", ".join(_gate_label(dag, g) for g in dag.gates_after.get(source, []))
        arrow = f'-->|"{_mermaid_text(label)}"|' if label else "-->"
        lines.append(f"    {ids[source]} {arrow} {ids[target]}")
    for step_id, gates in dag.gates_after.items():
        if dag.has_dependents(step_id) or step_id not in ids:
            continue  # shown on the outgoing edges
        for g in gates:
            lines.append(f'    {gate_ids[g.id]}{{{{"{_mermaid_text(_gate_label(dag, g))}"}}}}')
            lines.append(f"    {ids[step_id]} -.-> {gate_ids[g.id]}")
    optional = [ids[s.id] for s in dag.steps if s.optional]
    if optional:
        lines.append("    classDef optional stroke-dasharray: 5 5")
        lines.append(f"    class {','.join(optional)} optional")
    return "\n".join(lines)


def _mermaid_ids(names: list[str], prefix: str) -> dict[str, str]:
    """Mermaid ids cannot hold every character a Sluice id may (`a--b` reads as an arrow, `end`
    is a keyword), so nodes get `step_a__b`-style ids, made unique, and show the real id."""
    ids: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        candidate = base = f"{prefix}_{re.sub(r'[^A-Za-z0-9_]', '_', name)}"
        n = 2
        while candidate in taken:
            candidate, n = f"{base}_{n}", n + 1
        taken.add(candidate)
        ids[name] = candidate
    return ids


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;")


# --- DOT -----------------------------------------------------------------------------------------


def _dot(dag: Dag) -> str:
    lines = [
        f"digraph {_dot_quote(dag.name)} {{",
        "    rankdir=TB;",
        '    node [shape=box, style="rounded"];',
    ]
    for s in dag.steps:
        style = ', style="rounded,dashed"' if s.optional else ""
        lines.append(
            f"    {_dot_quote(s.id)} [label={_dot_quote(_step_label(dag, s, chr(10)))}{style}];"
        )
    for source, target in dag.edges:
        label = ", ".join(_gate_label(dag, g) for g in dag.gates_after.get(source, []))
        attrs = f" [label={_dot_quote(label)}]" if label else ""
        lines.append(f"    {_dot_quote(source)} -> {_dot_quote(target)}{attrs};")
    for step_id, gates in dag.gates_after.items():
        if dag.has_dependents(step_id):
            continue
        for g in gates:
            node = _dot_quote(f"gate:{g.id}")
            lines.append(f"    {node} [shape=diamond, label={_dot_quote(_gate_label(dag, g))}];")
            lines.append(f"    {_dot_quote(step_id)} -> {node} [style=dotted];")
    lines.append("}")
    return "\n".join(lines)


def _dot_quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


# --- labels --------------------------------------------------------------------------------------


def _step_label(dag: Dag, step: StepView, newline: str) -> str:
    kind = step.type + (", optional" if step.optional else "")
    label = f"{step.id}{newline}{kind}"
    return f"{label}{newline}{_step_status(step)}" if dag.with_status else label


def _gate_label(dag: Dag, gate: GateView) -> str:
    label = f"gate {gate.id} ({gate.type})"
    return f"{label}: {_gate_status(gate)}" if dag.with_status else label


def _step_status(step: StepView) -> str:
    return step_status(step.status)


def _gate_status(gate: GateView) -> str:
    return gate_status(gate.status)
