// A run as the page shows it: the run GetWorkflow returned, with the statuses of its steps,
// gates and itself moved on by the events WatchWorkflow streamed since. Pure functions: an
// update returns a new state whose unchanged parts are the same objects (the graph re-renders
// only the nodes that changed).

import { EventType, type WorkflowEvent } from "@gen/sluice/v1/event_pb.js";
import {
  GateStatus,
  StepStatus,
  WorkflowStatus,
  type Workflow,
} from "@gen/sluice/v1/workflow_pb.js";

export interface StepLive {
  status: StepStatus;
  attempt: number;
}

export interface GateLive {
  status: GateStatus;
}

export interface RunState {
  /** The latest run GetWorkflow (or an action) returned: details, outputs, metrics. */
  workflow: Workflow;
  status: WorkflowStatus;
  steps: Readonly<Record<string, StepLive>>;
  gates: Readonly<Record<string, GateLive>>;
  /** The sequence of the latest event applied (or of the run as fetched). */
  sequence: bigint;
  pausedGateId: string;
}

export function fromWorkflow(workflow: Workflow): RunState {
  const steps: Record<string, StepLive> = {};
  for (const step of workflow.steps) {
    steps[step.stepId] = { status: step.status, attempt: step.attempt };
  }
  const gates: Record<string, GateLive> = {};
  for (const gate of workflow.gateResults) {
    gates[gate.gateId] = { status: gate.status };
  }
  return {
    workflow,
    status: workflow.status,
    steps,
    gates,
    sequence: workflow.lastSequence,
    pausedGateId: workflow.pausedGateId,
  };
}

/** The state with a newer fetch of the run: its statuses when it is as new as the events
 * applied, else only its details (the events already applied are newer). */
export function rebase(state: RunState, workflow: Workflow): RunState {
  if (workflow.lastSequence >= state.sequence) return fromWorkflow(workflow);
  return { ...state, workflow };
}

const STEP_STATUS: Partial<Record<EventType, StepStatus>> = {
  [EventType.STEP_STARTED]: StepStatus.RUNNING,
  [EventType.STEP_RETRYING]: StepStatus.RETRYING,
  [EventType.STEP_COMPLETED]: StepStatus.COMPLETED,
  [EventType.STEP_FAILED]: StepStatus.FAILED,
  [EventType.STEP_SKIPPED]: StepStatus.SKIPPED,
  [EventType.STEP_CANCELLED]: StepStatus.CANCELLED,
};

const GATE_STATUS: Partial<Record<EventType, GateStatus>> = {
  [EventType.GATE_PASSED]: GateStatus.PASSED,
  [EventType.GATE_FAILED]: GateStatus.FAILED,
  [EventType.GATE_APPROVED]: GateStatus.APPROVED,
  [EventType.GATE_REJECTED]: GateStatus.REJECTED,
  [EventType.GATE_AWAITING_APPROVAL]: GateStatus.AWAITING_APPROVAL,
};

/** The state after `events` (in sequence order; ones already applied are ignored). */
export function applyEvents(state: RunState, events: readonly WorkflowEvent[]): RunState {
  let steps: Record<string, StepLive> | null = null;
  let gates: Record<string, GateLive> | null = null;
  let { status, sequence, pausedGateId } = state;
  for (const event of events) {
    if (event.sequence <= sequence) continue;
    sequence = event.sequence;
    if (event.workflowStatus !== WorkflowStatus.UNSPECIFIED) status = event.workflowStatus;
    if (event.type === EventType.WORKFLOW_PAUSED) pausedGateId = event.gateId;
    if (event.type === EventType.WORKFLOW_RESUMED) pausedGateId = "";
    const stepStatus = STEP_STATUS[event.type];
    if (stepStatus !== undefined && event.stepId) {
      steps ??= { ...state.steps };
      const attempt = event.attempt || steps[event.stepId]?.attempt || 0;
      steps[event.stepId] = { status: stepStatus, attempt };
    }
    const gateStatus = GATE_STATUS[event.type];
    if (gateStatus !== undefined && event.gateId) {
      gates ??= { ...state.gates };
      gates[event.gateId] = { status: gateStatus };
      if (gateStatus !== GateStatus.AWAITING_APPROVAL && pausedGateId === event.gateId) {
        pausedGateId = "";
      }
    }
  }
  if (sequence === state.sequence) return state;
  return {
    ...state,
    status,
    sequence,
    pausedGateId,
    steps: steps ?? state.steps,
    gates: gates ?? state.gates,
  };
}
