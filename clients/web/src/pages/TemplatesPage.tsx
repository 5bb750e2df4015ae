// The templates: the predefined ones and the caller's registered ones (latest versions).

import { useEffect, useState } from "react";

import type { Template } from "@gen/sluice/v1/template_pb.js";

import { useAuth } from "../api/auth";
import { workflows } from "../api/client";
import { problemOf, type Problem } from "../api/errors";
import { ErrorBox } from "../components";
import { Link } from "../router";

export function TemplatesPage() {
  const { token } = useAuth();
  const [templates, setTemplates] = useState<Template[] | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  useEffect(() => {
    const abort = new AbortController();
    const all: Template[] = [];
    const load = async () => {
      let pageToken = "";
      do {
        const answer = await workflows.listTemplates({ pageSize: 1000, pageToken }, { signal: abort.signal });
        all.push(...answer.templates);
        pageToken = answer.nextPageToken;
      } while (pageToken);
      setTemplates(all);
      setProblem(null);
    };
    load().catch((error: unknown) => abort.signal.aborted || setProblem(problemOf(error)));
    return () => abort.abort();
  }, [token]);
  return (
    <main className="page">
      <div className="page-head">
        <h1>Templates</h1>
      </div>
      <ErrorBox problem={problem} />
      <table className="list" data-testid="templates" aria-busy={templates === null}>
        <thead>
          <tr><th>Template</th><th>Version</th><th>Name</th><th>Steps</th><th>Gates</th><th></th></tr>
        </thead>
        <tbody>
          {(templates ?? []).map((t) => (
            <tr key={t.id} data-testid="template-row">
              <td>
                <Link to={`/templates/${t.id}${t.predefined ? "" : `?version=${t.version}`}`} className="mono">
                  {t.id}
                </Link>
              </td>
              <td>{t.predefined ? "predefined" : t.version}</td>
              <td>
                <div>{t.name}</div>
                <div className="muted small">{t.description}</div>
              </td>
              <td>{t.steps.length}</td>
              <td>{t.qualityGates.length}</td>
              <td>
                <Link to={`/?template=${encodeURIComponent(t.id)}`}>runs</Link>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </main>
  );
}
