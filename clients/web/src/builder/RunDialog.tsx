// Runs a saved template version: CreateWorkflow with its params, ExecuteWorkflow, then the
// run's page.

import { toJson, type JsonObject } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { useState, type FormEvent } from "react";

import type { Template } from "@gen/sluice/v1/template_pb.js";

import { workflows } from "../api/client";
import { problemOf, type Problem } from "../api/errors";
import { ErrorBox } from "../components";
import { navigate } from "../router";

function startingParams(template: Template): string {
  const params: JsonObject = {};
  for (const p of template.params) {
    if (p.defaultValue !== undefined) params[p.name] = toJson(ValueSchema, p.defaultValue);
    else if (p.required) params[p.name] = "";
  }
  return JSON.stringify(params, null, 2);
}

export function RunDialog({ template, onClose }: { template: Template; onClose: () => void }) {
  const [text, setText] = useState(() => startingParams(template));
  const [autoApprove, setAutoApprove] = useState(false);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);

  const start = async (event: FormEvent) => {
    event.preventDefault();
    let params: JsonObject;
    try {
      const parsed: unknown = JSON.parse(text || "{}");
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("must be a JSON object");
      params = parsed as JsonObject;
    } catch (error) {
      setProblem({ code: "INVALID_ARGUMENT", message: `params: ${(error as Error).message}`, violations: [] });
      return;
    }
    setBusy(true);
    setProblem(null);
    try {
      const created = await workflows.createWorkflow({
        source: { case: "templateId", value: template.id },
        templateVersion: template.version,
        params,
      });
      const id = created.workflow?.id ?? "";
      await workflows.executeWorkflow({ workflowId: id, options: { autoApprove } });
      navigate(`/runs/${id}`);
    } catch (error) {
      setProblem(problemOf(error));
      setBusy(false);
    }
  };

  return (
    <div className="dialog-backdrop">
      <form className="dialog" role="dialog" aria-modal="true" aria-labelledby="run-title" data-testid="run-dialog" onSubmit={(e) => void start(e)}>
        <h2 id="run-title">
          Run <span className="mono">{template.id}</span> version {template.version}
        </h2>
        <label>
          Params (JSON)
          <textarea className="mono" rows={6} value={text} onChange={(e) => setText(e.target.value)} data-testid="run-params" spellCheck={false} />
        </label>
        <label className="check">
          <input type="checkbox" checked={autoApprove} onChange={(e) => setAutoApprove(e.target.checked)} data-testid="run-auto-approve" />
          Approve approval gates at once (auto_approve)
        </label>
        <ErrorBox problem={problem} />
        <div className="buttons">
          <button type="submit" className="primary" disabled={busy} data-testid="run-start">
            Start the run
          </button>
          <button type="button" onClick={onClose}>
            Close
          </button>
        </div>
      </form>
    </div>
  );
}
