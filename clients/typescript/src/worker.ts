// A worker: takes the tasks of "task" steps from sluice.v1.WorkerService and runs them with the
// handlers registered per task type.
//
// One StreamTasks stream brings the tasks, never more than the credits granted: `concurrency`
// when the stream opens, one more each time a task is done, so at most `concurrency` handlers
// run at once. Each task's handler starts as it arrives; a first HeartbeatTask a second later
// acknowledges it (extending its lease to the step's timeout) unless its result comes first,
// then heartbeats follow while the handler runs. Its result goes on the stream it came on, with
// the credit its slot frees, in one message the server answers with a TaskReport; when that
// stream is gone or half-closed (stop()), or ends before answering, by CompleteTask or FailTask.
// A heartbeat that says the run was cancelled, or a lease that is
// gone (FAILED_PRECONDITION / NOT_FOUND), aborts the handler's signal and nothing is reported.
// A broken stream is opened again after a backoff; the server hands the broken stream's
// unfinished tasks to other workers at once, so their handlers here are aborted too.

import { hostname } from "node:os";

import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, createClient, type Client } from "@connectrpc/connect";

import { fromConnectError, type SluiceError } from "./errors.js";
import {
  WorkerService,
  type StreamTasksRequestSchema,
  type Task,
  type TaskReport,
} from "./gen/sluice/v1/worker_service_pb.js";
import { RequestQueue } from "./queue.js";
import {
  outcomeOfError,
  outcomeOfValue,
  toTaskInfo,
  type Outcome,
  type TaskInfo,
} from "./task.js";
import { TaskLease, abortReason, reasonText, sleep, type LeaseSettings } from "./task_lease.js";
import { openConnection, type Connection, type ConnectionOptions } from "./transport.js";

/** Runs one task: resolves to the step's output, a JSON object; throwing fails the task. */
export type TaskHandler = (task: TaskInfo) => object | Promise<object>;

/** Fields of a log line: the task's identity, an error's code and message. Never the token. */
export type LogFields = Record<string, string | number | boolean | undefined>;

/** Where the worker's log lines go; `console` will do. */
export interface WorkerLogger {
  debug(message: string, fields: LogFields): void;
  info(message: string, fields: LogFields): void;
  warn(message: string, fields: LogFields): void;
  error(message: string, fields: LogFields): void;
}

export interface WorkerOptions extends Omit<ConnectionOptions, "defaultTimeoutMs"> {
  /** Most tasks run at once (8), 1-1000: the credits the worker grants the server. */
  concurrency?: number;
  /** The worker's name in the server's logs and ListTaskQueues ("<hostname>-<pid>"). */
  workerId?: string;
  /** How often a running task is heartbeated, in ms (10,000): how soon a cancel is seen. */
  heartbeatIntervalMs?: number;
  /** Timeout of each heartbeat and report call, in ms (10,000). */
  callTimeoutMs?: number;
  /** First wait before opening a broken stream again, in ms (100); doubles after each try. */
  initialBackoffMs?: number;
  /** Longest wait between tries, in ms (5,000). */
  maxBackoffMs?: number;
  /** Called each time a StreamTasks stream opens (the first time, and after reconnects). */
  onStreamOpen?: () => void;
  /** Log lines; by default warnings and errors go to the console and the rest nowhere. */
  logger?: WorkerLogger;
}

type StreamRequest = MessageInitShape<typeof StreamTasksRequestSchema>;

/** A task the worker holds, from its arrival until its report is answered or it is given up. */
interface Held {
  readonly lease: TaskLease;
  /** The stream it came on. */
  readonly stream: number;
  /** Settles when the handler does (at once when it never started). */
  handlerSettled: Promise<unknown>;
  /** Its slot was given back (with its result on the stream): no credit when it is let go. */
  slotFree: boolean;
}

/** The StreamTasks stream while it is open: where credits are granted and results reported. */
interface OpenStream {
  /** Which stream, to tell whether a task came on it. */
  readonly id: number;
  readonly requests: RequestQueue<StreamRequest>;
  /**
   * Results reported on it, by task token, until their TaskReport comes: each settles with its
   * answer, or with undefined when the stream ends first (the result then goes by call).
   */
  readonly pending: Map<string, (answer: TaskReport | undefined) => void>;
}

// A stream broken with these is opened again; any other code (a bad token, a task type the
// server refuses) would fail the same way again, so run() rejects with it.
const RETRY_STREAM = new Set<Code>([
  Code.Unavailable,
  Code.Canceled,
  Code.DeadlineExceeded,
  Code.Aborted,
  Code.ResourceExhausted,
  Code.Internal,
  Code.Unknown,
]);

