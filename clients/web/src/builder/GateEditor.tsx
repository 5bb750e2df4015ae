// One quality gate of the selected step: its id, kind, action on failure and condition.

import {
  ApprovalTimeoutAction,
  ComparisonOperator,
  GateAction,
  type QualityGate,
} from "@gen/sluice/v1/template_pb.js";

import { gateOf, GATE_KINDS, type GateDraft, type GateKind } from "./draft";
import { DurationField, NumberField, SelectField, TextField } from "./fields";
import { besides, under } from "./problems";

const OPERATORS = [
  [ComparisonOperator.GT, ">"],
  [ComparisonOperator.GTE, "≥"],
  [ComparisonOperator.LT, "<"],
  [ComparisonOperator.LTE, "≤"],
  [ComparisonOperator.EQ, "="],
  [ComparisonOperator.NEQ, "≠"],
] as const;

const ACTIONS = [
  [GateAction.UNSPECIFIED, "(not set)"],
  [GateAction.CONTINUE, "continue (record it)"],
  [GateAction.PAUSE, "pause the run"],
  [GateAction.ABORT, "abort the run"],
] as const;

const ON_TIMEOUT = [
  [ApprovalTimeoutAction.UNSPECIFIED, "reject (default)"],
  [ApprovalTimeoutAction.APPROVE, "approve"],
  [ApprovalTimeoutAction.REJECT, "reject"],
  [ApprovalTimeoutAction.FAIL, "fail the gate"],
] as const;

const FIELDS = ["id", "name", "action", "condition", "threshold", "validation", "approval", "external"];

export function GateEditor(props: {
  draft: GateDraft;
  problems: readonly string[] | undefined;
  onChange: (gate: QualityGate) => void;
  onRemove: () => void;
}) {
  const { draft, problems, onChange, onRemove } = props;
  const gate = draft.gate;
  const kind = (gate.condition.case ?? "approval") as GateKind;
  const t = `gate-${gate.id}`;
  const condition = gate.condition;
  return (
    <fieldset className={`gate-editor${problems?.length ? " bad" : ""}`} data-testid={`gate-editor-${gate.id}`}>
      <legend>
        Gate <span className="mono">{gate.id || "(no id)"}</span>
      </legend>
      {besides(problems, FIELDS).map((text) => (
        <p key={text} className="field-problems">{text}</p>
      ))}
      <div className="row">
        <TextField label="Id" testId={`${t}-id`} mono value={gate.id} problems={under(problems, "id")} onChange={(id) => onChange({ ...gate, id })} />
        <SelectField<GateKind>
          label="Kind"
          testId={`${t}-kind`}
          value={kind}
          options={GATE_KINDS.map((k) => [k, k] as const)}
          problems={under(problems, "condition")}
          onChange={(next) => onChange(gateOf(next, gate))}
        />
      </div>
      <TextField label="Name" testId={`${t}-name`} value={gate.name} problems={under(problems, "name")} onChange={(name) => onChange({ ...gate, name })} />
      {kind !== "approval" && (
        <SelectField<GateAction>
          label="When it fails"
          testId={`${t}-action`}
          value={gate.action}
          options={ACTIONS}
          problems={under(problems, "action")}
          onChange={(action) => onChange({ ...gate, action })}
        />
      )}
      {condition.case === "threshold" && (
        <div className="row">
          <TextField label="Metric (a path in the step's output)" testId={`${t}-metric`} mono value={condition.value.metric}
            problems={under(problems, "threshold.metric")}
            onChange={(metric) => onChange({ ...gate, condition: { case: "threshold", value: { ...condition.value, metric } } })} />
          <SelectField<ComparisonOperator> label="Is" testId={`${t}-operator`} value={condition.value.operator} options={OPERATORS}
            problems={under(problems, "threshold.operator")}
            onChange={(operator) => onChange({ ...gate, condition: { case: "threshold", value: { ...condition.value, operator } } })} />
          <NumberField label="Threshold" testId={`${t}-threshold`} value={condition.value.threshold}
            problems={under(problems, "threshold.threshold")}
            onChange={(threshold) => onChange({ ...gate, condition: { case: "threshold", value: { ...condition.value, threshold } } })} />
        </div>
      )}
      {condition.case === "validation" && (
        <TextField label="Passes when (CEL over output, steps, params)" testId={`${t}-expression`} mono value={condition.value.expression}
          problems={under(problems, "validation")}
          onChange={(expression) => onChange({ ...gate, condition: { case: "validation", value: { ...condition.value, expression } } })} />
      )}
      {condition.case === "approval" && (
        <div className="row">
          <DurationField label="Waits at most" testId={`${t}-timeout`} value={condition.value.timeout} placeholder="for ever"
            problems={under(problems, "approval.timeout")}
            onChange={(timeout) => onChange({ ...gate, condition: { case: "approval", value: { ...condition.value, timeout } } })} />
          <SelectField<ApprovalTimeoutAction> label="Then" testId={`${t}-on-timeout`} value={condition.value.onTimeout} options={ON_TIMEOUT}
            problems={under(problems, "approval.on_timeout")}
            onChange={(onTimeout) => onChange({ ...gate, condition: { case: "approval", value: { ...condition.value, onTimeout } } })} />
        </div>
      )}
      {condition.case === "external" && (
        <TextField
          label={condition.value.source.case === "taskType" ? "Task type (workers answer)" : "Webhook URL (answers the verdict)"}
          testId={`${t}-source`}
          mono
          value={condition.value.source.value ?? ""}
          problems={under(problems, "external")}
          onChange={(value) =>
            onChange({
              ...gate,
              condition: {
                case: "external",
                value: {
                  ...condition.value,
                  source: condition.value.source.case === "taskType" ? { case: "taskType", value } : { case: "webhookUrl", value },
                },
              },
            })
          }
        />
      )}
      <div className="buttons">
        <button type="button" className="danger" onClick={onRemove} data-testid={`${t}-remove`}>
          Remove gate
        </button>
      </div>
    </fieldset>
  );
}
