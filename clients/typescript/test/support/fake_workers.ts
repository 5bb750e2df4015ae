// A scripted WorkerService on a loopback HTTP/2 port, for the worker's tests of what the real
// server cannot be made to do on cue: leave a result reported on the stream unanswered, refuse
// one, break the stream while results wait for their answers. It keeps the contract's rules the
// worker relies on (never more tasks than credits; each message's results answered together, in
// one response; a half-closed stream ends OK once every task sent on it has a result) and
// records every message and call.

import { createServer, type Http2Server, type ServerHttp2Session } from "node:http2";
import type { AddressInfo } from "node:net";

import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";

import {
  TaskSchema,
  WorkerService,
  type CompleteTaskRequest,
  type FailTaskRequest,
  type StreamTasksRequest,
  type StreamTasksResponseSchema,
  type Task,
  type TaskReport,
} from "../../src/index.js";

type Response = MessageInitShape<typeof StreamTasksResponseSchema>;

/** One StreamTasks call as the fake saw it. */
export class StreamRecord {
  /** Every message the worker sent on it, in order. */
  readonly requests: StreamTasksRequest[] = [];
  /** Tokens of the tasks sent on it. */
  readonly sent: string[] = [];
  /** The answers sent on it, to results reported on it. */
  readonly answers: Omit<TaskReport, "$typeName">[] = [];
  halfClosed = false;
  broken = false;
  ended = false;
  /** Credits granted and not yet spent. */
  available = 0;

  /** The messages that carried results. */
  get results(): StreamTasksRequest[] {
    return this.requests.filter((r) => r.completed.length > 0 || r.failed.length > 0);
  }
}

/** How a result is answered: a code (0: recorded) and message, or, on the stream, never. */
export type Answer = { code: Code | 0; message: string } | "never";

/** A task for the fake's queue: `token` names it, its run and its step. */
export function task(token: string, taskType = "t"): Task {
  return create(TaskSchema, {
    taskToken: token,
    taskType,
    workflowId: `wf-${token}`,
    stepId: "a",
    attempt: 1,
    idempotencyKey: `wf-${token}/a`,
    deadline: timestampFromMs(Date.now() + 60_000),
  });
}

export class FakeWorkerService {
  baseUrl = "";
  /** Tasks not yet sent, in order. */
  readonly queue: Task[] = [];
  readonly streams: StreamRecord[] = [];
  /** CompleteTask and FailTask calls, and the tokens of HeartbeatTask calls. */
  readonly completeCalls: CompleteTaskRequest[] = [];
  readonly failCalls: FailTaskRequest[] = [];
  readonly heartbeats: string[] = [];
  /** How results reported on the stream are answered, by token; OK unless set. */
  readonly streamAnswers = new Map<string, Answer>();
  /** How CompleteTask and FailTask answer, by token; OK unless set ("never" is OK here). */
  readonly callAnswers = new Map<string, Answer>();
  /** Tokens that got a result, on a stream or by call. */
  private readonly resulted = new Set<string>();
  private readonly waiters = new Set<() => void>();
  private readonly sessions = new Set<ServerHttp2Session>();
  private server: Http2Server | undefined;

  async start(): Promise<this> {
    const handler = connectNodeAdapter({
      routes: (router) =>
        router.service(WorkerService, {
          streamTasks: (requests, context) => this.streamTasks(requests, context),
          completeTask: (request) => {
            this.completeCalls.push(request);
            return this.callResult(request.taskToken, {});
          },
          failTask: (request) => {
            this.failCalls.push(request);
            return this.callResult(request.taskToken, {});
          },
          heartbeatTask: (request) => {
            this.heartbeats.push(request.taskToken);
            this.changed();
            return { cancelled: false };
          },
        }),
    });
    const server = createServer(handler);
    server.on("session", (session) => {
      this.sessions.add(session);
      session.once("close", () => this.sessions.delete(session));
    });
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
    this.server = server;
    this.baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    for (const session of this.sessions) session.destroy();
    await new Promise<void>((done) => server.close(() => done()));
  }

  // --- what tests do ------------------------------------------------------------------------

  add(...tasks: Task[]): void {
    this.queue.push(...tasks);
    this.changed();
  }

  /** Abort every open stream with UNAVAILABLE, as a server going away would. */
  breakStreams(): void {
    for (const stream of this.streams) if (!stream.ended) stream.broken = true;
    this.changed();
  }

  /** Resolves once `ready()` holds (checked on every change), or rejects after `timeoutMs`. */
  async until(what: string, ready: () => boolean, timeoutMs = 5_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs);
    });
    try {
      await Promise.race([this.wait(ready), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  // --- the service --------------------------------------------------------------------------

  private async *streamTasks(
    requests: AsyncIterable<StreamTasksRequest>,
    context: HandlerContext,
  ): AsyncIterable<Response> {
    const record = new StreamRecord();
    this.streams.push(record);
    const outbox: Response[] = [];
    const onAbort = (): void => this.changed();
    context.signal.addEventListener("abort", onAbort);
    void this.read(requests, record, outbox);
    const canSend = (): boolean =>
      !record.halfClosed && record.available > 0 && this.queue.length > 0;
    const done = (): boolean =>
      record.halfClosed && record.sent.every((token) => this.resulted.has(token));
    try {
      for (;;) {
        await this.wait(
          () =>
            record.broken || context.signal.aborted || outbox.length > 0 || canSend() || done(),
        );
        if (record.broken) throw new ConnectError("broken by the fake", Code.Unavailable);
        if (context.signal.aborted) return;
        const next = outbox.shift();
        if (next !== undefined) {
          yield next;
        } else if (canSend()) {
          const sent = this.queue.shift()!;
          record.available -= 1;
          record.sent.push(sent.taskToken);
          yield { task: sent };
        } else {
          return; // half-closed, and every task sent has a result: the stream ends OK
        }
        this.changed();
      }
    } finally {
      record.ended = true;
      context.signal.removeEventListener("abort", onAbort);
      this.changed();
    }
  }

  /** The worker's messages: credits, and results answered together in one response. */
  private async read(
    requests: AsyncIterable<StreamTasksRequest>,
    record: StreamRecord,
    outbox: Response[],
  ): Promise<void> {
    try {
      for await (const request of requests) {
        record.requests.push(request);
        record.available += request.credits;
        const tokens = [
          ...request.completed.map((r) => r.taskToken),
          ...request.failed.map((r) => r.taskToken),
        ];
        const reports = [];
        for (const token of tokens) {
          this.resulted.add(token);
          const answer = this.streamAnswers.get(token) ?? { code: 0, message: "" };
          if (answer !== "never") reports.push({ taskToken: token, ...answer });
        }
        if (reports.length > 0) {
          record.answers.push(...reports);
          outbox.push({ reports });
        }
        this.changed();
      }
      record.halfClosed = true;
    } catch {
      // The stream broke: the handler ends it.
    } finally {
      this.changed();
    }
  }

  private callResult<T>(token: string, response: T): T {
    this.resulted.add(token);
    this.changed();
    const answer = this.callAnswers.get(token);
    if (answer !== undefined && answer !== "never" && answer.code !== 0) {
      throw new ConnectError(answer.message, answer.code);
    }
    return response;
  }

  private changed(): void {
    const waiting = [...this.waiters];
    this.waiters.clear();
    for (const wake of waiting) wake();
  }

  private async wait(ready: () => boolean): Promise<void> {
    while (!ready()) await new Promise<void>((wake) => this.waiters.add(wake));
  }
}
