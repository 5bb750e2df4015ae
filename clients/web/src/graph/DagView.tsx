// The graph of a template or a run: steps laid out left to right by dependency (dagre, once
// per graph shape), drawn by React Flow with pan, zoom, a minimap and zoom buttons. Status
// changes only re-render the nodes whose data changed: the pages keep a node's GraphNode
// object the same while it does not change, and this component keeps its React Flow node the
// same in turn. Reused by the template builder (connectable, draggable).

import {
  Background,
  Controls,
  MiniMap,
  ReactFlow,
  type Connection,
  type Edge,
  type EdgeMouseHandler,
  type NodeChange,
  type NodeMouseHandler,
  type ReactFlowInstance,
} from "@xyflow/react";
import "@xyflow/react/dist/style.css";
import { useCallback, useEffect, useMemo, useRef, useState, type KeyboardEvent } from "react";

import { tone } from "../status";
import { layout, NODE_HEIGHT, NODE_WIDTH, shapeKey, type Point } from "./layout";
import { nodeLabel, StepNode, type StepFlowNode } from "./StepNode";
import type { GraphEdge, GraphNode } from "./types";

const NODE_TYPES = { step: StepNode };
const FIT = { padding: 0.1, maxZoom: 1 };
const NONE: ReadonlyMap<string, Point> = new Map();
const MINIMAP_COLOURS = {
  green: "#1f9d55",
  cyan: "#0e7490",
  yellow: "#b7791f",
  red: "#c53030",
  dim: "#a0aec0",
  none: "#718096",
};

export interface DagViewProps {
  nodes: readonly GraphNode[];
  edges: readonly GraphEdge[];
  selectedId?: string | null;
  onSelect?: (id: string | null) => void;
  /** Lets the user draw an edge from a node's right handle to another's left (the builder). */
  onConnect?: (source: string, target: string) => void;
  /** Lets the user move nodes; moved nodes keep their place until the graph's shape changes. */
  draggable?: boolean;
  /** Where the nodes are (top-left corners), kept by the caller (the builder): no layout is
   * computed, and moves are reported through onMove instead of kept here. */
  positions?: ReadonlyMap<string, Point>;
  onMove?: (id: string, position: Point) => void;
  onEdgeClick?: (id: string) => void;
  /** The view is fitted to the nodes again whenever this value changes. */
  fitOn?: unknown;
  /** When this becomes a node's id, the view pans just enough to show that node (a step the
   * builder added), keeping the zoom. */
  reveal?: string | null;
  /** The graph's accessible name, e.g. "Graph of run 123". */
  label: string;
}

interface Cached {
  source: GraphNode;
  position: Point;
  selected: boolean;
  flow: StepFlowNode;
}

