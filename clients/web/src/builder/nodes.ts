// The draft as the graph component draws it: a node per step (keyed by the step's key, named
// by its id for tests), its gates and condition as badges, its problems on it. A node keeps
// its object while its step, gates and problems stay the same, so typing in one step's
// field re-renders that node only, even among 200.

import { DependencyRule, type StepSpec } from "@gen/sluice/v1/template_pb.js";

import { stepBadges } from "../graph/template_graph";
import type { GraphEdge, GraphNode } from "../graph/types";
import { edgesOf, type Draft, type GateDraft } from "./draft";
import type { Placed } from "./problems";

export type BuilderNodeCache = Map<string, { spec: StepSpec; signature: string; node: GraphNode }>;

export function builderNodes(draft: Draft, placed: Placed, cache: BuilderNodeCache): GraphNode[] {
  const gatesOf = new Map<string, GateDraft[]>();
  for (const gate of draft.gates) gatesOf.set(gate.stepKey, [...(gatesOf.get(gate.stepKey) ?? []), gate]);
  const seen = new Set<string>();
  const nodes = draft.steps.map((step): GraphNode => {
    seen.add(step.key);
    const gates = gatesOf.get(step.key) ?? [];
    const problems = placed.steps.get(step.key) ?? [];
    const badGates = new Set(gates.filter((g) => placed.gates.has(g.key)).map((g) => `gate-${g.gate.id}`));
    const signature = [
      gates.map((g) => `${g.gate.id}:${g.gate.condition.case ?? ""}`).join(","),
      [...badGates].join(","),
      problems.join("\n"),
    ].join("|");
    const cached = cache.get(step.key);
    if (cached && cached.spec === step.spec && cached.signature === signature) return cached.node;
    const spec = step.spec;
    const badges = stepBadges(
      gates.map((g) => g.gate),
      spec.when,
    ).map((badge) => (badGates.has(badge.id) ? { ...badge, status: "FAILED" } : badge));
    const node: GraphNode = {
      id: step.key,
      testId: spec.id || step.key,
      title: spec.id || "(no id)",
      subtitle: spec.type === "task" ? `task ${spec.taskType}` : spec.type,
      note: spec.optional ? "optional" : undefined,
      badges,
      problems,
    };
    cache.set(step.key, { spec, signature, node });
    return node;
  });
  for (const key of cache.keys()) if (!seen.has(key)) cache.delete(key);
  return nodes;
}

/** What the edges depend on: a new edge list only when it changes. */
export function edgeSignature(draft: Draft, selected: string | null): string {
  const parts = draft.steps.map((s) => `${s.key}<${s.after.join(",")}:${s.spec.dependencyRule}`);
  return `${parts.join(";")}|${selected ?? ""}`;
}

export function builderEdges(draft: Draft, selected: string | null): GraphEdge[] {
  const rules = new Map(draft.steps.map((s) => [s.key, s.spec.dependencyRule]));
  return edgesOf(draft).map((edge) => ({
    ...edge,
    // A join's dependencies are drawn dashed, as on the other pages.
    dashed: rules.get(edge.target) === DependencyRule.ANY_COMPLETED,
    selected: edge.id === selected,
  }));
}
