// The pure half of the worker: a Task message as the friendly object a handler receives, and
// what a handler's return value or thrown error makes of the task (complete it, or fail it
// retryable or not). No I/O here, so all of it is unit-tested without a server.

import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";

import type { Task } from "./gen/sluice/v1/worker_service_pb.js";

/** One attempt of a "task" step, as a handler receives it. */
export interface TaskInfo {
  /** Opaque; names the run, step, attempt and lease. */
  readonly token: string;
  readonly taskType: string;
  /** The run's id. */
  readonly workflowId: string;
  readonly stepId: string;
  /** 1 for the first attempt, one more for each retry. */
  readonly attempt: number;
  /** "<workflow id>/<step id>": the same for every attempt, to de-duplicate side effects. */
  readonly idempotencyKey: string;
  /** The run's template id. */
  readonly templateId: string;
  /** The step's config, every "{{ ... }}" substitution resolved. */
  readonly config: JsonObject;
  /** The run's parameters. */
  readonly params: JsonObject;
  /** Outputs of the step's direct dependencies, by step id. */
  readonly inputs: { readonly [stepId: string]: JsonObject };
  /** Outputs of every completed step upstream of this one, by step id. */
  readonly upstream: { readonly [stepId: string]: JsonObject };
  /** The attempt must end by then (the step's timeout from when this worker received it). */
  readonly deadline: Date | undefined;
  /** When the attempt was queued. */
  readonly queueTime: Date | undefined;
  /** Attempts the retry policy still allows after this one. */
  readonly retriesLeft: number;
  /**
   * The attempt's span when the server traces (OpenTelemetry), as W3C Trace Context fields
   * (`traceparent`, and `tracestate` when there is one); empty otherwise. Start the handler's
   * span as its child and it joins the run's trace: with `@opentelemetry/api`,
   * `tracer.startActiveSpan(name, {}, propagation.extract(ROOT_CONTEXT, task.traceContext), fn)`.
   */
  readonly traceContext: { readonly [field: string]: string };
  /** `traceContext.traceparent`: the attempt's span as one header value, or undefined. */
  readonly traceparent: string | undefined;
  /**
   * Aborted when the handler should stop: its run was cancelled, its lease is gone (timed out,
   * or handed to another worker), or the worker stops and its grace ran out. Whatever the
   * handler does afterwards is not reported. Pass it on to fetch() and the like.
   */
  readonly signal: AbortSignal;
}

export interface TaskErrorOptions {
  /** No retry: the step fails now whatever its retry policy. */
  nonRetryable?: boolean;
  /** Wait this long before the next attempt instead of the policy's backoff (at most 24 h). */
  retryAfterMs?: number;
  /**
   * The kind of failure, e.g. "CardDeclined" (letters, digits, '.', '_', '-', ':', '/',
   * starting with a letter): a step whose retry policy lists it in nonRetryableErrorTypes
   * fails now. Shown in the step's events.
   */
  errorType?: string;
  cause?: unknown;
}

/**
 * Thrown by a handler to fail its task with a chosen message and retry behaviour. Any other
 * thrown value fails the task too, retryable (an error with `nonRetryable: true` or a
 * `retryAfterMs` number is read the same way).
 */
export class TaskError extends Error {
  readonly nonRetryable: boolean;
  readonly retryAfterMs: number | undefined;
  readonly errorType: string;

  constructor(message: string, options: TaskErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.nonRetryable = options.nonRetryable ?? false;
    this.retryAfterMs = options.retryAfterMs;
    this.errorType = options.errorType ?? "";
  }
}

/** Fails the task without retry, whatever the step's retry policy. */
export class NonRetryableError extends TaskError {
  constructor(message: string, options: Omit<TaskErrorOptions, "nonRetryable"> = {}) {
    super(message, { ...options, nonRetryable: true });
  }
}

/** What to report for a task whose handler ended. */
export type Outcome =
  | { kind: "complete"; output: JsonObject }
  | {
      kind: "fail";
      error: string;
      nonRetryable: boolean;
      retryAfterMs: number | undefined;
      errorType?: string;
    };

