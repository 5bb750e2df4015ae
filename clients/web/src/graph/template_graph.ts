// A template as a graph: a node per step, an edge per dependency, its gates and condition as
// badges. Used by the template page and, with a run's statuses laid over it, the run page.

import { DependencyRule, type QualityGate, type Template } from "@gen/sluice/v1/template_pb.js";

import type { Badge, GraphEdge, GraphNode } from "./types";

export function templateEdges(template: Template): GraphEdge[] {
  return template.steps.flatMap((step) =>
    step.dependencies.map(
      (dependency): GraphEdge => ({
        id: `${dependency}->${step.id}`,
        source: dependency,
        target: step.id,
        dashed: step.dependencyRule === DependencyRule.ANY_COMPLETED,
      }),
    ),
  );
}

/** The gates of each step, by the step they are checked after. */
export function gatesByStep(template: Template): Map<string, QualityGate[]> {
  const found = new Map<string, QualityGate[]>();
  for (const gate of template.qualityGates) {
    found.set(gate.stepId, [...(found.get(gate.stepId) ?? []), gate]);
  }
  return found;
}

export function gateKind(gate: QualityGate): string {
  return gate.condition.case ?? "gate";
}

/** A step's gates and its condition as badges. */
export function stepBadges(gates: readonly QualityGate[], when: string): Badge[] {
  const badges: Badge[] = gates.map((gate) => ({
    id: `gate-${gate.id}`,
    label: `${gateKind(gate)}: ${gate.id}`,
  }));
  if (when) {
    badges.push({ id: "when", label: "if …", title: `runs only if ${when}` });
  }
  return badges;
}

/** The template's steps as nodes, without statuses. */
export function templateNodes(template: Template): GraphNode[] {
  const gates = gatesByStep(template);
  return template.steps.map((step): GraphNode => {
    const badges = stepBadges(gates.get(step.id) ?? [], step.when);
    return {
      id: step.id,
      title: step.id,
      subtitle: step.type === "task" ? `task ${step.taskType}` : step.type,
      note: step.optional ? "optional" : undefined,
      badges,
    };
  });
}
