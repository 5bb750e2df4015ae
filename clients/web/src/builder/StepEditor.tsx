// The selected step's definition: id, name, type, config (JSON, with its type's keys from the
// schema the server declares), dependencies, condition, retries, timeout, and its gates. Each
// field shows the problems ValidateTemplate found in it.

import { create, type JsonObject } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import { useState } from "react";

import { DependencyRule, RetryPolicySchema, type StepType } from "@gen/sluice/v1/template_pb.js";

import {
  addGate,
  disconnect,
  connect,
  GATE_KINDS,
  removeGate,
  removeStep,
  setConfigText,
  setStepType,
  updateGate,
  updateStep,
  type Draft,
  type GateKind,
  type StepDraft,
} from "./draft";
import { CheckField, DurationField, NumberField, SelectField, TextArea, TextField } from "./fields";
import { GateEditor } from "./GateEditor";
import { besides, under, type Placed } from "./problems";
import { configFields, starterConfig } from "./schema";

const FIELDS = [
  "id", "name", "description", "type", "config", "dependencies", "dependency_rule", "when",
  "optional", "retry", "timeout", "task_type", "schedule_to_start_timeout",
];

const RULES = [
  [DependencyRule.UNSPECIFIED, "all completed"],
  [DependencyRule.ANY_COMPLETED, "any completed (a join)"],
] as const;

const defaultRetry = () =>
  create(RetryPolicySchema, {
    maxAttempts: 3,
    initialBackoff: create(DurationSchema, { seconds: 1n }),
    backoffMultiplier: 2,
  });

