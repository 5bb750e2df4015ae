// What the graph component draws: plain data, built from a template (and a run's state) by
// the pages, or from a template being edited by the builder.

/** A small label on a node: a gate after the step, the step's condition. */
export interface Badge {
  id: string;
  label: string;
  /** A status name (PASSED, AWAITING_APPROVAL, ...) for its colour; none: neutral. */
  status?: string;
  /** The full text, shown on hover. */
  title?: string;
}

export interface GraphNode {
  id: string;
  title: string;
  subtitle?: string;
  /** A status name (COMPLETED, RUNNING, PENDING, ...) for its colour and label. */
  status?: string;
  /** A line under the title, e.g. "attempt 2". */
  note?: string;
  badges?: readonly Badge[];
  /** Problems to show on the node (the builder's validation errors). */
  problems?: readonly string[];
  /** The name tests find the node by (node-<name>, problems-<name>, badge-<name>-<badge>);
   * default: id. The builder's node ids are keys that outlive edits of the step's id. */
  testId?: string;
}

export interface GraphEdge {
  id: string;
  source: string;
  target: string;
  /** Drawn dashed: a dependency of a join step (any dependency completed is enough). */
  dashed?: boolean;
  /** Drawn animated: work flows along it now. */
  animated?: boolean;
  /** Drawn selected (the builder's edge being looked at). */
  selected?: boolean;
}