const DEFAULT_LOGGER: WorkerLogger = {
  debug: () => {},
  info: () => {},
  warn: (message, fields) => console.warn(`sluice worker: ${message}`, fields),
  error: (message, fields) => console.error(`sluice worker: ${message}`, fields),
};

/**
 * Serves "task" steps. Register a handler per task type, then `await worker.run()`; it resolves
 * once `stop()` has let the running tasks finish (or rejects when the server refuses the worker
 * for good, e.g. UNAUTHENTICATED).
 *
 * ```ts
 * const worker = new Worker({ baseUrl: "http://127.0.0.1:50051", concurrency: 4 });
 * worker.register("upper", async (task) => ({ text: String(task.config.text).toUpperCase() }));
 * process.once("SIGTERM", () => void worker.stop());
 * await worker.run();
 * ```
 */
export class Worker {
  private readonly handlers = new Map<string, TaskHandler>();
  private readonly connection: Connection;
  private readonly client: Client<typeof WorkerService>;
  private readonly concurrency: number;
  private readonly workerId: string;
  private readonly lease: LeaseSettings;
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly onStreamOpen: (() => void) | undefined;
  private readonly log: WorkerLogger;

  private running: Promise<void> | undefined;
  /** Aborted by stop(): no new stream, no more waiting out a backoff. */
  private readonly stopping = new AbortController();
  /** Aborted when stop()'s grace runs out: every handler, call and wait stops. */
  private readonly halt = new AbortController();
  // Whether a stream was open when the grace ran out (breaking it handed its tasks back).
  private handedBack = false;
  private graceTimer: NodeJS.Timeout | undefined;
  /** Undefined between streams. */
  private openStream: OpenStream | undefined;
  private readonly held = new Map<string, Held>();
  private readonly lifecycles = new Set<Promise<void>>();
  /**
   * Tasks taking a slot: held, or reported while their handler (ignoring its signal) runs; a
   * task whose result went on the stream gives its slot back then, with the message.
   */
  private busy = 0;

  constructor(options: WorkerOptions = {}) {
    this.concurrency = options.concurrency ?? 8;
    if (!Number.isInteger(this.concurrency) || this.concurrency < 1 || this.concurrency > 1000) {
      throw new RangeError(`Worker: concurrency must be 1-1000, not ${options.concurrency}`);
    }
    this.workerId = (options.workerId ?? `${hostname()}-${process.pid}`).slice(0, 200);
    this.initialBackoffMs = options.initialBackoffMs ?? 100;
    this.maxBackoffMs = options.maxBackoffMs ?? 5_000;
    this.onStreamOpen = options.onStreamOpen;
    this.log = options.logger ?? DEFAULT_LOGGER;
    this.lease = {
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? 10_000,
      callTimeoutMs: options.callTimeoutMs ?? 10_000,
      initialBackoffMs: this.initialBackoffMs,
      maxBackoffMs: this.maxBackoffMs,
      log: this.log,
    };
    this.connection = openConnection(options, "Worker");
    this.client = createClient(WorkerService, this.connection.transport);
  }

  /** Serve `taskType` with `handler`; before run(). Returns the worker, to chain calls. */
  register(taskType: string, handler: TaskHandler): this {
    if (this.running !== undefined) {
      throw new Error("Worker: register task types before run()");
    }
    if (taskType === "") {
      throw new TypeError("Worker: the task type is empty");
    }
    if (this.handlers.has(taskType)) {
      throw new Error(`Worker: task type ${JSON.stringify(taskType)} is registered already`);
    }
    this.handlers.set(taskType, handler);
    return this;
  }

  /** Take and run tasks until stop(); a worker runs once. */
  run(): Promise<void> {
    if (this.running !== undefined) {
      throw new Error("Worker: run() was called already");
    }
    if (this.handlers.size === 0 || this.handlers.size > 100) {
      throw new Error(`Worker: register 1-100 task types before run(), not ${this.handlers.size}`);
    }
    this.running = this.serveStreams();
    return this.running;
  }

  /**
   * Stop gracefully: take no more tasks (the stream is half-closed), let the running handlers
   * finish and report within `graceMs` (30,000), then abort the rest (their tasks go back to
   * the server at once, or, with no stream open, are reported failed). Resolves once run() has
   * returned.
   */
  async stop(graceMs = 30_000): Promise<void> {
    if (this.running === undefined) {
      this.running = Promise.resolve();
      this.connection.close();
      return;
    }
    if (!this.stopping.signal.aborted) {
      this.log.info("stopping", { workerId: this.workerId, running: this.held.size, graceMs });
      this.stopping.abort();
      // The half-close: the server sends no more tasks and ends the stream; results go by call.
      this.openStream?.requests.end();
      this.graceTimer = setTimeout(() => {
        // The server keeps a half-closed stream open until its tasks are reported: the halt
        // breaks it, which hands the tasks still running back at once, to the next worker.
        // Only when no stream is open are they reported failed (retryable).
        this.handedBack = this.openStream !== undefined;
        this.halt.abort(abortReason("the worker stopped before the task finished"));
      }, graceMs);
    }
    await this.running.catch(() => {});
    clearTimeout(this.graceTimer); // run() may have ended before stop() (a refused stream)
  }

