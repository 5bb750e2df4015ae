// One run: its graph coloured live, the selected step's details, the gates (approve or reject
// a waiting approval), the metrics, and the run's actions.

import { useEffect, useMemo, useRef, useState } from "react";

import { EventType, type WorkflowEvent } from "@gen/sluice/v1/event_pb.js";
import type { Template } from "@gen/sluice/v1/template_pb.js";
import { GateStatus, WorkflowStatus, type GateResult, type Workflow } from "@gen/sluice/v1/workflow_pb.js";

import { workflows } from "../api/client";
import { problemOf, type Problem } from "../api/errors";
import { duration, ErrorBox, Json, StatusBadge, time } from "../components";
import { DagView } from "../graph/DagView";
import { templateEdges, templateNodes } from "../graph/template_graph";
import { Link, navigate } from "../router";
import { runNodes, type NodeCache } from "../run/nodes";
import type { RunState } from "../run/state";
import { useRun } from "../run/useRun";
import { gateStatusName, gateTypeName, isTerminal, runStatusName, stepStatusName } from "../status";

type Action = (run: Workflow) => Promise<Workflow | undefined>;

export function RunPage({ id }: { id: string }) {
  const { state, problem, stream, accept } = useRun(id);
  const [selected, setSelected] = useState<string | null>(null);
  const [actionProblem, setActionProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);

  const run = async (action: Action) => {
    if (state === null) return;
    setBusy(true);
    setActionProblem(null);
    try {
      const workflow = await action(state.workflow);
      if (workflow) accept(workflow);
    } catch (error) {
      setActionProblem(problemOf(error));
    } finally {
      setBusy(false);
    }
  };

  if (state === null) {
    return (
      <main className="page">
        <h1>
          Run <span className="mono">{id}</span>
        </h1>
        {problem ? <ErrorBox problem={problem} /> : <p className="muted">Loading…</p>}
      </main>
    );
  }
  const workflow = state.workflow;
  return (
    <main className="page run-page">
      <div className="page-head">
        <h1>
          Run <span className="mono" data-testid="run-id">{workflow.id}</span>{" "}
          <StatusBadge status={runStatusName(state.status)} testId="run-status" />
        </h1>
        <div className="run-meta">
          <TemplateLink workflow={workflow} />
          {workflow.rerunOf && (
            <span>
              rerun of <Link to={`/runs/${workflow.rerunOf}`} className="mono">{workflow.rerunOf}</Link>
            </span>
          )}
          <span className={`stream stream-${stream}`} data-testid="stream" data-state={stream}>
            {stream === "live" ? "● live" : stream === "reconnecting" ? "reconnecting…" : stream === "ended" ? "" : "connecting…"}
          </span>
        </div>
      </div>
      <ErrorBox problem={problem} />
      <ErrorBox problem={actionProblem} onClose={() => setActionProblem(null)} />
      {state.status === WorkflowStatus.PAUSED && (
        <p className="notice" data-testid="pause-reason">
          Paused{workflow.pauseReason ? `: ${workflow.pauseReason}` : ""}
          {state.pausedGateId && !workflow.pauseReason.includes(state.pausedGateId) ? ` (gate ${state.pausedGateId})` : ""}.
        </p>
      )}
      {state.status === WorkflowStatus.FAILED && workflow.error && (
        <p className="notice bad" data-testid="run-error">
          Failed: {workflow.error}
        </p>
      )}
      <Actions state={state} busy={busy} run={run} />
      <div className="run-body">
        <RunGraph state={state} selected={selected} onSelect={setSelected} />
        <aside className="side">
          {selected ? (
            <StepDetails state={state} stepId={selected} onClose={() => setSelected(null)} />
          ) : (
            <p className="muted">Select a step to see its attempts, output and error.</p>
          )}
          <Gates state={state} busy={busy} run={run} />
          <Metrics workflow={workflow} />
        </aside>
      </div>
    </main>
  );
}

