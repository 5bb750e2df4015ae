// The run's graph: the template's nodes with the run's live statuses laid over them. A node
// whose status, attempt and gates did not change keeps its object, so the graph re-renders
// only what moved.

import type { Template } from "@gen/sluice/v1/template_pb.js";

import { gatesByStep, templateNodes } from "../graph/template_graph";
import type { GraphNode } from "../graph/types";
import { gateStatusName, stepStatusName } from "../status";
import type { RunState } from "./state";

export type NodeCache = Map<string, { key: string; node: GraphNode }>;

export function runNodes(
  template: Template,
  base: readonly GraphNode[],
  state: RunState,
  cache: NodeCache,
): GraphNode[] {
  const gates = gatesByStep(template);
  return base.map((node) => {
    const live = state.steps[node.id];
    const status = live ? stepStatusName(live.status) : "PENDING";
    const attempt = live?.attempt ?? 0;
    const gateStatuses = (gates.get(node.id) ?? []).map((gate) => {
      const value = state.gates[gate.id];
      return value ? gateStatusName(value.status) : "PENDING";
    });
    const key = `${status}|${attempt}|${gateStatuses.join(",")}`;
    const cached = cache.get(node.id);
    if (cached && cached.key === key) return cached.node;
    const badges = (node.badges ?? []).map((badge) => {
      const index = (gates.get(node.id) ?? []).findIndex((g) => `gate-${g.id}` === badge.id);
      return index < 0 ? badge : { ...badge, status: gateStatuses[index] };
    });
    const notes = [node.note, attempt > 1 ? `attempt ${attempt}` : undefined].filter(Boolean);
    const made: GraphNode = { ...node, status, badges, note: notes.join(" · ") || undefined };
    cache.set(node.id, { key, node: made });
    return made;
  });
}

export { templateNodes };
