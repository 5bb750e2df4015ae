// One task's calls to the server while a worker holds it: heartbeats while its handler runs (the
// first acknowledges the task), and the report of its outcome: by call here, or on the stream by
// the worker, whose answer is handled here as the call's would be. Each call that fails while
// the server is unreachable is tried again (within the task's deadlines); a lease that is gone
// (FAILED_PRECONDITION / NOT_FOUND) or a cancelled run ends the task here without a report.

import type { MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, type Client } from "@connectrpc/connect";

import { fromConnectError, SluiceError } from "./errors.js";
import type {
  CompleteTaskRequestSchema,
  FailTaskRequestSchema,
  StreamTasksRequestSchema,
  Task,
  TaskReport,
  WorkerService,
} from "./gen/sluice/v1/worker_service_pb.js";
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
// The first heartbeat waits at most this long: see `firstHeartbeatMs`.
const FIRST_HEARTBEAT_MS = 1000;
// A TaskReport's code when the result was recorded: gRPC's OK, which Connect's Code leaves out.
const OK = 0;

/** A result as a StreamTasks message carries it: the request CompleteTask or FailTask sends. */
export type StreamResult = Pick<
  MessageInitShape<typeof StreamTasksRequestSchema>,
  "completed" | "failed"
>;

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

  /**
   * When the first heartbeat goes: a second after the task arrived, or a quarter of the time
   * to its heartbeat deadline if that is sooner. A handler done by then acknowledges the task
   * with its result, and a task costs the server one call less.
   */
  firstHeartbeatMs(): number {
    const deadline = this.task.heartbeatDeadline;
    const left = deadline !== undefined ? timestampMs(deadline) - Date.now() : Infinity;
    return Math.max(0, Math.min(FIRST_HEARTBEAT_MS, this.settings.heartbeatIntervalMs, left / 4));
  }

  /**
   * Heartbeats while the handler runs, the first after `firstMs` (the first extends the lease
   * to the step's timeout), then every interval; a cancel or a lost lease aborts the handler.
   * A beat that fails otherwise (the server unreachable) is tried again sooner than the next.
   */
  heartbeat(firstMs: number): { stop(): void } {
    const { task, control } = this;
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    let retryMs = this.settings.initialBackoffMs;
    const beat = async (): Promise<void> => {
      let nextMs = this.settings.heartbeatIntervalMs;
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
        retryMs = this.settings.initialBackoffMs;
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
        // Anything else may pass (a server restarting): the next beat, soon, tells.
        this.log.warn("heartbeat failed", {
          ...this.fields,
          code: failure.codeName,
          error: failure.message,
        });
        nextMs = Math.min(retryMs, nextMs);
        retryMs = Math.min(retryMs * 2, this.settings.maxBackoffMs);
      }
      if (!stopped) timer = setTimeout(() => void beat(), nextMs);
    };
    timer = setTimeout(() => void beat(), firstMs);
    return {
      stop: () => {
        stopped = true;
        clearTimeout(timer);
      },
    };
  }

  /**
   * The worker stopped before the handler finished: the attempt failed (retryable), so the
   * step's retry policy decides now rather than when the attempt times out. One try, with its
   * own deadline (the worker is closing).
   */
  async reportStopped(): Promise<void> {
    const error = "the worker stopped before the task finished";
    try {
      await this.client.failTask(
        { taskToken: this.task.taskToken, error, nonRetryable: false },
        { timeoutMs: this.settings.callTimeoutMs },
      );
      this.log.info("task interrupted; reported failed", this.fields);
    } catch (caught) {
      const failure = fromConnectError(caught);
      this.log.warn("task interrupted; its failure was not reported", {
        ...this.fields,
        code: failure.codeName,
        error: failure.message,
      });
    }
  }

  /** The outcome in a StreamTasks message: the same fields as report()'s call. */
  streamResult(outcome: Outcome): StreamResult {
    return outcome.kind === "complete"
      ? { completed: [this.completeRequest(outcome)] }
      : { failed: [this.failRequest(outcome)] };
  }

  /**
   * The server's answer to the outcome reported on the stream, handled as report() handles its
   * call's error: a lease gone is logged and nothing is reported again; a refused output fails
   * the task, and a passing failure has the outcome tried again, both by call.
   */
  async answered(outcome: Outcome, answer: TaskReport): Promise<void> {
    if (answer.code === OK) {
      this.reported(outcome);
      return;
    }
    const next = this.refused(outcome, new SluiceError(answer.message, { code: answer.code }));
    if (next !== undefined) await this.report(next);
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
          await this.client.completeTask(this.completeRequest(outcome), options);
        } else {
          await this.client.failTask(this.failRequest(outcome), options);
        }
        this.reported(outcome);
        return;
      } catch (error) {
        if (this.halt.aborted) {
          this.log.warn("the worker stopped before the task's result was reported", this.fields);
          return;
        }
        const failure = fromConnectError(error);
        const next = this.refused(outcome, failure);
        if (next === undefined) return;
        if (next !== outcome) {
          outcome = next; // a failure in place of a refused output: reported at once
          continue;
        }
        const fields = { ...this.fields, code: failure.codeName, error: failure.message };
        if (Date.now() + delayMs >= until) {
          this.log.error("cannot report the task's result; it will time out", fields);
          return;
        }
        this.log.warn("reporting the task's result failed; trying again", { ...fields, delayMs });
      }
      await sleep(delayMs, this.halt);
      delayMs = Math.min(delayMs * 2, this.settings.maxBackoffMs);
    }
  }

  /**
   * What follows a result the server refused (a call's error, or a TaskReport's code): the
   * outcome to report next (the same one after a passing failure, or a failure in place of a
   * refused output), or undefined when there is nothing more to report (logged).
   */
  private refused(outcome: Outcome, failure: SluiceError): Outcome | undefined {
    const fields = { ...this.fields, code: failure.codeName, error: failure.message };
    if (LEASE_GONE.has(failure.code)) {
      this.log.warn("task result refused: its lease is gone", fields);
      return undefined;
    }
    if (outcome.kind === "complete" && failure.code === Code.InvalidArgument) {
      // An output the server refuses (too large) would be refused again: the step fails
      // with the reason rather than timing out.
      this.log.warn("task output refused; failing the task", fields);
      const error = `the server refused the task's output: ${failure.message}`;
      return { kind: "fail", error, nonRetryable: true, retryAfterMs: undefined };
    }
    if (!RETRY_CALL.has(failure.code)) {
      this.log.error("cannot report the task's result; it will time out", fields);
      return undefined;
    }
    return outcome;
  }

  private reported(outcome: Outcome): void {
    if (outcome.kind === "complete") {
      this.log.debug("task completed", this.fields);
    } else {
      this.log.info("task failed", {
        ...this.fields,
        error: outcome.error,
        nonRetryable: outcome.nonRetryable,
      });
    }
  }

  private completeRequest(
    outcome: Extract<Outcome, { kind: "complete" }>,
  ): MessageInitShape<typeof CompleteTaskRequestSchema> {
    return { taskToken: this.task.taskToken, output: outcome.output };
  }

  private failRequest(
    outcome: Extract<Outcome, { kind: "fail" }>,
  ): MessageInitShape<typeof FailTaskRequestSchema> {
    return {
      taskToken: this.task.taskToken,
      error: outcome.error,
      nonRetryable: outcome.nonRetryable,
      errorType: outcome.errorType ?? "",
      ...(outcome.retryAfterMs !== undefined
        ? { retryAfter: durationFromMs(outcome.retryAfterMs) }
        : {}),
    };
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
