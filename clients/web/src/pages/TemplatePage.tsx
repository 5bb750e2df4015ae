// One template: its graph (steps, dependencies, gates and conditions as badges; a join's
// dependencies dashed), the selected step's definition, the gates and the params.

import { useEffect, useMemo, useState } from "react";

import type { Template } from "@gen/sluice/v1/template_pb.js";

import { useAuth } from "../api/auth";
import { workflows } from "../api/client";
import { problemOf, type Problem } from "../api/errors";
import { duration, ErrorBox, Json } from "../components";
import { DagView } from "../graph/DagView";
import { gateKind, templateEdges, templateNodes } from "../graph/template_graph";
import { Link } from "../router";

export function TemplatePage({ id, version }: { id: string; version: number }) {
  const { token } = useAuth();
  const [template, setTemplate] = useState<Template | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [selected, setSelected] = useState<string | null>(null);
  useEffect(() => {
    const abort = new AbortController();
    workflows
      .getTemplate({ templateId: id, version }, { signal: abort.signal })
      .then((answer) => {
        setTemplate(answer.template ?? null);
        setProblem(null);
      })
      .catch((error: unknown) => abort.signal.aborted || setProblem(problemOf(error)));
    return () => abort.abort();
  }, [id, version, token]);
  const nodes = useMemo(() => (template ? templateNodes(template) : []), [template]);
  const edges = useMemo(() => (template ? templateEdges(template) : []), [template]);
  if (template === null) {
    return (
      <main className="page">
        <h1>Template <span className="mono">{id}</span></h1>
        {problem ? <ErrorBox problem={problem} /> : <p className="muted">Loading…</p>}
      </main>
    );
  }
  const step = template.steps.find((s) => s.id === selected);
  return (
    <main className="page run-page">
      <div className="page-head">
        <h1>
          Template <span className="mono">{template.id}</span>{" "}
          <span className="muted">{template.predefined ? "predefined" : `version ${template.version}`}</span>
        </h1>
        <div className="run-meta">
          <span>{template.name}</span>
          <Link to={`/?template=${encodeURIComponent(template.id)}`}>its runs</Link>
          <Link
            to={`/builder?template=${encodeURIComponent(template.id)}&version=${template.version}`}
            className="button"
            data-testid="edit-in-builder"
          >
            {template.predefined ? "Copy into the builder" : "Edit as new version"}
          </Link>
        </div>
      </div>
      {template.description && <p className="muted">{template.description}</p>}
      <div className="run-body">
        <section className="graph-panel" aria-label="Steps" data-step-count={template.steps.length}>
          <DagView nodes={nodes} edges={edges} selectedId={selected} onSelect={setSelected} label={`Graph of template ${template.id}`} />
        </section>
        <aside className="side">
          {step ? (
            <section className="panel" aria-label={`Step ${step.id}`} data-testid="step-details">
              <div className="panel-head">
                <h2>{step.id}</h2>
                <button type="button" className="link" onClick={() => setSelected(null)}>close</button>
              </div>
              <dl className="facts">
                <dt>Name</dt><dd>{step.name || "-"}</dd>
                <dt>Type</dt><dd>{step.type === "task" ? `task (${step.taskType})` : step.type}</dd>
                <dt>After</dt><dd>{step.dependencies.join(", ") || "-"}</dd>
                {step.when && (<><dt>Runs if</dt><dd><code>{step.when}</code></dd></>)}
                <dt>Optional</dt><dd>{step.optional ? "yes" : "no"}</dd>
                {step.retry && (<><dt>Retries</dt><dd>{step.retry.maxAttempts} attempts, from {duration(step.retry.initialBackoff)}</dd></>)}
                {step.timeout && (<><dt>Timeout</dt><dd>{duration(step.timeout)}</dd></>)}
              </dl>
              {step.description && <p className="muted">{step.description}</p>}
              {step.config && Object.keys(step.config).length > 0 && (<><h3>Config</h3><Json value={step.config} /></>)}
            </section>
          ) : (
            <p className="muted">Select a step to see its definition.</p>
          )}
          {template.qualityGates.length > 0 && (
            <section className="panel" aria-label="Gates">
              <h2>Gates</h2>
              <table className="list compact">
                <thead><tr><th>Gate</th><th>After</th><th>Type</th><th>On failure</th></tr></thead>
                <tbody>
                  {template.qualityGates.map((g) => (
                    <tr key={g.id}>
                      <td>{g.id}</td><td>{g.stepId}</td><td>{gateKind(g)}</td>
                      <td>{["-", "continue", "pause", "abort"][g.action] ?? "-"}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </section>
          )}
          {template.params.length > 0 && (
            <section className="panel" aria-label="Params">
              <h2>Params</h2>
              <table className="list compact">
                <thead><tr><th>Param</th><th>Required</th><th>Default</th></tr></thead>
                <tbody>
                  {template.params.map((p) => (
                    <tr key={p.name} title={p.description}>
                      <td>{p.name}</td><td>{p.required ? "yes" : ""}</td>
                      <td>{p.defaultValue === undefined ? "" : JSON.stringify(p.defaultValue)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </section>
          )}
        </aside>
      </div>
    </main>
  );
}