  // --- the stream ---------------------------------------------------------------------------

  private async serveStreams(): Promise<void> {
    const taskTypes = [...this.handlers.keys()];
    let delayMs = this.initialBackoffMs;
    let fatal: SluiceError | undefined;
    let stream = 0;
    try {
      while (!this.stopping.signal.aborted) {
        stream += 1;
        const requests = new RequestQueue<StreamRequest>();
        const control = new AbortController();
        const onHalt = (): void => control.abort();
        this.halt.signal.addEventListener("abort", onHalt, { once: true });
        let opened = false;
        const open = (answered: boolean): void => {
          if (answered) delayMs = this.initialBackoffMs; // the server took it: a fresh backoff
          if (opened) return;
          opened = true;
          this.log.info("task stream open", {
            workerId: this.workerId,
            taskTypes: taskTypes.join(","),
          });
          this.onStreamOpen?.();
        };
        // The server may send its headers only with the first task: the first request written
        // to the connection (the stream asks for the next) is the earliest sign it is open.
        requests.onNext((count) => count === 2 && open(false));
        // Granted in the same tick as `requests` becomes the stream tasks grant credits to.
        const current: OpenStream = { id: stream, requests, pending: new Map() };
        this.openStream = current;
        requests.push({
          taskTypes,
          workerId: this.workerId,
          credits: this.concurrency - this.busy,
        });
        let failure: SluiceError | undefined;
        try {
          const responses = this.client.streamTasks(requests, {
            signal: control.signal,
            onHeader: () => open(true),
          });
          for await (const response of responses) {
            open(true);
            if (response.task !== undefined) this.take(response.task, stream);
            for (const answer of response.reports) this.answered(current, answer);
          }
        } catch (error) {
          failure = fromConnectError(error);
        } finally {
          requests.end();
          this.openStream = undefined;
          this.halt.signal.removeEventListener("abort", onHalt);
          // A result not answered may or may not have been recorded: it goes again by call,
          // which answers OK for a result recorded already.
          for (const settle of current.pending.values()) settle(undefined);
          current.pending.clear();
        }
        if (failure === undefined) {
          if (this.stopping.signal.aborted) break; // the end of our half-close
          this.log.info("the server ended the task stream; opening another", {
            workerId: this.workerId,
          });
        } else {
          // The server hands a broken stream's unfinished tasks to other workers at once.
          this.abandon(stream, `the task stream broke (${failure.codeName}: ${failure.message})`);
          if (this.stopping.signal.aborted) break;
          if (!RETRY_STREAM.has(failure.code)) {
            fatal = failure;
            this.log.error("the server refused the task stream", {
              workerId: this.workerId,
              code: failure.codeName,
              error: failure.message,
            });
            break;
          }
          this.log.warn("the task stream broke; opening it again", {
            workerId: this.workerId,
            code: failure.codeName,
            error: failure.message,
            delayMs,
          });
        }
        await sleep(delayMs, this.stopping.signal);
        delayMs = Math.min(delayMs * 2, this.maxBackoffMs);
      }
      // No more tasks come: those held finish (or the grace runs out and halts them).
      while (this.lifecycles.size > 0) {
        await Promise.all(this.lifecycles);
      }
    } finally {
      clearTimeout(this.graceTimer);
      this.connection.close();
      this.log.info("stopped", { workerId: this.workerId });
    }
    if (fatal !== undefined) throw fatal;
  }

  /** One more credit for the open stream, as a slot frees up. */
  private grant(): void {
    if (!this.stopping.signal.aborted) this.openStream?.requests.push({ credits: 1 });
  }

  /** The server's answer to a result reported on `current`: to the task waiting for it. */
  private answered(current: OpenStream, answer: TaskReport): void {
    const settle = current.pending.get(answer.taskToken);
    current.pending.delete(answer.taskToken);
    settle?.(answer);
  }

  /** Stop the handlers of the tasks that came on `stream`: their tokens are stale. */
  private abandon(stream: number, why: string): void {
    for (const held of this.held.values()) {
      if (held.stream === stream) held.lease.control.abort(abortReason(why));
    }
  }

  // --- one task -----------------------------------------------------------------------------

