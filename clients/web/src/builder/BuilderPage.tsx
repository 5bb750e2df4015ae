// The template builder (/builder; /builder?template=ID&version=N starts from a registered
// version, or from a copy of a predefined template): steps added from the server's step types,
// dependencies drawn from one node to another, gates, config and params edited beside the
// graph, ValidateTemplate's violations shown on the nodes as one types, then saved with
// CreateTemplate (a registered id gets its next version) and run.

import { equals } from "@bufbuild/protobuf";
import { useCallback, useEffect, useMemo, useRef, useState, type KeyboardEvent } from "react";

import { TemplateSchema, type Template } from "@gen/sluice/v1/template_pb.js";

import { useAuth } from "../api/auth";
import { workflows } from "../api/client";
import { problemOf, type Problem } from "../api/errors";
import { ErrorBox } from "../components";
import { DagView } from "../graph/DagView";
import type { Point } from "../graph/layout";
import { Link } from "../router";
import "./builder.css";
import { addStep, connect, disconnect, emptyDraft, fromTemplate, move, parseEdgeId, relayout, type Draft } from "./draft";
import { useStepTypes, useValidation } from "./hooks";
import { builderEdges, builderNodes, edgeSignature, type BuilderNodeCache } from "./nodes";
import { ProblemList } from "./ProblemList";
import { RunDialog } from "./RunDialog";
import { starterConfig } from "./schema";
import { StepEditor } from "./StepEditor";
import { ParamsEditor, TemplateFields } from "./TemplateForm";

type Selection = { step: string } | { edge: string } | null;

const PREFERRED_TYPE = "generate";

