// One node of the graph: the step's id, type and status, with its gates and condition as
// badges. Memoised: a status change re-renders that node only.

import { Handle, Position, type Node, type NodeProps } from "@xyflow/react";
import { memo } from "react";

import { tone } from "../status";
import type { GraphNode } from "./types";

export type StepNodeData = { node: GraphNode };
export type StepFlowNode = Node<StepNodeData, "step">;

function StepNodeView({ data, selected }: NodeProps<StepFlowNode>) {
  const { node } = data;
  const status = node.status ?? "";
  const problems = node.problems ?? [];
  const name = node.testId ?? node.id;
  return (
    <div
      className={`step-node tone-${status ? tone(status) : "none"}${selected ? " selected" : ""}${problems.length ? " has-problems" : ""}`}
      data-testid={`node-${name}`}
      data-status={status}
    >
      <Handle type="target" position={Position.Left} />
      <div className="step-node-head">
        <span className="step-node-title" title={node.title}>
          {node.title}
        </span>
        {status && <span className="step-node-status">{status.replace(/_/g, " ")}</span>}
      </div>
      <div className="step-node-sub" title={node.subtitle}>
        {node.subtitle}
        {node.note ? ` · ${node.note}` : ""}
      </div>
      {(node.badges?.length ?? 0) > 0 && (
        <div className="step-node-badges">
          {node.badges?.map((badge) => (
            <span
              key={badge.id}
              className={`badge tone-${badge.status ? tone(badge.status) : "none"}`}
              title={badge.title ?? badge.label}
              data-testid={`badge-${name}-${badge.id}`}
              data-status={badge.status ?? ""}
            >
              {badge.label}
            </span>
          ))}
        </div>
      )}
      {problems.length > 0 && (
        // The node's size is fixed (laid out once): the first problem shows, all are in the
        // tooltip and the accessible description.
        <div className="step-node-problems" data-testid={`problems-${name}`} title={problems.join("\n")}>
          {problems.length > 1 ? `${problems.length} problems: ` : ""}
          {problems[0]}
        </div>
      )}
      <Handle type="source" position={Position.Right} />
    </div>
  );
}

export const StepNode = memo(StepNodeView);

/** What a screen reader says for a node (React Flow's focusable wrapper carries it). */
export function nodeLabel(node: GraphNode): string {
  const parts = [node.title, node.subtitle, node.status?.toLowerCase().replace(/_/g, " ")];
  const badges = (node.badges ?? []).map((b) => `${b.label}${b.status ? ` ${b.status.toLowerCase().replace(/_/g, " ")}` : ""}`);
  const problems = (node.problems ?? []).map((p) => `problem: ${p}`);
  return [...parts, ...badges, ...problems].filter(Boolean).join(", ");
}
