// The template being built, and every edit of it as a pure function (draft in, draft out).
//
// Steps, gates and params have keys of their own that outlive edits of their ids: a graph
// node is a key, a dependency joins two keys, a gate belongs to a step's key. So renaming a
// step (its id half typed, or the same as another's for a moment) neither breaks an edge nor
// moves a node; ids are written into the template only when it is sent (`toTemplate`).
// Everything else stays in the generated messages, so what a loaded template carries that the
// editor has no field for (a retry's jitter, a task step's queue timeout) is sent back as it was.

import { create, fromJson, toJson, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";

import {
  ComparisonOperator,
  GateAction,
  ParamSpecSchema,
  QualityGateSchema,
  StepSpecSchema,
  TemplateSchema,
  type ParamSpec,
  type QualityGate,
  type StepSpec,
  type Template,
} from "@gen/sluice/v1/template_pb.js";

import { layout, NODE_HEIGHT, NODE_WIDTH, type Point } from "../graph/layout";

export interface StepDraft {
  readonly key: string;
  /** The step as it is sent, but for its dependencies (`after`) and config (`configText`). */
  readonly spec: StepSpec;
  /** Keys of the steps this one runs after, in order. */
  readonly after: readonly string[];
  /** The config as typed. While it is not a JSON object, `configError` says why and the
   * template is sent with the last config that was. */
  readonly configText: string;
  readonly configError?: string;
}

export interface GateDraft {
  readonly key: string;
  /** The step the gate is checked after. */
  readonly stepKey: string;
  readonly gate: QualityGate;
}

export interface ParamDraft {
  readonly key: string;
  readonly spec: ParamSpec;
  /** The default value as typed (JSON); empty: none. */
  readonly defaultText: string;
  readonly defaultError?: string;
}

export interface Draft {
  readonly id: string;
  readonly name: string;
  readonly description: string;
  readonly steps: readonly StepDraft[];
  readonly gates: readonly GateDraft[];
  readonly params: readonly ParamDraft[];
  /** Where each step's node is, by key. */
  readonly positions: ReadonlyMap<string, Point>;
  /** Keys handed out so far. */
  readonly serial: number;
}

export type GateKind = "threshold" | "validation" | "approval" | "external";

export const GATE_KINDS: readonly GateKind[] = ["threshold", "validation", "approval", "external"];

export const emptyDraft = (): Draft => ({
  id: "",
  name: "",
  description: "",
  steps: [],
  gates: [],
  params: [],
  positions: new Map(),
  serial: 0,
});

const COLUMN = NODE_WIDTH + 64;
const ROW = NODE_HEIGHT + 24;

const configJson = (config: JsonObject | undefined): string => JSON.stringify(config ?? {}, null, 2);

function defaultJson(spec: ParamSpec): string {
  return spec.defaultValue === undefined ? "" : JSON.stringify(toJson(ValueSchema, spec.defaultValue));
}

/** A registered (or predefined) template to edit; laid out as the template page lays it out. */
export function fromTemplate(template: Template, id = template.id): Draft {
  let serial = 0;
  const keyOf = new Map<string, string>();
  const steps = template.steps.map((spec): StepDraft => {
    const key = `s${++serial}`;
    keyOf.set(spec.id, key);
    return { key, spec, after: [], configText: configJson(spec.config) };
  });
  const withAfter = steps.map((step) => ({
    ...step,
    after: step.spec.dependencies.flatMap((dependency) => keyOf.get(dependency) ?? []),
  }));
  const gates = template.qualityGates.flatMap((gate): GateDraft[] => {
    const stepKey = keyOf.get(gate.stepId);
    return stepKey ? [{ key: `g${++serial}`, stepKey, gate }] : [];
  });
  const params = template.params.map(
    (spec): ParamDraft => ({ key: `p${++serial}`, spec, defaultText: defaultJson(spec) }),
  );
  const draft = { id, name: template.name, description: template.description, steps: withAfter, gates, params, positions: new Map(), serial };
  return relayout(draft);
}

/** The template to validate or save. */
export function toTemplate(draft: Draft): Template {
  const idOf = new Map(draft.steps.map((s) => [s.key, s.spec.id]));
  return create(TemplateSchema, {
    id: draft.id,
    name: draft.name,
    description: draft.description,
    steps: draft.steps.map((s) => ({ ...s.spec, dependencies: s.after.map((k) => idOf.get(k) ?? "") })),
    qualityGates: draft.gates.map((g) => ({ ...g.gate, stepId: idOf.get(g.stepKey) ?? "" })),
    params: draft.params.map((p) => p.spec),
  });
}

export function edgesOf(draft: Draft): { id: string; source: string; target: string }[] {
  return draft.steps.flatMap((step) =>
    step.after.map((from) => ({ id: edgeId(from, step.key), source: from, target: step.key })),
  );
}

export const edgeId = (from: string, to: string): string => `${from}->${to}`;

export function parseEdgeId(id: string): [string, string] | null {
  const [from, to, ...rest] = id.split("->");
  return from && to && rest.length === 0 ? [from, to] : null;
}

// --- steps ----------------------------------------------------------------------------------

/** An id like `base`, `base-2`, ... that no step or gate has yet. */
function freshId(draft: Draft, base: string): string {
  const taken = new Set([...draft.steps.map((s) => s.spec.id), ...draft.gates.map((g) => g.gate.id)]);
  const clean = base.toLowerCase().replace(/[^a-z0-9_-]+/g, "-").replace(/^[^a-z]+/, "") || "step";
  if (!taken.has(clean)) return clean;
  let n = 2;
  while (taken.has(`${clean}-${n}`)) n++;
  return `${clean}-${n}`;
}

/** Right of `near` (or in the first column, below the others), on the first free row. */
function placeFor(draft: Draft, near: string | null): Point {
  const anchor = near ? draft.positions.get(near) : undefined;
  const taken = [...draft.positions.values()];
  const bottom = Math.max(-ROW + 16, ...taken.filter((p) => p.x < COLUMN / 2).map((p) => p.y));
  let at: Point = anchor ? { x: anchor.x + COLUMN, y: anchor.y } : { x: 16, y: bottom + ROW };
  while (taken.some((p) => Math.abs(p.x - at.x) < NODE_WIDTH && Math.abs(p.y - at.y) < NODE_HEIGHT)) {
    at = { x: at.x, y: at.y + ROW };
  }
  return at;
}

export function addStep(
  draft: Draft,
  type: string,
  config: JsonObject,
  near: string | null,
): { draft: Draft; key: string } {
  const key = `s${draft.serial + 1}`;
  const spec = create(StepSpecSchema, { id: freshId(draft, type), type, config });
  const positions = new Map(draft.positions).set(key, placeFor(draft, near));
  const step: StepDraft = { key, spec, after: [], configText: configJson(config) };
  return { draft: { ...draft, steps: [...draft.steps, step], positions, serial: draft.serial + 1 }, key };
}

/** `items` with the one of `key` changed. */
const changed = <T extends { key: string }>(items: readonly T[], key: string, change: (item: T) => T): T[] =>
  items.map((item) => (item.key === key ? change(item) : item));

function mapStep(draft: Draft, key: string, change: (step: StepDraft) => StepDraft): Draft {
  return { ...draft, steps: changed(draft.steps, key, change) };
}

export function updateStep(draft: Draft, key: string, change: Partial<StepSpec>): Draft {
  return mapStep(draft, key, (s) => ({ ...s, spec: { ...s.spec, ...change } }));
}

/** A new config text; the step's config follows when it is a JSON object. */
export function setConfigText(draft: Draft, key: string, text: string): Draft {
  return mapStep(draft, key, (s) => {
    let parsed: unknown;
    try {
      parsed = text.trim() === "" ? {} : JSON.parse(text);
    } catch (error) {
      return { ...s, configText: text, configError: `not valid JSON: ${(error as Error).message}` };
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      return { ...s, configText: text, configError: "must be a JSON object: {...}" };
    }
    return { key: s.key, spec: { ...s.spec, config: parsed as JsonObject }, after: s.after, configText: text };
  });
}

/** Another type: a config that was the old type's starter (or empty) becomes the new one's. */
export function setStepType(draft: Draft, key: string, type: string, oldStarter: JsonObject, newStarter: JsonObject): Draft {
  const step = draft.steps.find((s) => s.key === key);
  if (step === undefined) return draft;
  const current = JSON.stringify(step.spec.config ?? {});
  const untouched = !step.configError && (current === "{}" || current === JSON.stringify(oldStarter));
  const typed = updateStep(draft, key, { type, taskType: type === "task" ? step.spec.taskType : "" });
  return untouched ? setConfigText(typed, key, configJson(newStarter)) : typed;
}

export function removeStep(draft: Draft, key: string): Draft {
  const positions = new Map(draft.positions);
  positions.delete(key);
  return {
    ...draft,
    steps: draft.steps
      .filter((s) => s.key !== key)
      .map((s) => (s.after.includes(key) ? { ...s, after: s.after.filter((k) => k !== key) } : s)),
    gates: draft.gates.filter((g) => g.stepKey !== key),
    positions,
  };
}

/** `to` runs after `from`. A step after itself or an edge drawn twice changes nothing; a
 * cycle is allowed here, for ValidateTemplate to report. */
export function connect(draft: Draft, from: string, to: string): Draft {
  const target = draft.steps.find((s) => s.key === to);
  if (from === to || target === undefined || target.after.includes(from)) return draft;
  if (!draft.steps.some((s) => s.key === from)) return draft;
  return mapStep(draft, to, (s) => ({ ...s, after: [...s.after, from] }));
}

export function disconnect(draft: Draft, from: string, to: string): Draft {
  return mapStep(draft, to, (s) => ({ ...s, after: s.after.filter((k) => k !== from) }));
}

export function move(draft: Draft, key: string, position: Point): Draft {
  return { ...draft, positions: new Map(draft.positions).set(key, position) };
}

/** Every node placed again by dependency depth (dagre), as the template page shows it. */
export function relayout(draft: Draft): Draft {
  return { ...draft, positions: layout(draft.steps.map((s) => s.key), edgesOf(draft)) };
}

// --- gates ----------------------------------------------------------------------------------

export function gateOf(kind: GateKind, base: QualityGate): QualityGate {
  const keep = { id: base.id, name: base.name, stepId: base.stepId };
  switch (kind) {
    case "threshold":
      return create(QualityGateSchema, {
        ...keep,
        action: GateAction.PAUSE,
        condition: { case: "threshold", value: { metric: "qualityScore", operator: ComparisonOperator.GTE, threshold: 0.8 } },
      });
    case "validation":
      return create(QualityGateSchema, {
        ...keep,
        action: GateAction.PAUSE,
        condition: { case: "validation", value: { expression: "true" } },
      });
    case "approval":
      return create(QualityGateSchema, { ...keep, condition: { case: "approval", value: {} } });
    case "external":
      return create(QualityGateSchema, {
        ...keep,
        action: GateAction.PAUSE,
        condition: { case: "external", value: { source: { case: "webhookUrl", value: "" } } },
      });
  }
}

export function addGate(draft: Draft, stepKey: string, kind: GateKind): Draft {
  const step = draft.steps.find((s) => s.key === stepKey);
  if (step === undefined) return draft;
  const base = create(QualityGateSchema, { id: freshId(draft, `${step.spec.id || "step"}-${kind}`) });
  const gate: GateDraft = { key: `g${draft.serial + 1}`, stepKey, gate: gateOf(kind, base) };
  return { ...draft, gates: [...draft.gates, gate], serial: draft.serial + 1 };
}

export function updateGate(draft: Draft, key: string, gate: QualityGate): Draft {
  return { ...draft, gates: changed(draft.gates, key, (g) => ({ ...g, gate })) };
}

export function removeGate(draft: Draft, key: string): Draft {
  return { ...draft, gates: draft.gates.filter((g) => g.key !== key) };
}

// --- params ---------------------------------------------------------------------------------

export function addParam(draft: Draft): Draft {
  const taken = new Set(draft.params.map((p) => p.spec.name));
  let n = draft.params.length + 1;
  while (taken.has(`param${n}`)) n++;
  const param: ParamDraft = {
    key: `p${draft.serial + 1}`,
    spec: create(ParamSpecSchema, { name: `param${n}` }),
    defaultText: "",
  };
  return { ...draft, params: [...draft.params, param], serial: draft.serial + 1 };
}

function mapParam(draft: Draft, key: string, change: (param: ParamDraft) => ParamDraft): Draft {
  return { ...draft, params: changed(draft.params, key, change) };
}

export function updateParam(draft: Draft, key: string, change: Partial<ParamSpec>): Draft {
  return mapParam(draft, key, (p) => ({ ...p, spec: { ...p.spec, ...change } }));
}

/** A default typed as JSON ("hello" with its quotes, 3, true, [..]); empty: none. */
export function setParamDefault(draft: Draft, key: string, text: string): Draft {
  return mapParam(draft, key, (p) => {
    if (text.trim() === "") return { key: p.key, spec: { ...p.spec, defaultValue: undefined }, defaultText: text };
    let value: JsonValue;
    try {
      value = JSON.parse(text) as JsonValue;
    } catch {
      return { ...p, defaultText: text, defaultError: 'not valid JSON (a text needs its quotes: "like this")' };
    }
    return { key: p.key, spec: { ...p.spec, defaultValue: fromJson(ValueSchema, value) }, defaultText: text };
  });
}

export function removeParam(draft: Draft, key: string): Draft {
  return { ...draft, params: draft.params.filter((p) => p.key !== key) };
}