/** The run's template: a link, unless it was sent inline (version 0: only the run has it). */
function TemplateLink({ workflow }: { workflow: Workflow }) {
  const predefined = workflow.template?.predefined ?? false;
  if (!predefined && workflow.templateVersion === 0) {
    return <span title="sent inline with the run">{workflow.templateId} (inline)</span>;
  }
  const version = predefined ? "" : `?version=${workflow.templateVersion}`;
  return (
    <Link to={`/templates/${workflow.templateId}${version}`}>
      {workflow.templateId}
      {predefined ? "" : ` v${workflow.templateVersion}`}
    </Link>
  );
}

function RunGraph(props: { state: RunState; selected: string | null; onSelect: (id: string | null) => void }) {
  const { state, selected, onSelect } = props;
  const template = state.workflow.template;
  const base = useMemo(() => (template ? templateNodes(template) : []), [template?.id, template?.version]); // eslint-disable-line react-hooks/exhaustive-deps
  const edges = useMemo(() => (template ? templateEdges(template) : []), [template?.id, template?.version]); // eslint-disable-line react-hooks/exhaustive-deps
  const cache = useRef<NodeCache>(new Map());
  const nodes = useMemo(
    () => (template ? runNodes(template, base, state, cache.current) : []),
    [template, base, state.steps, state.gates], // eslint-disable-line react-hooks/exhaustive-deps
  );
  return (
    <section className="graph-panel" aria-label="Steps">
      <DagView nodes={nodes} edges={edges} selectedId={selected} onSelect={onSelect} label={`Graph of run ${state.workflow.id}`} />
    </section>
  );
}

function ConfirmButton(props: { label: string; confirm: string; onConfirm: () => void; disabled: boolean; testId: string; className?: string }) {
  const [armed, setArmed] = useState(false);
  useEffect(() => {
    if (!armed) return;
    const timer = setTimeout(() => setArmed(false), 5000);
    return () => clearTimeout(timer);
  }, [armed]);
  return (
    <button
      type="button"
      className={armed ? "danger armed" : props.className ?? "danger"}
      disabled={props.disabled}
      data-testid={props.testId}
      data-armed={armed}
      onClick={() => {
        if (armed) {
          setArmed(false);
          props.onConfirm();
        } else {
          setArmed(true);
        }
      }}
    >
      {armed ? props.confirm : props.label}
    </button>
  );
}

function Actions({ state, busy, run }: { state: RunState; busy: boolean; run: (action: Action) => Promise<void> }) {
  const status = state.status;
  const id = state.workflow.id;
  return (
    <div className="actions" role="toolbar" aria-label="Run actions">
      {status === WorkflowStatus.PENDING && (
        <button type="button" className="primary" disabled={busy} data-testid="action-start"
          onClick={() => void run(async () => (await workflows.executeWorkflow({ workflowId: id })).workflow)}>
          Start
        </button>
      )}
      {status === WorkflowStatus.RUNNING && (
        <button type="button" disabled={busy} data-testid="action-pause"
          onClick={() => void run(async () => (await workflows.pauseWorkflow({ workflowId: id, reason: "paused from the web view" })).workflow)}>
          Pause
        </button>
      )}
      {status === WorkflowStatus.PAUSED && (
        <button type="button" className="primary" disabled={busy} data-testid="action-resume"
          onClick={() => void run(async () => (await workflows.resumeWorkflow({ workflowId: id })).workflow)}>
          Resume
        </button>
      )}
      {!isTerminal(status) && (
        <ConfirmButton label="Cancel run" confirm="Confirm: cancel the run" disabled={busy} testId="action-cancel"
          onConfirm={() => void run(async () => (await workflows.cancelWorkflow({ workflowId: id, reason: "cancelled from the web view" })).workflow)} />
      )}
      {(status === WorkflowStatus.FAILED || status === WorkflowStatus.CANCELLED) && (
        <button type="button" className="primary" disabled={busy} data-testid="action-rerun"
          onClick={() =>
            void run(async () => {
              const answer = await workflows.rerunWorkflow({ workflowId: id });
              if (answer.workflow) navigate(`/runs/${answer.workflow.id}`);
              return undefined;
            })
          }>
          Rerun
        </button>
      )}
    </div>
  );
}

