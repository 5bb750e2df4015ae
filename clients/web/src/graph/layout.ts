// A layered (Sugiyama) layout of a DAG with dagre, computed once per graph shape: a status
// change never moves a node, and a 250-step graph is laid out in a few tens of milliseconds.

import dagre from "@dagrejs/dagre";

export const NODE_WIDTH = 220;
export const NODE_HEIGHT = 84;

export interface Point {
  x: number;
  y: number;
}

/** Top-left positions of the nodes, left to right by dependency depth. */
export function layout(
  ids: readonly string[],
  edges: readonly { source: string; target: string }[],
): Map<string, Point> {
  const graph = new dagre.graphlib.Graph();
  graph.setGraph({ rankdir: "LR", nodesep: 24, ranksep: 64, marginx: 16, marginy: 16 });
  graph.setDefaultEdgeLabel(() => ({}));
  for (const id of ids) {
    graph.setNode(id, { width: NODE_WIDTH, height: NODE_HEIGHT });
  }
  const known = new Set(ids);
  for (const edge of edges) {
    // An edge to a node that does not exist (a template being edited) is drawn by no one.
    if (known.has(edge.source) && known.has(edge.target)) {
      graph.setEdge(edge.source, edge.target);
    }
  }
  dagre.layout(graph);
  const positions = new Map<string, Point>();
  for (const id of ids) {
    const node = graph.node(id);
    // dagre gives centres; React Flow wants top-left corners.
    positions.set(id, { x: node.x - NODE_WIDTH / 2, y: node.y - NODE_HEIGHT / 2 });
  }
  return positions;
}

/** What the layout depends on: the node ids and edges, not their statuses or labels. */
export function shapeKey(
  ids: readonly string[],
  edges: readonly { source: string; target: string }[],
): string {
  return `${ids.join(",")}|${edges.map((e) => `${e.source}>${e.target}`).join(",")}`;
}