export function DagView(props: DagViewProps) {
  const { nodes, edges, selectedId, onSelect, onConnect, draggable = false, label } = props;
  const { positions: placed, onMove, onEdgeClick, fitOn, reveal } = props;
  const ids = useMemo(() => nodes.map((n) => n.id), [nodes]);
  const shape = shapeKey(ids, edges);
  // The layout depends on the shape alone: recomputed when a step or edge is added or
  // removed, never for a status.
  const laidOut = useMemo(() => (placed ? NONE : layout(ids, edges)), [shape, placed === undefined]); // eslint-disable-line react-hooks/exhaustive-deps
  const positions = placed ?? laidOut;
  const [moved, setMoved] = useState<{ shape: string; at: Map<string, Point> }>({
    shape,
    at: new Map(),
  });
  const overrides = moved.shape === shape ? moved.at : undefined;
  const cache = useRef(new Map<string, Cached>());
  // Set once React Flow has measured the nodes and fitted the view: tests wait on it.
  const [ready, setReady] = useState(false);
  const flow = useRef<ReactFlowInstance<StepFlowNode> | null>(null);
  const fitted = useRef(fitOn);
  useEffect(() => {
    if (fitted.current === fitOn) return;
    fitted.current = fitOn;
    // After React Flow has taken the new positions in.
    const frame = requestAnimationFrame(() => void flow.current?.fitView(FIT));
    return () => cancelAnimationFrame(frame);
  }, [fitOn]);
  const pane = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const at = reveal ? positions.get(reveal) : undefined;
    if (at === undefined) return;
    const frame = requestAnimationFrame(() => {
      const instance = flow.current;
      const box = pane.current?.getBoundingClientRect();
      if (!instance || !box) return;
      const { x, y, zoom } = instance.getViewport();
      const shift = (start: number, size: number, room: number): number => {
        const margin = 24;
        const end = start + size * zoom;
        if (start >= margin && end <= room - margin) return 0;
        // Past the far side: back just enough; the near side wins when both are out.
        const back = end > room - margin ? room - margin - end : 0;
        return start + back < margin ? margin - start : back;
      };
      const dx = shift(at.x * zoom + x, NODE_WIDTH, box.width);
      const dy = shift(at.y * zoom + y, NODE_HEIGHT, box.height);
      if (dx !== 0 || dy !== 0) void instance.setViewport({ x: x + dx, y: y + dy, zoom });
    });
    return () => cancelAnimationFrame(frame);
  }, [reveal]); // eslint-disable-line react-hooks/exhaustive-deps

  const flowNodes = useMemo(() => {
    const next = new Map<string, Cached>();
    const list = nodes.map((node): StepFlowNode => {
      const position = overrides?.get(node.id) ?? positions.get(node.id) ?? { x: 0, y: 0 };
      const selected = node.id === selectedId;
      const old = cache.current.get(node.id);
      const reuse =
        old !== undefined &&
        old.source === node &&
        old.position === position &&
        old.selected === selected;
      const flow: StepFlowNode = reuse
        ? old.flow
        : {
            id: node.id,
            type: "step",
            position,
            // Known sizes: the minimap and fitView need no measuring pass to use them.
            width: NODE_WIDTH,
            height: NODE_HEIGHT,
            selected,
            draggable,
            connectable: onConnect !== undefined,
            ariaLabel: nodeLabel(node),
            data: { node },
          };
      next.set(node.id, { source: node, position, selected, flow });
      return flow;
    });
    cache.current = next;
    return list;
  }, [nodes, positions, overrides, selectedId, draggable, onConnect]);

  const flowEdges = useMemo(
    () =>
      edges.map(
        (edge): Edge => ({
          id: edge.id,
          source: edge.source,
          target: edge.target,
          animated: edge.animated ?? false,
          selected: edge.selected ?? false,
          className: edge.dashed ? "edge-dashed" : undefined,
          style: edge.dashed ? { strokeDasharray: "6 4" } : undefined,
        }),
      ),
    [edges],
  );

  // Enter or Space on a focused node (Tab moves between them) opens it, as a click does.
  const key = useCallback(
    (event: KeyboardEvent<HTMLDivElement>) => {
      if (event.key !== "Enter" && event.key !== " ") return;
      const id = (event.target as HTMLElement).closest(".react-flow__node")?.getAttribute("data-id");
      if (id) {
        event.preventDefault();
        onSelect?.(id);
      }
    },
    [onSelect],
  );
  const click: NodeMouseHandler<StepFlowNode> = useCallback(
    (_, node) => onSelect?.(node.id),
    [onSelect],
  );
  const connect = useCallback(
    (connection: Connection) => {
      if (connection.source && connection.target) onConnect?.(connection.source, connection.target);
    },
    [onConnect],
  );
  const change = useCallback(
    (changes: NodeChange<StepFlowNode>[]) => {
      const moves = changes.filter((c) => c.type === "position" && c.position);
      if (!draggable || moves.length === 0) return;
      if (onMove) {
        for (const c of moves) {
          if (c.type === "position" && c.position) onMove(c.id, c.position);
        }
        return;
      }
      setMoved((current) => {
        const at = new Map(current.shape === shape ? current.at : []);
        for (const c of moves) {
          if (c.type === "position" && c.position) at.set(c.id, c.position);
        }
        return { shape, at };
      });
    },
    [draggable, shape, onMove],
  );
  const edgeClick: EdgeMouseHandler = useCallback((_, edge) => onEdgeClick?.(edge.id), [onEdgeClick]);

  return (
    <div className="dag" role="group" aria-label={label} data-testid="dag" data-ready={ready} onKeyDown={key} ref={pane}>
      <ReactFlow<StepFlowNode>
        nodes={flowNodes}
        edges={flowEdges}
        nodeTypes={NODE_TYPES}
        onInit={(instance) => {
          flow.current = instance;
          setReady(true);
        }}
        onNodeClick={click}
        onEdgeClick={onEdgeClick ? edgeClick : undefined}
        onPaneClick={() => onSelect?.(null)}
        onNodesChange={change}
        onConnect={onConnect ? connect : undefined}
        nodesDraggable={draggable}
        nodesConnectable={onConnect !== undefined}
        elementsSelectable
        fitView
        fitViewOptions={FIT}
        minZoom={0.05}
        maxZoom={2}
      >
        <Background gap={24} />
        <Controls showInteractive={false} />
        <MiniMap
          pannable
          zoomable
          nodeColor={(node) => {
            const status = (node.data as { node?: GraphNode }).node?.status;
            return MINIMAP_COLOURS[status ? tone(status) : "none"];
          }}
        />
      </ReactFlow>
    </div>
  );
}