  private take(task: Task, stream: number): void {
    const fields = {
      taskType: task.taskType,
      workflowId: task.workflowId,
      stepId: task.stepId,
      attempt: task.attempt,
    };
    const control = new AbortController();
    const lease = new TaskLease(this.client, task, fields, control, this.halt.signal, this.lease);
    const held: Held = { lease, stream, handlerSettled: Promise.resolve(), slotFree: false };
    const onHalt = (): void => control.abort(this.halt.signal.reason);
    this.halt.signal.addEventListener("abort", onHalt, { once: true });
    this.held.set(task.taskToken, held);
    this.busy += 1;
    const lifecycle = this.serveTask(held)
      .catch((error: unknown) => {
        this.log.error("task handling failed", { ...fields, error: String(error) });
      })
      .finally(() => {
        this.held.delete(task.taskToken);
        this.lifecycles.delete(lifecycle);
        this.halt.signal.removeEventListener("abort", onHalt);
      });
    this.lifecycles.add(lifecycle);
    // The slot frees when the handler has settled too: one that ignores its aborted signal
    // still runs, and `concurrency` bounds the handlers running, not the tasks reported.
    void lifecycle
      .then(() => held.handlerSettled)
      .then(() => {
        if (held.slotFree) return; // given back with its result on the stream
        held.slotFree = true;
        this.busy -= 1;
        this.grant();
      });
  }

  private async serveTask(held: Held): Promise<void> {
    const { lease } = held;
    const { task, control } = lease;
    this.log.debug("task received", lease.fields);
    const handler = this.handlers.get(task.taskType);
    if (handler === undefined) {
      // The server sends only the types asked for; a report beats a timeout all the same.
      const error = `this worker has no handler for task type ${JSON.stringify(task.taskType)}`;
      const retryAfterMs = undefined;
      await this.report(held, { kind: "fail", error, nonRetryable: false, retryAfterMs });
      return;
    }
    const outcome = Promise.resolve()
      .then(() => handler(toTaskInfo(task, control.signal)))
      .then(
        (value) => outcomeOfValue(task.taskType, value),
        (error: unknown) => outcomeOfError(error),
      );
    held.handlerSettled = outcome;
    const heartbeats = lease.heartbeat(lease.firstHeartbeatMs());
    const stopped = new Promise<undefined>((done) => {
      if (control.signal.aborted) done(undefined);
      control.signal.addEventListener("abort", () => done(undefined), { once: true });
    });
    const result = await Promise.race([outcome, stopped]);
    heartbeats.stop();
    if (result === undefined || control.signal.aborted) {
      if (this.halt.signal.aborted && control.signal.reason === this.halt.signal.reason) {
        if (this.handedBack) {
          this.log.info("task handed back to the server: the worker stopped", lease.fields);
        } else {
          await lease.reportStopped();
        }
        return;
      }
      this.log.info("task handler stopped; nothing reported", {
        ...lease.fields,
        reason: reasonText(control.signal.reason),
      });
      return;
    }
    await this.report(held, result);
  }

  /**
   * Reports a task whose handler settled: on the stream it came on while that is open and not
   * half-closed, in one message with the credit for the slot it frees, then waits for the
   * server's answer (so stop() waits for it too); by call when that stream is gone, or ends
   * before answering.
   */
  private async report(held: Held, outcome: Outcome): Promise<void> {
    const { lease } = held;
    const current = this.openStream;
    // A half-closed stream's queue takes nothing more: push() says so.
    const sent =
      current !== undefined &&
      current.id === held.stream &&
      fitsStream(outcome) &&
      current.requests.push({ credits: 1, ...lease.streamResult(outcome) });
    if (!sent) {
      await lease.report(outcome);
      return;
    }
    held.slotFree = true;
    this.busy -= 1;
    const answer = await new Promise<TaskReport | undefined>((settle) =>
      current.pending.set(lease.task.taskToken, settle),
    );
    if (answer === undefined) {
      this.log.info("task stream ended unanswered; reporting the result by call", lease.fields);
      await lease.report(outcome);
      return;
    }
    await lease.answered(outcome, answer);
  }
}

// A result larger than this goes by call: a message over the server's limit (4 MiB unless set
// otherwise) would break the stream and hand back every task it holds, where a call fails
// alone. The server refuses step outputs over 1 MiB anyway, unless set otherwise.
const STREAM_RESULT_BYTES = 1024 * 1024;

function fitsStream(outcome: Outcome): boolean {
  if (outcome.kind !== "complete") return true; // an error is at most 10,000 characters
  // JSON's length in UTF-16 units: at most its UTF-8 bytes, about the message's size.
  return JSON.stringify(outcome.output).length <= STREAM_RESULT_BYTES;
}
