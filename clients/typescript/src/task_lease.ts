// One task's calls to the server while a worker holds it: the acknowledgement as it arrives,
// heartbeats while its handler runs, and the report of its outcome. Each call that fails while
// the server is unreachable is tried again (within the task's deadlines); a lease that is gone
// (FAILED_PRECONDITION / NOT_FOUND) or a cancelled run ends the task here without a report.

import { durationFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, type Client } from "@connectrpc/connect";

import { fromConnectError } from "./errors.js";
import type { Task, WorkerService } from "./gen/sluice/v1/worker_service_pb.js";
import type { Outcome } from "./task.js";
import type { LogFields, WorkerLogger } from "./worker.js";

// A heartbeat or report failing with these is tried again (until the task's deadline): the
// server restarting, a connection lost. Repeating a completion the server took is OK.
const RETRY_CALL = new Set<Code>([
  Code.Unavailable,
  Code.DeadlineExceeded,
  Code.Aborted,
  Code.ResourceExhausted,
]);
// The lease moved on: the task timed out, went to another worker, or its run was cancelled.
const LEASE_GONE = new Set<Code>([Code.FailedPrecondition, Code.NotFound]);

export interface LeaseSettings {
  heartbeatIntervalMs: number;
  callTimeoutMs: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
  log: WorkerLogger;
}

export class TaskLease {
  /**
   * `control` is the task's: aborting it stops the handler, and a heartbeat aborts it when the
   * run was cancelled or the lease is gone. `halt` stops every call (the worker's grace ran out).
   */
  constructor(
    private readonly client: Client<typeof WorkerService>,
    readonly task: Task,
    readonly fields: LogFields,
    readonly control: AbortController,
    private readonly halt: AbortSignal,
    private readonly settings: LeaseSettings,
  ) {}

  private get log(): WorkerLogger {
    return this.settings.log;
  }

  /** The first heartbeat, at once: whether the lease holds and the handler should run. */
  async acknowledge(): Promise<boolean> {
    const { task, control } = this;
    const deadline = task.heartbeatDeadline;
    const until = deadline !== undefined ? timestampMs(deadline) : Date.now() + 30_000;
    let delayMs = this.settings.initialBackoffMs;
    for (;;) {
      try {
        const response = await this.client.heartbeatTask(
          { taskToken: task.taskToken },
          { signal: control.signal, timeoutMs: this.settings.callTimeoutMs },
        );
        if (response.cancelled) {
          this.log.info("task's run cancelled before it started; nothing reported", this.fields);
          return false;
        }
        return true;
      } catch (error) {
        if (control.signal.aborted) {
          this.log.info("task given up before it started", {
            ...this.fields,
            reason: reasonText(control.signal.reason),
          });
          return false;
        }
        const failure = fromConnectError(error);
        const fields = { ...this.fields, code: failure.codeName, error: failure.message };
        if (LEASE_GONE.has(failure.code)) {
          this.log.warn("task lease gone before it started; nothing reported", fields);
          return false;
        }
        if (!RETRY_CALL.has(failure.code) || Date.now() + delayMs >= until) {
          this.log.error("cannot acknowledge the task; it will time out", fields);
          return false;
        }
        this.log.warn("acknowledging the task failed; trying again", { ...fields, delayMs });
      }
      await sleep(delayMs, control.signal);
      delayMs = Math.min(delayMs * 2, this.settings.maxBackoffMs);
    }
  }

  /** Heartbeats every interval while the handler runs; a cancel or lost lease aborts it. */
  heartbeat(): { stop(): void } {
    const { task, control } = this;
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    const beat = async (): Promise<void> => {
      try {
        const response = await this.client.heartbeatTask(
          { taskToken: task.taskToken },
          { signal: control.signal, timeoutMs: this.settings.callTimeoutMs },
        );
        if (stopped) return;
        if (response.cancelled) {
          control.abort(abortReason("the task's run was cancelled"));
          return;
        }
      } catch (error) {
        if (stopped || control.signal.aborted) return;
        const failure = fromConnectError(error);
        if (LEASE_GONE.has(failure.code)) {
          this.log.warn("task lease gone; stopping its handler", {
            ...this.fields,
            code: failure.codeName,
            error: failure.message,
          });
          control.abort(abortReason(`the task's lease is gone (${failure.codeName})`));
          return;
        }
        // Anything else may pass (a server restarting): the next beat tells.
        this.log.warn("heartbeat failed", {
          ...this.fields,
          code: failure.codeName,
          error: failure.message,
        });
      }
      if (!stopped) timer = setTimeout(() => void beat(), this.settings.heartbeatIntervalMs);
    };
    timer = setTimeout(() => void beat(), this.settings.heartbeatIntervalMs);
    return {
      stop: () => {
        stopped = true;
        clearTimeout(timer);
      },
    };
  }

  /** CompleteTask or FailTask, tried again while the server is unreachable, until the deadline. */
  async report(outcome: Outcome): Promise<void> {
    const { task } = this;
    const until = task.deadline !== undefined ? timestampMs(task.deadline) : Date.now() + 300_000;
    const options = { signal: this.halt, timeoutMs: this.settings.callTimeoutMs };
    let delayMs = this.settings.initialBackoffMs;
    for (;;) {
      try {
        if (outcome.kind === "complete") {
          const request = { taskToken: task.taskToken, output: outcome.output };
          await this.client.completeTask(request, options);
          this.log.debug("task completed", this.fields);
        } else {
          await this.client.failTask(
            {
              taskToken: task.taskToken,
              error: outcome.error,
              nonRetryable: outcome.nonRetryable,
              ...(outcome.retryAfterMs !== undefined
                ? { retryAfter: durationFromMs(outcome.retryAfterMs) }
                : {}),
            },
            options,
          );
          this.log.info("task failed", {
            ...this.fields,
            error: outcome.error,
            nonRetryable: outcome.nonRetryable,
          });
        }
        return;
      } catch (error) {
        if (this.halt.aborted) {
          this.log.warn("the worker stopped before the task's result was reported", this.fields);
          return;
        }
        const failure = fromConnectError(error);
        const fields = { ...this.fields, code: failure.codeName, error: failure.message };
        if (LEASE_GONE.has(failure.code)) {
          this.log.warn("task result refused: its lease is gone", fields);
          return;
        }
        if (outcome.kind === "complete" && failure.code === Code.InvalidArgument) {
          // An output the server refuses (too large) would be refused again: the step fails
          // with the reason rather than timing out.
          this.log.warn("task output refused; failing the task", fields);
          const error = `the server refused the task's output: ${failure.message}`;
          outcome = { kind: "fail", error, nonRetryable: true, retryAfterMs: undefined };
          continue;
        }
        if (!RETRY_CALL.has(failure.code) || Date.now() + delayMs >= until) {
          this.log.error("cannot report the task's result; it will time out", fields);
          return;
        }
        this.log.warn("reporting the task's result failed; trying again", { ...fields, delayMs });
      }
      await sleep(delayMs, this.halt);
      delayMs = Math.min(delayMs * 2, this.settings.maxBackoffMs);
    }
  }
}

/** Waits `ms`, or less if `signal` aborts meanwhile. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((done) => {
    if (signal.aborted) return done();
    const onAbort = (): void => {
      clearTimeout(timer);
      done();
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      done();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** An AbortSignal's reason as fetch() and friends expect one: an AbortError. */
export function abortReason(message: string): DOMException {
  return new DOMException(message, "AbortError");
}

export function reasonText(reason: unknown): string {
  return reason instanceof Error ? reason.message : String(reason);
}