export function BuilderPage({ query }: { query: URLSearchParams }) {
  const from = query.get("template");
  const version = Number(query.get("version") ?? "0") || 0;
  const { token } = useAuth();
  const [draft, setDraft] = useState<Draft>(emptyDraft);
  const [base, setBase] = useState<Template | null>(null);
  const [loadProblem, setLoadProblem] = useState<Problem | null>(null);
  const { types, problem: typesProblem } = useStepTypes();
  const validation = useValidation(draft);
  const [selection, setSelection] = useState<Selection>(null);
  const [fit, setFit] = useState(0);
  const [reveal, setReveal] = useState<string | null>(null);
  const [chosenType, setChosenType] = useState("");
  const [saved, setSaved] = useState<{ template: Template; sent: Template } | null>(null);
  const [saveProblem, setSaveProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);
  const [running, setRunning] = useState(false);
  const cache = useRef<BuilderNodeCache>(new Map());

  useEffect(() => {
    // Loaded once: signing in again later must not replace what was built since.
    if (from === null || base !== null) return;
    const abort = new AbortController();
    workflows
      .getTemplate({ templateId: from, version }, { signal: abort.signal })
      .then((answer) => {
        const template = answer.template;
        if (!template) return;
        // A predefined id cannot be registered: its copy gets an id of its own.
        setDraft(fromTemplate(template, template.predefined ? `${template.id}-copy` : template.id));
        setBase(template);
        setLoadProblem(null);
      })
      .catch((error: unknown) => abort.signal.aborted || setLoadProblem(problemOf(error)));
    return () => abort.abort();
  }, [from, version, token]); // eslint-disable-line react-hooks/exhaustive-deps

  const change = useCallback((edit: (draft: Draft) => Draft) => setDraft(edit), []);
  const selectedStep = selection && "step" in selection ? selection.step : null;
  const selectedEdge = selection && "edge" in selection ? selection.edge : null;

  const nodes = useMemo(() => builderNodes(draft, validation.placed, cache.current), [draft.steps, draft.gates, validation.placed]); // eslint-disable-line react-hooks/exhaustive-deps
  const edgeKey = edgeSignature(draft, selectedEdge);
  const edges = useMemo(() => builderEdges(draft, selectedEdge), [edgeKey]); // eslint-disable-line react-hooks/exhaustive-deps

  const typeNames = (types ?? []).map((t) => t.name);
  const newType = chosenType || (typeNames.includes(PREFERRED_TYPE) ? PREFERRED_TYPE : (typeNames[0] ?? ""));
  const add = () => {
    const schema = types?.find((t) => t.name === newType)?.configSchema;
    const made = addStep(draft, newType, starterConfig(schema), selectedStep);
    setDraft(made.draft);
    setSelection({ step: made.key });
    setReveal(made.key);
  };

  const select = useCallback((key: string | null) => setSelection(key ? { step: key } : null), []);
  const selectEdge = useCallback((id: string) => setSelection({ edge: id }), []);
  const onConnect = useCallback((source: string, target: string) => setDraft((d) => connect(d, source, target)), []);
  const onMove = useCallback((key: string, at: Point) => setDraft((d) => move(d, key, at)), []);
  const removeEdge = (id: string) => {
    const ends = parseEdgeId(id);
    if (ends) setDraft((d) => disconnect(d, ends[0], ends[1]));
    setSelection(null);
  };
  const keyDown = (event: KeyboardEvent<HTMLElement>) => {
    const typing = event.target instanceof HTMLInputElement || event.target instanceof HTMLTextAreaElement;
    if (selectedEdge && !typing && (event.key === "Delete" || event.key === "Backspace")) {
      event.preventDefault();
      removeEdge(selectedEdge);
    }
  };

  const save = async () => {
    const sent = validation.template;
    setBusy(true);
    setSaveProblem(null);
    try {
      const answer = await workflows.createTemplate({ template: sent });
      if (answer.template) setSaved({ template: answer.template, sent });
    } catch (error) {
      setSaveProblem(problemOf(error));
    } finally {
      setBusy(false);
    }
  };
  const dirty = saved !== null && !equals(TemplateSchema, saved.sent, validation.template);

  if (from !== null && base === null) {
    return (
      <main className="page">
        <h1>Template builder</h1>
        {loadProblem ? <ErrorBox problem={loadProblem} /> : <p className="muted">Loading {from}…</p>}
      </main>
    );
  }
  const step = draft.steps.find((s) => s.key === selectedStep);
  const edgeEnds = selectedEdge ? parseEdgeId(selectedEdge) : null;
  const idOf = (key: string) => draft.steps.find((s) => s.key === key)?.spec.id || "(no id)";
  const state = validation.checking ? "checking" : validation.count === 0 ? "valid" : "invalid";

  return (
    <main className="page run-page builder">
      <div className="page-head">
        <h1>
          Template builder{" "}
          <span className="muted small" data-testid="builder-origin">
            {base === null
              ? "a new template"
              : base.predefined
                ? `a copy of the predefined ${base.id}`
                : `from ${base.id} version ${base.version}: saving adds a version`}
          </span>
        </h1>
        <div className="run-meta">
          {saved && (
            <span data-testid="saved" data-version={saved.template.version}>
              Saved as{" "}
              <Link to={`/templates/${saved.template.id}?version=${saved.template.version}`} className="mono">
                {saved.template.id} v{saved.template.version}
              </Link>
              {dirty ? " (changed since)" : ""}
            </span>
          )}
        </div>
      </div>
      <TemplateFields draft={draft} placed={validation.placed} change={change} />
      <div className="actions" role="toolbar" aria-label="Builder actions">
        <select aria-label="Type of the step to add" value={newType} onChange={(e) => setChosenType(e.target.value)} data-testid="new-step-type" disabled={types === null}>
          {typeNames.map((name) => (<option key={name} value={name}>{name}</option>))}
        </select>
        <button type="button" onClick={add} disabled={!newType} data-testid="add-step">
          Add step
        </button>
        <button type="button" onClick={() => { setDraft(relayout); setFit((n) => n + 1); }} disabled={draft.steps.length === 0} data-testid="relayout">
          Tidy layout
        </button>
        <span className={`validity validity-${state}`} data-testid="validity" data-state={state} aria-live="polite">
          {state === "checking" ? "checking…" : state === "valid" ? "✓ valid" : `${validation.count} problem${validation.count === 1 ? "" : "s"}`}
        </span>
        <span className="spacer" />
        <button type="button" className="primary" onClick={() => void save()} disabled={busy || validation.count > 0} data-testid="save"
          title={validation.count > 0 ? "Fix the problems first" : "Register it (CreateTemplate): a new template, or the next version of this id"}>
          Save
        </button>
        <button type="button" onClick={() => setRunning(true)} disabled={saved === null} data-testid="run"
          title={dirty ? "Runs the version as saved: save to include your changes" : undefined}>
          Run…
        </button>
      </div>
      <ErrorBox problem={typesProblem} />
      <ErrorBox problem={validation.problem} />
      <ErrorBox problem={saveProblem} onClose={() => setSaveProblem(null)} />
      <div className="run-body">
        <section className="graph-panel" aria-label="Steps" data-step-count={draft.steps.length} onKeyDown={keyDown}>
          {draft.steps.length === 0 && (
            <p className="graph-empty muted">
              Add a step to begin. Drag from a step&apos;s right edge to another step to make the second run after the first.
            </p>
          )}
          <DagView
            nodes={nodes}
            edges={edges}
            positions={draft.positions}
            selectedId={selectedStep}
            onSelect={select}
            onConnect={onConnect}
            onMove={onMove}
            onEdgeClick={selectEdge}
            draggable
            fitOn={fit}
            reveal={reveal}
            label="Graph of the template being built"
          />
        </section>
        <aside className="side">
          <ProblemList list={validation.placed.list} checking={validation.checking} onShow={select} />
          {step ? (
            <StepEditor key={step.key} draft={draft} step={step} types={types ?? []} placed={validation.placed} change={change} onClose={() => setSelection(null)} />
          ) : edgeEnds ? (
            <section className="panel" aria-label="Dependency" data-testid="edge-panel">
              <h2>Dependency</h2>
              <p>
                <span className="mono">{idOf(edgeEnds[1])}</span> runs after <span className="mono">{idOf(edgeEnds[0])}</span>.
              </p>
              <button type="button" className="danger" onClick={() => selectedEdge && removeEdge(selectedEdge)} data-testid="edge-remove">
                Remove the dependency
              </button>
            </section>
          ) : (
            <>
              <p className="muted">Select a step to edit it, or a dependency to remove it.</p>
              <ParamsEditor draft={draft} placed={validation.placed} change={change} />
            </>
          )}
        </aside>
      </div>
      {running && saved && <RunDialog template={saved.template} onClose={() => setRunning(false)} />}
    </main>
  );
}
