// Status names and colours. The colours are the CLI's (server/sluice/cli/render.py,
// _STATUS_STYLE): green done well, cyan at work, yellow waiting on someone or something, red
// ended badly, dim not (yet) run. An operator who knows one knows the other.

import { GateStatus, GateType, StepStatus, WorkflowStatus } from "@gen/sluice/v1/workflow_pb.js";

export type Tone = "green" | "cyan" | "yellow" | "red" | "dim";

const TONES: Record<string, Tone> = {
  COMPLETED: "green",
  PASSED: "green",
  APPROVED: "green",
  RUNNING: "cyan",
  RETRYING: "yellow",
  PAUSED: "yellow",
  AWAITING_APPROVAL: "yellow",
  FAILED: "red",
  REJECTED: "red",
  CANCELLED: "red",
  SKIPPED: "dim",
  PENDING: "dim",
};

export function tone(name: string): Tone {
  return TONES[name] ?? "dim";
}

export const runStatusName = (value: WorkflowStatus): string => WorkflowStatus[value] ?? "UNSPECIFIED";
export const stepStatusName = (value: StepStatus): string => StepStatus[value] ?? "UNSPECIFIED";
export const gateStatusName = (value: GateStatus): string => GateStatus[value] ?? "UNSPECIFIED";
export const gateTypeName = (value: GateType): string =>
  (GateType[value] ?? "UNSPECIFIED").toLowerCase();

/** Run statuses a run can be listed by, in lifecycle order. */
export const RUN_STATUSES: WorkflowStatus[] = [
  WorkflowStatus.PENDING,
  WorkflowStatus.RUNNING,
  WorkflowStatus.PAUSED,
  WorkflowStatus.COMPLETED,
  WorkflowStatus.FAILED,
  WorkflowStatus.CANCELLED,
];

export const isTerminal = (status: WorkflowStatus): boolean =>
  status === WorkflowStatus.COMPLETED ||
  status === WorkflowStatus.FAILED ||
  status === WorkflowStatus.CANCELLED;