export function StepEditor(props: {
  draft: Draft;
  step: StepDraft;
  types: readonly StepType[];
  placed: Placed;
  change: (edit: (draft: Draft) => Draft) => void;
  onClose: () => void;
}) {
  const { draft, step, types, placed, change, onClose } = props;
  const spec = step.spec;
  const key = step.key;
  const problems = placed.steps.get(key);
  const schemaOf = (name: string): JsonObject | undefined => types.find((t) => t.name === name)?.configSchema;
  const schema = schemaOf(spec.type);
  const typeNames = types.map((t) => t.name);
  if (!typeNames.includes(spec.type)) typeNames.push(spec.type);
  const stepById = new Map(draft.steps.map((s) => [s.key, s]));
  const candidates = draft.steps.filter((s) => s.key !== key && !step.after.includes(s.key));
  const gates = draft.gates.filter((g) => g.stepKey === key);
  const [gateKind, setGateKind] = useState<GateKind>("approval");
  const edit = (patch: Parameters<typeof updateStep>[2]) => change((d) => updateStep(d, key, patch));
  const fields = configFields(schema);
  const present = step.configError ? null : (spec.config ?? {});

  return (
    <section className="panel step-editor" aria-label={`Step ${spec.id}`} data-testid="step-editor">
      <div className="panel-head">
        <h2>Step</h2>
        <button type="button" className="link" onClick={onClose}>close</button>
      </div>
      {besides(problems, FIELDS).filter((text) => !text.startsWith("gate ")).map((text) => (
        <p key={text} className="field-problems">{text}</p>
      ))}
      <div className="row">
        <TextField label="Id" testId="step-id" mono autoFocus value={spec.id} problems={under(problems, "id")} onChange={(id) => edit({ id })} />
        <SelectField<string>
          label="Type"
          testId="step-type"
          value={spec.type}
          options={typeNames.map((n) => [n, n] as const)}
          problems={under(problems, "type")}
          onChange={(type) => change((d) => setStepType(d, key, type, starterConfig(schemaOf(spec.type)), starterConfig(schemaOf(type))))}
        />
      </div>
      {spec.type === "task" && (
        <TextField label="Task type (workers poll for it)" testId="step-task-type" mono value={spec.taskType}
          problems={under(problems, "task_type")} onChange={(taskType) => edit({ taskType })} />
      )}
      <TextField label="Name" testId="step-name" value={spec.name} problems={under(problems, "name")} onChange={(name) => edit({ name })} />
      <TextArea
        label="Config (JSON)"
        testId="step-config"
        rows={Math.min(14, Math.max(4, step.configText.split("\n").length + 1))}
        value={step.configText}
        problems={under(problems, "config")}
        hint={<>Values may use <code>{"{{ params.NAME }}"}</code> and <code>{"{{ steps.ID.PATH }}"}</code>.</>}
        onChange={(text) => change((d) => setConfigText(d, key, text))}
      />
      {fields.length > 0 && (
        <table className="list compact config-keys" data-testid="config-keys" aria-label={`Keys of a ${spec.type} step's config`}>
          <thead><tr><th>Key</th><th>Takes</th><th></th></tr></thead>
          <tbody>
            {fields.map((f) => (
              <tr key={f.name} title={f.description}>
                <td className="mono">{f.name}{f.required ? " *" : ""}</td>
                <td>
                  <div>{f.takes}</div>
                  {f.description && <div className="muted small">{f.description}</div>}
                </td>
                <td>
                  {present && !(f.name in present) && (
                    <button type="button" className="link" aria-label={`Add the key ${f.name}`} data-testid={`config-add-${f.name}`}
                      onClick={() => change((d) => setConfigText(d, key, JSON.stringify({ ...present, [f.name]: f.starter }, null, 2)))}>
                      add
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <div className="field">
        <span className="field-label">Runs after</span>
        <div className="chips" data-testid="step-dependencies">
          {step.after.length === 0 && <span className="muted small">nothing: it starts first</span>}
          {step.after.map((from) => {
            const id = stepById.get(from)?.spec.id || "(no id)";
            return (
              <span key={from} className="chip">
                <span className="mono">{id}</span>
                <button type="button" aria-label={`Remove the dependency on ${id}`} data-testid={`dep-remove-${id}`}
                  onClick={() => change((d) => disconnect(d, from, key))}>
                  ×
                </button>
              </span>
            );
          })}
          {candidates.length > 0 && (
            <select aria-label="Add a dependency" data-testid="dep-add" value=""
              onChange={(e) => e.target.value && change((d) => connect(d, e.target.value, key))}>
              <option value="">add…</option>
              {candidates.map((s) => (
                <option key={s.key} value={s.key}>{s.spec.id || "(no id)"}</option>
              ))}
            </select>
          )}
        </div>
        {under(problems, "dependencies").map((text) => (
          <span key={text} className="field-problems" data-testid="step-dependencies-problems">{text}</span>
        ))}
      </div>
      <div className="row">
        <SelectField<DependencyRule> label="When its dependencies" testId="step-rule" value={spec.dependencyRule} options={RULES}
          problems={under(problems, "dependency_rule")} onChange={(dependencyRule) => edit({ dependencyRule })} />
        <DurationField label="Timeout per attempt" testId="step-timeout" value={spec.timeout} placeholder="server default"
          problems={under(problems, "timeout")} onChange={(timeout) => edit({ timeout })} />
      </div>
      <TextField label="Runs only if (CEL; empty: always)" testId="step-when" mono value={spec.when} placeholder='params.platform == "instagram"'
        problems={under(problems, "when")} onChange={(when) => edit({ when })} />
      <CheckField label="Optional: its failure does not fail the run" testId="step-optional" checked={spec.optional} onChange={(optional) => edit({ optional })} />
      <CheckField label="Retry a failed attempt" testId="step-retry" checked={spec.retry !== undefined}
        onChange={(on) => edit({ retry: on ? defaultRetry() : undefined })} />
      {spec.retry && (
        <div className="row">
          <NumberField label="Attempts in all" testId="retry-attempts" value={spec.retry.maxAttempts}
            problems={under(problems, "retry.max_attempts")}
            onChange={(n) => spec.retry && edit({ retry: { ...spec.retry, maxAttempts: Math.trunc(n) } })} />
          <DurationField label="First delay" testId="retry-initial" value={spec.retry.initialBackoff}
            problems={under(problems, "retry.initial_backoff")}
            onChange={(initialBackoff) => spec.retry && edit({ retry: { ...spec.retry, initialBackoff } })} />
          <NumberField label="Multiplier" testId="retry-multiplier" value={spec.retry.backoffMultiplier}
            problems={under(problems, "retry.backoff_multiplier")}
            onChange={(backoffMultiplier) => spec.retry && edit({ retry: { ...spec.retry, backoffMultiplier } })} />
          <DurationField label="Longest delay" testId="retry-max" value={spec.retry.maxBackoff} placeholder="5m"
            problems={under(problems, "retry.max_backoff")}
            onChange={(maxBackoff) => spec.retry && edit({ retry: { ...spec.retry, maxBackoff } })} />
        </div>
      )}
      <h3>Gates after this step</h3>
      {gates.map((g) => (
        <GateEditor key={g.key} draft={g} problems={placed.gates.get(g.key)}
          onChange={(gate) => change((d) => updateGate(d, g.key, gate))}
          onRemove={() => change((d) => removeGate(d, g.key))} />
      ))}
      <div className="buttons">
        <select aria-label="Kind of gate to add" value={gateKind} onChange={(e) => setGateKind(e.target.value as GateKind)} data-testid="gate-kind">
          {GATE_KINDS.map((k) => (<option key={k} value={k}>{k}</option>))}
        </select>
        <button type="button" onClick={() => change((d) => addGate(d, key, gateKind))} data-testid="gate-add">Add gate</button>
      </div>
      <div className="buttons danger-zone">
        <button type="button" className="danger" data-testid="step-remove" onClick={() => { change((d) => removeStep(d, key)); onClose(); }}>
          Delete step
        </button>
      </div>
    </section>
  );
}
