// The app's frame: the header with its navigation and sign-in, and the page of the path.

import { useState } from "react";

import { useAuth } from "./api/auth";
import { BuilderPage } from "./builder/BuilderPage";
import { Login } from "./Login";
import { RunPage } from "./pages/RunPage";
import { RunsPage } from "./pages/RunsPage";
import { TemplatePage } from "./pages/TemplatePage";
import { TemplatesPage } from "./pages/TemplatesPage";
import { Link, match, useLocation } from "./router";

function Page({ path, query }: { path: string; query: URLSearchParams }) {
  let params: Record<string, string> | null;
  if ((params = match("/runs/:id", path))) return <RunPage key={params.id} id={params.id ?? ""} />;
  if (match("/templates", path)) return <TemplatesPage />;
  if (match("/builder", path)) return <BuilderPage key={query.toString()} query={query} />;
  if ((params = match("/templates/:id", path))) {
    const version = Number(query.get("version") ?? "0") || 0;
    return <TemplatePage key={`${params.id}@${version}`} id={params.id ?? ""} version={version} />;
  }
  if (match("/", path) || match("/runs", path)) return <RunsPage query={query} />;
  return (
    <main className="page">
      <h1>Not found</h1>
      <p>
        Nothing lives at <code>{path}</code>. <Link to="/">See the runs</Link>.
      </p>
    </main>
  );
}

export function App() {
  const { path, query } = useLocation();
  const { token } = useAuth();
  const [loginOpen, setLoginOpen] = useState(false);
  const section = path.startsWith("/templates") ? "templates" : path.startsWith("/builder") ? "builder" : "runs";
  return (
    <>
      <header className="top">
        <Link to="/" className="brand">
          Sluice
        </Link>
        <nav aria-label="Main">
          <Link to="/" aria-current={section === "runs" ? "page" : undefined}>
            Runs
          </Link>
          <Link to="/templates" aria-current={section === "templates" ? "page" : undefined}>
            Templates
          </Link>
          <Link to="/builder" aria-current={section === "builder" ? "page" : undefined}>
            Builder
          </Link>
        </nav>
        <button type="button" className="signin" onClick={() => setLoginOpen(true)} data-testid="signin">
          {token ? "Token set" : "Sign in"}
        </button>
      </header>
      <Page path={path} query={query} />
      <Login open={loginOpen} onClose={() => setLoginOpen(false)} />
    </>
  );
}
