// The runs: newest first, a page at a time (ListWorkflows' page tokens), filtered by status
// and template; the filters live in the URL so a filtered list can be linked and reloaded.

import { useEffect, useState } from "react";

import type { Template } from "@gen/sluice/v1/template_pb.js";
import { WorkflowStatus, type Workflow } from "@gen/sluice/v1/workflow_pb.js";
import { WorkflowView } from "@gen/sluice/v1/workflow_service_pb.js";

import { useAuth } from "../api/auth";
import { workflows } from "../api/client";
import { problemOf, type Problem } from "../api/errors";
import { ErrorBox, StatusBadge, time } from "../components";
import { Link, navigate } from "../router";
import { RUN_STATUSES, runStatusName } from "../status";

export const PAGE_SIZE = 50;

export function RunsPage({ query }: { query: URLSearchParams }) {
  const { token } = useAuth();
  const status = query.get("status") ?? "";
  const templateId = query.get("template") ?? "";
  // Tokens of the pages before this one, and this one's ("" for the first).
  const [pages, setPages] = useState<string[]>([""]);
  const [runs, setRuns] = useState<Workflow[] | null>(null);
  const [next, setNext] = useState("");
  const [problem, setProblem] = useState<Problem | null>(null);
  const [templates, setTemplates] = useState<Template[]>([]);
  const pageToken = pages[pages.length - 1] ?? "";

  useEffect(() => setPages([""]), [status, templateId]);

  useEffect(() => {
    const abort = new AbortController();
    setRuns(null);
    const statusValue = WorkflowStatus[status as keyof typeof WorkflowStatus];
    workflows
      .listWorkflows(
        {
          pageSize: PAGE_SIZE,
          pageToken,
          statuses: statusValue === undefined ? [] : [statusValue],
          templateId,
          view: WorkflowView.BASIC,
        },
        { signal: abort.signal },
      )
      .then((answer) => {
        setRuns(answer.workflows);
        setNext(answer.nextPageToken);
        setProblem(null);
      })
      .catch((error: unknown) => abort.signal.aborted || setProblem(problemOf(error)));
    return () => abort.abort();
  }, [status, templateId, pageToken, token]);

  useEffect(() => {
    workflows
      .listTemplates({ pageSize: 1000 })
      .then((answer) => setTemplates(answer.templates))
      .catch(() => setTemplates([])); // the filter then offers what the URL holds
  }, [token]);

  const filter = (name: string, value: string) => {
    const params = new URLSearchParams(query);
    if (value) params.set(name, value);
    else params.delete(name);
    const search = params.toString();
    navigate(search ? `/?${search}` : "/");
  };

  const pageNumber = pages.length;
  return (
    <main className="page">
      <div className="page-head">
        <h1>Runs</h1>
        <div className="filters">
          <Filter
            label="Status"
            value={status}
            onChange={(value) => filter("status", value)}
            testId="filter-status"
            options={RUN_STATUSES.map((s) => [runStatusName(s), runStatusName(s).toLowerCase()])}
          />
          <Filter
            label="Template"
            value={templateId}
            onChange={(value) => filter("template", value)}
            testId="filter-template"
            // The URL's template is offered even when the list does not have it (yet).
            options={[
              ...(templateId && !templates.some((t) => t.id === templateId) ? [templateId] : []),
              ...templates.map((t) => t.id),
            ].map((id) => [id, id])}
          />
        </div>
      </div>
      <ErrorBox problem={problem} />
      <table className="list" data-testid="runs" aria-busy={runs === null}>
        <thead>
          <tr>
            <th>Run</th>
            <th>Template</th>
            <th>Status</th>
            <th>Steps</th>
            <th>Created</th>
          </tr>
        </thead>
        <tbody>
          {(runs ?? []).map((run) => {
            const m = run.metrics;
            const skipped = m?.skippedSteps ? ` (${m.skippedSteps} skipped)` : "";
            return (
              <tr key={run.id} data-testid="run-row" data-run-id={run.id}>
                <td>
                  <Link to={`/runs/${run.id}`} className="mono">
                    {run.id}
                  </Link>
                </td>
                <td>
                  {run.templateId}
                  {run.templateVersion ? ` v${run.templateVersion}` : ""}
                </td>
                <td>
                  <StatusBadge status={runStatusName(run.status)} />
                </td>
                <td>
                  {m?.completedSteps ?? 0}/{m?.totalSteps ?? 0}
                  {skipped}
                </td>
                <td>{time(run.createTime)}</td>
              </tr>
            );
          })}
          {runs !== null && runs.length === 0 && (
            <tr>
              <td colSpan={5} className="muted">
                No runs{status || templateId ? " match these filters" : " yet"}.
              </td>
            </tr>
          )}
        </tbody>
      </table>
      <div className="pager">
        <button
          type="button"
          disabled={pages.length === 1}
          onClick={() => setPages(pages.slice(0, -1))}
          data-testid="page-previous"
        >
          ← Newer
        </button>
        <span data-testid="page-number" data-loading={runs === null}>
          page {pageNumber}
        </span>
        <button
          type="button"
          disabled={!next || runs === null}
          onClick={() => setPages([...pages, next])}
          data-testid="page-next"
        >
          Older →
        </button>
      </div>
    </main>
  );
}

function Filter(props: {
  label: string;
  value: string;
  onChange: (value: string) => void;
  testId: string;
  options: [value: string, text: string][];
}) {
  return (
    <label>
      {props.label}{" "}
      <select value={props.value} onChange={(e) => props.onChange(e.target.value)} data-testid={props.testId}>
        <option value="">all</option>
        {props.options.map(([value, text]) => (
          <option key={value} value={value}>
            {text}
          </option>
        ))}
      </select>
    </label>
  );
}