// FailTaskRequest's limits: the error is 1-10,000 characters, retry_after at most 24 h. A
// longer value would get the report refused and the task would time out instead.
export const MAX_ERROR_CHARS = 10_000;
export const MAX_RETRY_AFTER_MS = 24 * 60 * 60 * 1000;

/** The handler's view of a task received from the server. */
export function toTaskInfo(task: Task, signal: AbortSignal): TaskInfo {
  return {
    token: task.taskToken,
    taskType: task.taskType,
    workflowId: task.workflowId,
    stepId: task.stepId,
    attempt: task.attempt,
    idempotencyKey: task.idempotencyKey,
    templateId: task.templateId,
    config: task.config ?? {},
    params: task.params ?? {},
    inputs: { ...task.inputs },
    upstream: { ...task.upstream },
    deadline: toDate(task.deadline),
    queueTime: toDate(task.queueTime),
    retriesLeft: task.retriesLeft,
    traceContext: { ...task.traceContext },
    traceparent: task.traceContext.traceparent,
    signal,
  };
}

/** A handler's return value: a JSON object completes the task, anything else fails it. */
export function outcomeOfValue(taskType: string, value: unknown): Outcome {
  if (!isPlainObject(value)) {
    return fail(
      `the handler of task type ${JSON.stringify(taskType)} returned ${describe(value)}, ` +
        "not a JSON object (the step's output is an object: return {...})",
      true,
    );
  }
  // Through JSON, as the output travels: undefined fields drop out, Dates become strings,
  // toJSON() is honoured. What JSON cannot hold (a bigint, a cycle) fails the task.
  let output: JsonValue;
  try {
    output = JSON.parse(JSON.stringify(value)) as JsonValue;
  } catch (error) {
    return fail(
      `the output of task type ${JSON.stringify(taskType)} is not JSON: ${messageOf(error)}`,
      true,
    );
  }
  return { kind: "complete", output: output as JsonObject };
}

/** A handler's thrown value: a failure, retryable unless the error says otherwise. */
export function outcomeOfError(error: unknown): Outcome {
  const fields = (typeof error === "object" && error !== null ? error : {}) as {
    nonRetryable?: unknown;
    retryAfterMs?: unknown;
    errorType?: unknown;
  };
  const nonRetryable = fields.nonRetryable === true;
  const errorType = typeof fields.errorType === "string" ? fields.errorType : "";
  let retryAfterMs: number | undefined;
  if (typeof fields.retryAfterMs === "number" && Number.isFinite(fields.retryAfterMs)) {
    retryAfterMs = Math.min(Math.max(fields.retryAfterMs, 0), MAX_RETRY_AFTER_MS);
  }
  return fail(errorText(error), nonRetryable, retryAfterMs, errorType);
}

/** The step's error text: a TaskError's own words; "Name: message" for other errors. */
export function errorText(error: unknown): string {
  let text: string;
  if (error instanceof TaskError) {
    text = error.message || error.name;
  } else if (error instanceof Error) {
    text = error.message ? `${error.name}: ${error.message}` : error.name;
  } else {
    text = `thrown: ${describe(error)}`;
  }
  text = text.trim() || "the task failed";
  return text.length <= MAX_ERROR_CHARS ? text : `${text.slice(0, MAX_ERROR_CHARS - 1)}…`;
}

function fail(
  error: string,
  nonRetryable: boolean,
  retryAfterMs?: number,
  errorType = "",
): Outcome {
  return { kind: "fail", error, nonRetryable, retryAfterMs, errorType };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") {
    const name = (value as { constructor?: { name?: unknown } }).constructor?.name;
    return typeof name === "string" && name !== "" ? `a ${name}` : "an object";
  }
  if (typeof value === "string") {
    const shown = value.length > 80 ? `${value.slice(0, 80)}…` : value;
    return `a string (${JSON.stringify(shown)})`;
  }
  return `${typeof value} ${String(value)}`;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function toDate(timestamp: Timestamp | undefined): Date | undefined {
  return timestamp === undefined ? undefined : timestampDate(timestamp);
}
