// ValidateTemplate's violations placed where the user sees them: `steps[i]...` on that step's
// node, `quality_gates[j]...` on the gate (and its step's node), `params[k]...` on the param,
// the rest on the template's own fields. The indices are those of the template that was sent,
// so violations are read against that template's order, not the draft's (which may have
// changed while the call was out).

import type { Draft } from "./draft";

export interface Violation {
  field: string;
  description: string;
}

/** The keys of what a sent template held, in its order. */
export interface Order {
  steps: { key: string; id: string }[];
  gates: { key: string; stepKey: string; id: string }[];
  params: string[];
}

export function orderOf(draft: Draft): Order {
  return {
    steps: draft.steps.map((s) => ({ key: s.key, id: s.spec.id })),
    gates: draft.gates.map((g) => ({ key: g.key, stepKey: g.stepKey, id: g.gate.id })),
    params: draft.params.map((p) => p.key),
  };
}

export interface Located extends Violation {
  /** The text shown on the step, gate or param: its field relative to it, and what is wrong. */
  text: string;
  step?: string;
  gate?: string;
  param?: string;
}

export interface Placed {
  list: Located[];
  /** By step key: the problems of the step and of its gates. */
  steps: Map<string, string[]>;
  gates: Map<string, string[]>;
  params: Map<string, string[]>;
  /** By the template's own field (id, name, description, steps, ...). */
  template: Map<string, string[]>;
}

const INDEXED = /^(steps|quality_gates|params)\[(\d+)\](?:\.(.*))?$/;
// The server reports a cycle once, on the steps[i].dependencies of its first step, naming the
// path ("forms a cycle: a -> b -> c -> a"): every step on the path gets the marker.
const CYCLE = /forms a cycle: (.+)$/;

function push(map: Map<string, string[]>, key: string, text: string): void {
  const found = map.get(key);
  if (found) found.push(text);
  else map.set(key, [text]);
}

const copy = (map: Map<string, string[]>): Map<string, string[]> =>
  new Map([...map].map(([key, texts]) => [key, [...texts]]));

const relative = (rest: string | undefined, description: string): string =>
  rest ? `${rest}: ${description}` : description;

/** Violations placed by the template they were found in (`order`), added to `into`'s. */
export function place(violations: readonly Violation[], order: Order, into?: Placed): Placed {
  const placed: Placed = into
    ? { list: [...into.list], steps: copy(into.steps), gates: copy(into.gates), params: copy(into.params), template: copy(into.template) }
    : { list: [], steps: new Map(), gates: new Map(), params: new Map(), template: new Map() };
  for (const violation of violations) {
    const found = INDEXED.exec(violation.field);
    const index = Number(found?.[2] ?? -1);
    const text = relative(found?.[3], violation.description);
    const located: Located = { ...violation, text };
    if (found?.[1] === "steps" && order.steps[index]) {
      located.step = order.steps[index].key;
      const cycle = CYCLE.exec(violation.description);
      const onPath = cycle ? new Set(cycle[1]?.split(" -> ")) : new Set<string>();
      const keys = order.steps.filter((s) => onPath.has(s.id)).map((s) => s.key);
      for (const key of new Set([located.step, ...keys])) push(placed.steps, key, text);
    } else if (found?.[1] === "quality_gates" && order.gates[index]) {
      const gate = order.gates[index];
      located.gate = gate.key;
      located.step = gate.stepKey;
      push(placed.gates, gate.key, text);
      push(placed.steps, gate.stepKey, `gate ${gate.id || "(no id)"}: ${text}`);
    } else if (found?.[1] === "params" && order.params[index]) {
      located.param = order.params[index];
      push(placed.params, located.param, text);
    } else {
      push(placed.template, violation.field.split(/[.[]/)[0] ?? "", violation.description);
    }
    placed.list.push(located);
  }
  return placed;
}

/** Problems found before sending: texts that are not JSON where JSON is wanted. */
export function localViolations(draft: Draft): Violation[] {
  const found: Violation[] = [];
  draft.steps.forEach((s, i) => {
    if (s.configError) found.push({ field: `steps[${i}].config`, description: s.configError });
  });
  draft.params.forEach((p, i) => {
    if (p.defaultError) found.push({ field: `params[${i}].default_value`, description: p.defaultError });
  });
  return found;
}

/** The texts (as `place` writes them) about `field` or a part of it: "config: ...",
 * "config.contentType: ...", "dependencies[0]: ...". */
export function under(texts: readonly string[] | undefined, field: string): string[] {
  return (texts ?? []).filter((t) => [":", ".", "["].some((after) => t.startsWith(field + after)));
}

/** The texts about none of `fields`: shown together, above the form. */
export function besides(texts: readonly string[] | undefined, fields: readonly string[]): string[] {
  return (texts ?? []).filter((t) => fields.every((f) => under([t], f).length === 0));
}
