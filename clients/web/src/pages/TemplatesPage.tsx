// The templates: the predefined ones and the caller's registered ones (latest versions).

import type { Template } from "@gen/sluice/v1/template_pb.js";

import { workflows } from "../api/client";
import { useEveryPage, type PageReader } from "../api/pages";
import { ErrorBox } from "../components";
import { Link } from "../router";

const readTemplates: PageReader<Template> = async (pageToken, signal) => {
  const answer = await workflows.listTemplates({ pageSize: 1000, pageToken }, { signal });
  return { items: answer.templates, next: answer.nextPageToken };
};

export function TemplatesPage() {
  const { items: templates, problem } = useEveryPage(readTemplates);
  return (
    <main className="page">
      <div className="page-head">
        <h1>Templates</h1>
        <Link to="/builder" className="button primary" data-testid="new-template">
          New template
        </Link>
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
