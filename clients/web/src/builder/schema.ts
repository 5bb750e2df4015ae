// What a step type's config schema (JSON Schema, from ListStepTypes) tells the editor: its
// keys with what each means and takes, and a starting config with the required keys filled,
// so a new step is valid as soon as it is added. The server stays the judge (ValidateTemplate):
// this reads the schema only as far as showing it needs.

import type { JsonObject, JsonValue } from "@bufbuild/protobuf";

export interface ConfigField {
  name: string;
  required: boolean;
  description: string;
  /** What the value takes, e.g. "one of blog-post, email" or "string or number". */
  takes: string;
  /** A value to start from: the schema's default, the first choice, or an empty one. */
  starter: JsonValue;
}

const isObject = (value: JsonValue | undefined): value is JsonObject =>
  typeof value === "object" && value !== null && !Array.isArray(value);

function types(schema: JsonObject): string[] {
  const own = schema["type"];
  if (typeof own === "string") return [own];
  if (Array.isArray(own)) return own.filter((t): t is string => typeof t === "string");
  // A value of a form (steps/_schema.py's `formed`): the form's schema says its type.
  const forms = schema["allOf"];
  if (Array.isArray(forms) && isObject(forms[0])) return types(forms[0]);
  return [];
}

function takes(schema: JsonObject): string {
  const choices = schema["enum"];
  if (Array.isArray(choices)) return `one of ${choices.map((c) => String(c)).join(", ")}`;
  const forms = schema["allOf"];
  if (Array.isArray(forms) && isObject(forms[0]) && typeof forms[0]["description"] === "string") {
    return forms[0]["description"];
  }
  return types(schema).join(" or ") || "any value";
}

function starter(schema: JsonObject): JsonValue {
  if (schema["default"] !== undefined) return schema["default"];
  const choices = schema["enum"];
  if (Array.isArray(choices) && choices.length > 0) return choices[0] ?? null;
  switch (types(schema)[0]) {
    case "string":
      return "";
    case "number":
    case "integer":
      return typeof schema["minimum"] === "number" ? schema["minimum"] : 0;
    case "boolean":
      return false;
    case "array":
      return [];
    case "object":
      return {};
    default:
      return null;
  }
}

/** The keys the schema declares, the required ones first, each group by name (a Struct keeps
 * no order of its own). */
export function configFields(schema: JsonObject | undefined): ConfigField[] {
  if (schema === undefined || !isObject(schema["properties"])) return [];
  const required = new Set(Array.isArray(schema["required"]) ? schema["required"].map(String) : []);
  const entries = Object.entries(schema["properties"]).sort(([a], [b]) => a.localeCompare(b));
  const fields = entries.map(([name, value]): ConfigField => {
    const property = isObject(value) ? value : {};
    return {
      name,
      required: required.has(name),
      description: typeof property["description"] === "string" ? property["description"] : "",
      takes: takes(property),
      starter: starter(property),
    };
  });
  return [...fields.filter((f) => f.required), ...fields.filter((f) => !f.required)];
}

/** A config holding the schema's required keys, each with its starter value. */
export function starterConfig(schema: JsonObject | undefined): JsonObject {
  const config: JsonObject = {};
  for (const field of configFields(schema)) {
    if (field.required) config[field.name] = field.starter;
  }
  return config;
}
