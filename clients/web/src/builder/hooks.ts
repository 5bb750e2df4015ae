// The builder's calls: the server's step types (ListStepTypes), and ValidateTemplate as the
// user types (debounced; a newer edit aborts the call still out for an older one).

import { equals } from "@bufbuild/protobuf";
import { useEffect, useMemo, useRef, useState } from "react";

import { TemplateSchema, type StepType, type Template } from "@gen/sluice/v1/template_pb.js";

import { useAuth } from "../api/auth";
import { workflows } from "../api/client";
import { problemOf, type Problem } from "../api/errors";
import { type PageReader, useEveryPage } from "../api/pages";
import { toTemplate, type Draft } from "./draft";
import { localViolations, orderOf, place, type Order, type Placed, type Violation } from "./problems";

/** How long typing must pause before the template is checked. */
export const VALIDATE_AFTER_MS = 300;

const readStepTypes: PageReader<StepType> = async (pageToken, signal) => {
  const answer = await workflows.listStepTypes({ pageSize: 1000, pageToken }, { signal });
  return { items: answer.stepTypes, next: answer.nextPageToken };
};

/** The step types the server runs. */
export function useStepTypes(): { types: StepType[] | null; problem: Problem | null } {
  const { items, problem } = useEveryPage(readStepTypes);
  return { types: items, problem };
}

export interface Validation {
  /** The template as it stands (what Save sends). */
  template: Template;
  placed: Placed;
  /** Problems found, here and by the server's last answer. */
  count: number;
  /** An answer for the template as it stands is awaited. */
  checking: boolean;
  /** The check itself failed (the server is unreachable, the token expired, ...). */
  problem: Problem | null;
}

interface Checked {
  template: Template;
  order: Order;
  violations: Violation[];
}

export function useValidation(draft: Draft): Validation {
  const { token } = useAuth();
  // Moving a node changes the draft but not the template, and neither does text that is not
  // JSON yet: the template keeps its object, and no new check is made for it.
  const parts = [draft.id, draft.name, draft.description, draft.steps, draft.gates, draft.params];
  const last = useRef<{ template: Template; order: Order; orderKey: string } | null>(null);
  const { template, order } = useMemo(() => {
    const made = { template: toTemplate(draft), order: orderOf(draft), orderKey: "" };
    made.orderKey = JSON.stringify(made.order);
    const before = last.current;
    if (before && before.orderKey === made.orderKey && equals(TemplateSchema, before.template, made.template)) {
      return before;
    }
    return (last.current = made);
  }, parts); // eslint-disable-line react-hooks/exhaustive-deps
  const local = useMemo(() => localViolations(draft), parts); // eslint-disable-line react-hooks/exhaustive-deps
  const [checked, setChecked] = useState<Checked | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);

  useEffect(() => {
    const abort = new AbortController();
    const timer = setTimeout(() => {
      workflows
        .validateTemplate({ template }, { signal: abort.signal })
        .then((answer) => {
          setChecked({ template, order, violations: answer.violations });
          setProblem(null);
        })
        .catch((error: unknown) => abort.signal.aborted || setProblem(problemOf(error)));
    }, VALIDATE_AFTER_MS);
    return () => {
      clearTimeout(timer);
      abort.abort();
    };
  }, [template, order, token]);

  const placed = useMemo(() => {
    const found = place(local, order);
    return checked ? place(checked.violations, checked.order, found) : found;
  }, [local, order, checked]);
  return {
    template,
    placed,
    count: placed.list.length,
    checking: checked?.template !== template && problem === null,
    problem,
  };
}