function StepDetails({ state, stepId, onClose }: { state: RunState; stepId: string; onClose: () => void }) {
  const step = state.workflow.steps.find((s) => s.stepId === stepId);
  const spec = state.workflow.template?.steps.find((s) => s.id === stepId);
  const live = state.steps[stepId];
  const [events, setEvents] = useState<WorkflowEvent[]>([]);
  const attemptKey = `${live?.status}|${live?.attempt}`;
  useEffect(() => {
    const abort = new AbortController();
    workflows
      .listWorkflowEvents({ workflowId: state.workflow.id, stepIds: [stepId], pageSize: 1000 }, { signal: abort.signal })
      .then((answer) => setEvents(answer.events))
      .catch(() => setEvents([]));
    return () => abort.abort();
  }, [state.workflow.id, stepId, attemptKey]);
  const attempts = attemptsOf(events);
  const status = live ? stepStatusName(live.status) : "PENDING";
  return (
    <section className="panel" aria-label={`Step ${stepId}`} data-testid="step-details">
      <div className="panel-head">
        <h2>
          {stepId} <StatusBadge status={status} testId="step-status" />
        </h2>
        <button type="button" className="link" onClick={onClose} aria-label="Close the step's details">
          close
        </button>
      </div>
      <dl className="facts">
        <dt>Name</dt>
        <dd>{step?.name || spec?.name || "-"}</dd>
        <dt>Type</dt>
        <dd>{spec?.type === "task" ? `task (${spec.taskType})` : (step?.type ?? spec?.type)}</dd>
        {spec && spec.dependencies.length > 0 && (
          <>
            <dt>After</dt>
            <dd>{spec.dependencies.join(", ")}</dd>
          </>
        )}
        {spec?.when && (
          <>
            <dt>Runs if</dt>
            <dd><code>{spec.when}</code></dd>
          </>
        )}
        <dt>Attempt</dt>
        <dd>{live?.attempt || "-"}{step?.optional ? " (optional step)" : ""}</dd>
        <dt>Started</dt>
        <dd>{time(step?.startTime)}</dd>
        <dt>Ended</dt>
        <dd>{time(step?.endTime)}</dd>
        <dt>Duration</dt>
        <dd>{duration(step?.duration)}</dd>
        {step?.wakeTime && (
          <>
            <dt>{status === "RETRYING" ? "Next attempt" : "Wakes"}</dt>
            <dd>{time(step.wakeTime)}</dd>
          </>
        )}
      </dl>
      {step?.error && (
        <div className="notice bad" data-testid="step-error">
          {step.error}
        </div>
      )}
      {attempts.length > 0 && (
        <table className="list compact" data-testid="attempts">
          <thead>
            <tr><th>#</th><th>Started</th><th>Outcome</th><th>Error</th></tr>
          </thead>
          <tbody>
            {attempts.map((a) => (
              <tr key={a.attempt}>
                <td>{a.attempt}</td>
                <td>{time(a.started)}</td>
                <td>{a.outcome ? <StatusBadge status={a.outcome} /> : "running"}</td>
                <td>{a.error}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {step?.output && (
        <>
          <h3>Output</h3>
          <Json value={step.output} testId="step-output" />
        </>
      )}
    </section>
  );
}

interface Attempt {
  attempt: number;
  started?: WorkflowEvent["time"];
  outcome?: string;
  error?: string;
}

const OUTCOMES: Partial<Record<EventType, string>> = {
  [EventType.STEP_COMPLETED]: "COMPLETED",
  [EventType.STEP_FAILED]: "FAILED",
  [EventType.STEP_RETRYING]: "RETRYING",
  [EventType.STEP_CANCELLED]: "CANCELLED",
};

/** A step's attempts from its events: when each started and how it ended. */
function attemptsOf(events: readonly WorkflowEvent[]): Attempt[] {
  const attempts = new Map<number, Attempt>();
  for (const event of events) {
    if (event.type === EventType.STEP_STARTED) {
      attempts.set(event.attempt, { attempt: event.attempt, started: event.time });
    }
    const outcome = OUTCOMES[event.type];
    const found = attempts.get(event.attempt);
    if (outcome && found) {
      const error = event.details?.["error"];
      found.outcome = outcome;
      found.error = typeof error === "string" ? error : undefined;
    }
  }
  return [...attempts.values()];
}

function gateCondition(template: Template | undefined, gateId: string): string {
  const gate = template?.qualityGates.find((g) => g.id === gateId);
  switch (gate?.condition.case) {
    case "threshold":
      return `${gate.condition.value.metric} ${["?", ">", ">=", "<", "<=", "==", "!="][gate.condition.value.operator] ?? "?"} ${gate.condition.value.threshold}`;
    case "validation":
      return gate.condition.value.expression;
    case "approval":
      return "waits for approval";
    case "external":
      return `asks ${gate.condition.value.source.value ?? "a validator"}`;
    default:
      return "";
  }
}

function Gates({ state, busy, run }: { state: RunState; busy: boolean; run: (action: Action) => Promise<void> }) {
  const results = state.workflow.gateResults;
  if (results.length === 0) return null;
  return (
    <section className="panel" aria-label="Gates" data-testid="gates">
      <h2>Gates</h2>
      {results.map((gate) => (
        <GateRow key={gate.gateId} gate={gate} state={state} busy={busy} run={run} />
      ))}
    </section>
  );
}

function GateRow({ gate, state, busy, run }: { gate: GateResult; state: RunState; busy: boolean; run: (action: Action) => Promise<void> }) {
  const live = state.gates[gate.gateId]?.status ?? gate.status;
  const waiting = live === GateStatus.AWAITING_APPROVAL && state.status === WorkflowStatus.PAUSED;
  const decide = (approve: boolean) =>
    void run(async () =>
      (await workflows.approveGate({ workflowId: state.workflow.id, gateId: gate.gateId, approve, comment: approve ? "approved in the web view" : "rejected in the web view" })).workflow,
    );
  const observed = gate.observedValue !== undefined ? `observed ${gate.observedValue}. ` : "";
  const condition = gateCondition(state.workflow.template, gate.gateId);
  return (
    <div className="gate" data-testid={`gate-${gate.gateId}`}>
      <div className="gate-head">
        <span className="gate-id">{gate.gateId}</span>
        <StatusBadge status={gateStatusName(live)} testId={`gate-status-${gate.gateId}`} />
      </div>
      <div className="muted small">
        {gateTypeName(gate.type)} after {gate.stepId}
        {condition ? ` · ${condition}` : ""}
      </div>
      {(observed || gate.message) && <div className="small">{observed}{gate.message}</div>}
      {waiting && (
        <div className="buttons">
          <button type="button" className="primary" disabled={busy} onClick={() => decide(true)} data-testid={`approve-${gate.gateId}`}>
            Approve
          </button>
          <ConfirmButton label="Reject" confirm="Confirm: reject (fails the run)" disabled={busy} testId={`reject-${gate.gateId}`} onConfirm={() => decide(false)} />
        </div>
      )}
    </div>
  );
}

function Metrics({ workflow }: { workflow: Workflow }) {
  const m = workflow.metrics;
  if (!m) return null;
  const rows: [string, string | number][] = [
    ["Steps", `${m.completedSteps} completed, ${m.failedSteps} failed, ${m.skippedSteps} skipped, ${m.cancelledSteps} cancelled (of ${m.totalSteps})`],
    ["Gates", `${m.qualityGatesPassed} passed, ${m.qualityGatesFailed} failed`],
    ["Attempts", m.totalAttempts],
    ["Duration", duration(m.totalDuration)],
    ["Created", time(workflow.createTime)],
    ["Started", time(workflow.startTime)],
    ["Ended", time(workflow.endTime)],
  ];
  return (
    <section className="panel" aria-label="Metrics" data-testid="metrics">
      <h2>Metrics</h2>
      <dl className="facts">
        {rows.map(([name, value]) => (
          <div key={name} className="fact">
            <dt>{name}</dt>
            <dd>{value}</dd>
          </div>
        ))}
      </dl>
      {Object.keys(workflow.params ?? {}).length > 0 && (
        <>
          <h3>Params</h3>
          <Json value={workflow.params} />
        </>
      )}
    </section>
  );
}
