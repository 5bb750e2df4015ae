// A run kept live: GetWorkflow once, then WatchWorkflow from the run's last sequence. Events
// are queued and applied once per animation frame (a burst of a hundred events is one
// render), and the run is fetched again, at most every REFRESH_MS, for what events do not
// carry (timings, metrics). A broken stream is opened again after the last event applied.

import { Code, ConnectError } from "@connectrpc/connect";
import { useCallback, useEffect, useRef, useState } from "react";

import type { WorkflowEvent } from "@gen/sluice/v1/event_pb.js";
import type { Workflow } from "@gen/sluice/v1/workflow_pb.js";

import { useAuth } from "../api/auth";
import { workflows } from "../api/client";
import { problemOf, type Problem } from "../api/errors";
import { isTerminal } from "../status";
import { applyEvents, fromWorkflow, rebase, type RunState } from "./state";

const REFRESH_MS = 500;
const RETRY_MS = [500, 1000, 2000, 5000];

export interface LiveRun {
  state: RunState | null;
  problem: Problem | null;
  /** "live" while the stream is open, "reconnecting" after it broke, "ended" with the run. */
  stream: "connecting" | "live" | "reconnecting" | "ended";
  /** Take a run an action returned (pause, resume, approve, ...). */
  accept: (workflow: Workflow) => void;
}

export function useRun(id: string): LiveRun {
  const { token } = useAuth();
  const [state, setState] = useState<RunState | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [stream, setStream] = useState<LiveRun["stream"]>("connecting");
  const latest = useRef<RunState | null>(null);
  latest.current = state;

  const accept = useCallback((workflow: Workflow) => {
    setState((current) => (current === null ? fromWorkflow(workflow) : rebase(current, workflow)));
  }, []);

  useEffect(() => {
    const abort = new AbortController();
    const signal = abort.signal;
    let queued: WorkflowEvent[] = [];
    let frame = 0;
    let refreshTimer: ReturnType<typeof setTimeout> | undefined;
    let refreshing = false;
    let refreshAgain = false;

    const refresh = () => {
      if (refreshing) {
        refreshAgain = true;
        return;
      }
      refreshing = true;
      workflows
        .getWorkflow({ workflowId: id }, { signal })
        .then((answer) => answer.workflow && accept(answer.workflow))
        .catch(() => {}) // the next event or reload tries again; the stream reports problems
        .finally(() => {
          refreshing = false;
          if (refreshAgain && !signal.aborted) {
            refreshAgain = false;
            refreshTimer = setTimeout(refresh, REFRESH_MS);
          }
        });
    };
    const scheduleRefresh = () => {
      if (refreshTimer === undefined) {
        refreshTimer = setTimeout(() => {
          refreshTimer = undefined;
          refresh();
        }, REFRESH_MS);
      }
    };
    const flush = () => {
      frame = 0;
      const events = queued;
      queued = [];
      setState((current) => (current === null ? current : applyEvents(current, events)));
      scheduleRefresh();
    };
    const enqueue = (event: WorkflowEvent) => {
      queued.push(event);
      if (frame === 0) frame = requestAnimationFrame(flush);
    };

    const watch = async (after: bigint) => {
      for (let failures = 0; !signal.aborted; ) {
        try {
          setStream(failures ? "reconnecting" : "live");
          for await (const answer of workflows.watchWorkflow(
            { workflowId: id, afterSequence: after },
            { signal },
          )) {
            failures = 0;
            setStream("live");
            if (answer.event) {
              after = answer.event.sequence;
              enqueue(answer.event);
            }
          }
          setStream("ended"); // the run reached its end
          return;
        } catch (error) {
          if (signal.aborted) return;
          const code = ConnectError.from(error).code;
          if (code === Code.NotFound || code === Code.Unauthenticated || code === Code.PermissionDenied) {
            setProblem(problemOf(error));
            setStream("ended");
            return;
          }
          setStream("reconnecting");
          const wait = RETRY_MS[Math.min(failures, RETRY_MS.length - 1)] ?? 5000;
          failures++;
          await new Promise((resolve) => setTimeout(resolve, wait));
        }
      }
    };

    setState(null);
    setProblem(null);
    setStream("connecting");
    workflows
      .getWorkflow({ workflowId: id }, { signal })
      .then((answer) => {
        const workflow = answer.workflow;
        if (workflow === undefined) return;
        setState(fromWorkflow(workflow));
        if (isTerminal(workflow.status)) {
          setStream("ended");
        } else {
          void watch(workflow.lastSequence);
        }
      })
      .catch((error: unknown) => signal.aborted || setProblem(problemOf(error)));

    return () => {
      abort.abort();
      if (frame) cancelAnimationFrame(frame);
      clearTimeout(refreshTimer);
    };
  }, [id, token, accept]);

  return { state, problem, stream, accept };
}
