// The TypeScript worker against a live Python server: task steps of runs made with the
// WorkflowClient are served by a Worker in this process. Tests wait on what the handlers and
// the server say (promises settled by handlers, the server's queue counts), never on sleeps.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import {
  InvalidArgumentError,
  NonRetryableError,
  StepStatus,
  TaskError,
  Worker,
  WorkerService,
  WorkflowClient,
  WorkflowStatus,
  type TaskInfo,
  type TemplateLike,
  type WorkerOptions,
  type Workflow,
} from "../src/index.js";
import { ServerProcess } from "./support/server.js";
import { Lines, deferred, within } from "./support/waiting.js";

let server: ServerProcess;
let client: WorkflowClient;
let queues: Client<typeof WorkerService>;

before(async () => {
  server = await new ServerProcess().start();
  client = new WorkflowClient({ baseUrl: server.baseUrl });
  queues = createClient(WorkerService, createGrpcTransport({ baseUrl: server.baseUrl }));
});

after(async () => {
  client?.close();
  if (server === undefined) return;
  const code = await server.stop();
  assert.equal(code, 0, `server exit code ${code}:\n${server.log}`);
});

/** The worker's unary calls by method name ("CompleteTask", ...), as an interceptor sees them. */
function recordCalls(calls: string[]): Interceptor {
  return (next) => (request) => {
    if (!request.stream) calls.push(request.method.name);
    return next(request);
  };
}

/** A worker on the test server, its stream open before this resolves. */
async function startWorker(
  options: WorkerOptions,
  handlers: Record<string, (task: TaskInfo) => object | Promise<object>>,
): Promise<{ worker: Worker; running: Promise<void> }> {
  const open = deferred();
  const worker = new Worker({
    baseUrl: server.baseUrl,
    heartbeatIntervalMs: 200,
    onStreamOpen: () => open.resolve(),
    ...options,
  });
  for (const [taskType, handler] of Object.entries(handlers)) worker.register(taskType, handler);
  const running = worker.run();
  await within(10_000, "the worker's stream", open.promise);
  return { worker, running };
}

async function runTemplate(template: TemplateLike, params = {}): Promise<Workflow> {
  const created = await client.createWorkflow(template, params);
  return client.executeWorkflow(created.id, { wait: true, timeoutMs: 30_000 });
}

/** Resolves after the run's terminal event. */
async function watchToEnd(id: string): Promise<void> {
  for await (const event of client.watch(id)) {
    void event;
  }
}

function step(run: Workflow, id: string) {
  const found = run.steps.find((s) => s.stepId === id);
  assert.ok(found, `step ${id} in ${run.steps.map((s) => s.stepId)}`);
  return found;
}

/** The server's counts of one task type's tasks, once `ready` says they are as awaited. */
async function queueOf(taskType: string, ready: (queued: number, active: number) => boolean) {
  for (;;) {
    const { queues: all } = await queues.listTaskQueues({});
    const queue = all.find((q) => q.taskType === taskType);
    const [queued, active] = [queue?.queued ?? 0, queue?.active ?? 0];
    if (ready(queued, active)) return { queued, active };
    await new Promise((done) => setTimeout(done, 20)); // the server has no watch for queues
  }
}

describe("a worker serving task steps", () => {
  test("the handler's output completes the step and feeds the next one", async () => {
    const seen: TaskInfo[] = [];
    const calls: string[] = [];
    const { worker, running } = await startWorker(
      { interceptors: [recordCalls(calls)] },
      {
        "ts-upper": (task) => {
          seen.push(task);
          return { text: String(task.config["text"]).toUpperCase() };
        },
      },
    );
    try {
      const run = await runTemplate(
        {
          id: "ts-shout",
          name: "shout",
          params: [{ name: "text", required: true }],
          steps: [
            {
              id: "shout",
              type: "task",
              taskType: "ts-upper",
              config: { text: "{{ params.text }}" },
            },
            {
              id: "show",
              type: "transform",
              dependencies: ["shout"],
              config: {
                transformation: "format",
                format: "text",
                inputData: "{{ steps.shout.text }}",
              },
            },
          ],
        },
        { text: "hello worker" },
      );
      assert.equal(run.status, WorkflowStatus.COMPLETED, run.error);
      assert.deepEqual(step(run, "shout").output, { text: "HELLO WORKER" });
      assert.match(String(step(run, "show").output?.["result"]), /HELLO WORKER/);

      assert.equal(seen.length, 1);
      const task = seen[0]!;
      assert.equal(task.taskType, "ts-upper");
      assert.equal(task.workflowId, run.id);
      assert.equal(task.stepId, "shout");
      assert.equal(task.attempt, 1);
      assert.equal(task.idempotencyKey, `${run.id}/shout`);
      assert.deepEqual(task.params, { text: "hello worker" });
      assert.ok(task.deadline instanceof Date && task.deadline.getTime() > Date.now() - 60_000);
      assert.equal(task.signal.aborted, false);
      // The result went on the stream, and the server's answer there was OK.
      assert.ok(!calls.includes("CompleteTask") && !calls.includes("FailTask"), `${calls}`);
    } finally {
      await worker.stop();
      await running;
    }
  });

  test("a NonRetryableError fails the step at once, whatever its retry policy", async () => {
    let calls = 0;
    const { worker, running } = await startWorker(
      {},
      {
        "ts-refuse": () => {
          calls += 1;
          throw new NonRetryableError("the config names no such account");
        },
      },
    );
    try {
      const run = await runTemplate({
        id: "ts-refuse",
        name: "refuse",
        steps: [
          {
            id: "a",
            type: "task",
            taskType: "ts-refuse",
            retry: { maxAttempts: 3, initialBackoff: "0.01s" },
          },
        ],
      });
      assert.equal(run.status, WorkflowStatus.FAILED);
      const a = step(run, "a");
      assert.equal(a.status, StepStatus.FAILED);
      assert.equal(a.attempt, 1);
      assert.match(a.error, /the config names no such account/);
      assert.equal(calls, 1);
    } finally {
      await worker.stop();
      await running;
    }
  });

  test("an error type the retry policy lists fails the step at once; others retry", async () => {
    const seen: string[] = [];
    const { worker, running } = await startWorker(
      {},
      {
        "ts-charge": (task) => {
          const kind = task.attempt === 1 ? "Busy" : "CardDeclined";
          seen.push(kind);
          throw new TaskError(`attempt ${task.attempt}: ${kind}`, { errorType: kind });
        },
      },
    );
    try {
      const run = await runTemplate({
        id: "ts-charge",
        name: "charge",
        steps: [
          {
            id: "a",
            type: "task",
            taskType: "ts-charge",
            retry: {
              maxAttempts: 5,
              initialBackoff: "0.01s",
              nonRetryableErrorTypes: ["CardDeclined"],
            },
          },
        ],
      });
      assert.equal(run.status, WorkflowStatus.FAILED);
      const a = step(run, "a");
      // Busy was retried; CardDeclined ended the step with three attempts left.
      assert.deepEqual(seen, ["Busy", "CardDeclined"]);
      assert.equal(a.attempt, 2);
      assert.match(a.error, /attempt 2: CardDeclined/);
    } finally {
      await worker.stop();
      await running;
    }
  });

  test("an error is retried; a non-object output fails the step", async () => {
    const attempts: number[] = [];
    const { worker, running } = await startWorker(
      {},
      {
        "ts-flaky": (task) => {
          attempts.push(task.attempt);
          if (task.attempt === 1) throw new Error("first try fails");
          return { attempt: task.attempt };
        },
        "ts-bad-output": () => ["not", "an", "object"],
      },
    );
    try {
      const retried = await runTemplate({
        id: "ts-flaky",
        name: "flaky",
        steps: [
          {
            id: "a",
            type: "task",
            taskType: "ts-flaky",
            retry: { maxAttempts: 2, initialBackoff: "0.01s" },
          },
        ],
      });
      assert.equal(retried.status, WorkflowStatus.COMPLETED, retried.error);
      assert.deepEqual(attempts, [1, 2]);
      assert.deepEqual(step(retried, "a").output, { attempt: 2 });

      const bad = await runTemplate({
        id: "ts-bad-output",
        name: "bad output",
        steps: [
          {
            id: "a",
            type: "task",
            taskType: "ts-bad-output",
            retry: { maxAttempts: 3, initialBackoff: "0.01s" },
          },
        ],
      });
      assert.equal(bad.status, WorkflowStatus.FAILED);
      assert.equal(step(bad, "a").attempt, 1, "not retried");
      assert.match(step(bad, "a").error, /returned an array, not a JSON object/);
    } finally {
      await worker.stop();
      await running;
    }
  });

  test("never more than `concurrency` handlers at once", async () => {
    const concurrency = 2;
    const steps = 5;
    let now = 0;
    const atStart: number[] = [];
    const gate = deferred();
    const full = deferred();
    const { worker, running } = await startWorker(
      { concurrency },
      {
        "ts-hold": async () => {
          now += 1;
          atStart.push(now);
          if (now === concurrency) full.resolve();
          await gate.promise;
          now -= 1;
          return {};
        },
      },
    );
    try {
      const created = await client.createWorkflow({
        id: "ts-hold",
        name: "hold",
        steps: Array.from({ length: steps }, (_, i) => ({
          id: `s${i}`,
          type: "task",
          taskType: "ts-hold",
        })),
      });
      await client.executeWorkflow(created.id);
      // The server holds back what the worker has no credit for: 2 taken, 3 waiting.
      const counts = await within(
        10_000,
        "2 tasks taken and 3 queued",
        queueOf("ts-hold", (queued, active) => active === concurrency && queued === 3),
      );
      assert.deepEqual(counts, { queued: 3, active: 2 });
      await within(10_000, "2 handlers running", full.promise);
      assert.equal(now, concurrency);
      gate.resolve();
      await within(20_000, "the run to end", watchToEnd(created.id));
      const finished = await client.getWorkflow(created.id);
      assert.equal(finished.status, WorkflowStatus.COMPLETED, finished.error);
      assert.equal(atStart.length, steps);
      assert.ok(
        atStart.every((n) => n <= concurrency),
        `handlers running at each start: ${atStart}`,
      );
    } finally {
      gate.resolve();
      await worker.stop();
      await running;
    }
  });

  test("cancelling the run aborts the handler's signal, and nothing is reported", async () => {
    const started = deferred<TaskInfo>();
    const aborted = deferred<unknown>();
    const lines = new Lines();
    const { worker, running } = await startWorker(
      { logger: lines.logger() },
      {
        "ts-wait": (task) =>
          new Promise((_, reject) => {
            started.resolve(task);
            task.signal.addEventListener("abort", () => {
              aborted.resolve(task.signal.reason);
              reject(task.signal.reason as Error);
            });
          }),
      },
    );
    try {
      const created = await client.createWorkflow({
        id: "ts-wait",
        name: "wait",
        steps: [{ id: "a", type: "task", taskType: "ts-wait" }],
      });
      await client.executeWorkflow(created.id);
      const task = await within(10_000, "the handler to start", started.promise);
      await client.cancelWorkflow(created.id, "no longer needed");
      const reason = await within(10_000, "the handler's signal to abort", aborted.promise);
      assert.match(String((reason as Error).message), /cancelled/);
      assert.ok(task.signal.aborted);
      await within(5_000, "the log line", lines.wait(/nothing reported/));
      const run = await client.getWorkflow(created.id);
      assert.equal(run.status, WorkflowStatus.CANCELLED);
      assert.equal(step(run, "a").status, StepStatus.CANCELLED);
      assert.ok(!lines.seen.some((line) => /task failed/.test(line.message)));
    } finally {
      await worker.stop(1_000);
      await running;
    }
  });

  test("stop() takes no more tasks, lets the running one finish and report", async () => {
    const started = deferred();
    const gate = deferred();
    // One slot: the second task can only come on a credit granted after stop(), which never is.
    const calls: string[] = [];
    const { worker, running } = await startWorker(
      { concurrency: 1, interceptors: [recordCalls(calls)] },
      {
        "ts-slow": async (task) => {
          started.resolve();
          await gate.promise;
          return { done: task.stepId };
        },
      },
    );
    const created = await client.createWorkflow({
      id: "ts-slow",
      name: "slow",
      steps: [{ id: "a", type: "task", taskType: "ts-slow" }],
    });
    await client.executeWorkflow(created.id);
    await within(10_000, "the handler to start", started.promise);

    let stopped = false;
    const stopping = worker.stop(20_000).then(() => (stopped = true));
    // The stream is half-closed: a second run's task waits for another worker.
    const second = await client.createWorkflow({
      id: "ts-slow",
      name: "slow",
      steps: [{ id: "a", type: "task", taskType: "ts-slow" }],
    });
    await client.executeWorkflow(second.id);
    await within(
      10_000,
      "the second task queued",
      queueOf("ts-slow", (queued, active) => queued === 1 && active === 1),
    );
    assert.equal(stopped, false, "stop() waits for the running handler");

    gate.resolve();
    // Within 10 s of a 20 s grace: the server ended the half-closed stream, as it should.
    await within(10_000, "stop() to return", stopping);
    await running;
    await within(10_000, "the first run to end", watchToEnd(created.id));
    const first = await client.getWorkflow(created.id);
    assert.equal(first.status, WorkflowStatus.COMPLETED, first.error);
    assert.deepEqual(step(first, "a").output, { done: "a" });
    assert.ok(calls.includes("CompleteTask"), "the half-closed stream takes no result");
    assert.deepEqual(
      await queueOf("ts-slow", () => true),
      { queued: 1, active: 0 },
      "the second task was left for another worker",
    );
  });

  test("stop() aborts the handlers still running when the grace runs out and hands their tasks back", async () => {
    const started = deferred<TaskInfo>();
    const lines = new Lines();
    const { worker, running } = await startWorker(
      { logger: lines.logger() },
      {
        "ts-stuck": (task) => {
          started.resolve(task);
          return new Promise(() => {}); // ignores its signal, never settles
        },
      },
    );
    const created = await client.createWorkflow({
      id: "ts-stuck",
      name: "stuck",
      steps: [{ id: "a", type: "task", taskType: "ts-stuck" }],
    });
    await client.executeWorkflow(created.id);
    const task = await within(10_000, "the handler to start", started.promise);
    await within(5_000, "stop() to return after its grace", worker.stop(100));
    await running;
    assert.ok(task.signal.aborted);
    assert.match((task.signal.reason as Error).message, /the worker stopped/);
    assert.ok(lines.seen.some((line) => /handed back/.test(line.message)));
    // The task waits for the next worker at once, as the same attempt: not at its timeout.
    await within(10_000, "the task to be queued again", queueOf("ts-stuck", (q, a) => q === 1 && a === 0));
    const run = await client.getWorkflow(created.id);
    assert.equal(run.status, WorkflowStatus.RUNNING);
    assert.equal(run.steps[0]?.attempt, 1);
    await client.cancelWorkflow(created.id); // no worker will come for it
  });

  test("a stream the server refuses for good rejects run() with the typed error", async () => {
    const worker = new Worker({ baseUrl: server.baseUrl, logger: new Lines().logger() });
    worker.register("not a task type!", () => ({}));
    await assert.rejects(within(10_000, "run() to reject", worker.run()), (error) => {
      assert.ok(error instanceof InvalidArgumentError);
      assert.equal(error.violations[0]?.field, "task_types[0]");
      return true;
    });
    await within(1_000, "stop() after run() ended", worker.stop());
  });

  test("a task past the step's timeout loses its lease: the handler is aborted", async () => {
    const started = deferred();
    const aborted = deferred<unknown>();
    const lines = new Lines();
    const { worker, running } = await startWorker(
      { logger: lines.logger() },
      {
        "ts-late": (task) =>
          new Promise((_, reject) => {
            started.resolve();
            task.signal.addEventListener("abort", () => {
              aborted.resolve(task.signal.reason);
              reject(task.signal.reason as Error);
            });
          }),
      },
    );
    try {
      const created = await client.createWorkflow({
        id: "ts-late",
        name: "late",
        steps: [{ id: "a", type: "task", taskType: "ts-late", timeout: "1s" }],
      });
      await client.executeWorkflow(created.id);
      await within(10_000, "the handler to start", started.promise);
      const reason = await within(10_000, "the handler's signal to abort", aborted.promise);
      assert.match((reason as Error).message, /lease is gone/);
      await within(10_000, "the run to end", watchToEnd(created.id));
      const run = await client.getWorkflow(created.id);
      assert.equal(run.status, WorkflowStatus.FAILED);
      assert.match(step(run, "a").error, /did not finish the task within 1s/);
      assert.ok(!lines.seen.some((line) => /task failed/.test(line.message)), "nothing reported");
    } finally {
      await worker.stop(1_000);
      await running;
    }
  });
});

describe("a worker of a server that traces", () => {
  test("each task carries its step attempt's span, in the run's trace", async () => {
    // The server's own spans go to its stdout, which the test ignores; its log names traces.
    const traced = await new ServerProcess({ OTEL_TRACES_EXPORTER: "console" }).start();
    const tracedClient = new WorkflowClient({ baseUrl: traced.baseUrl });
    const seen = deferred<TaskInfo>();
    const open = deferred();
    const worker = new Worker({ baseUrl: traced.baseUrl, onStreamOpen: () => open.resolve() });
    worker.register("ts-traced", (task) => {
      seen.resolve(task);
      return {};
    });
    const running = worker.run();
    try {
      await within(10_000, "the worker's stream", open.promise);
      const created = await tracedClient.createWorkflow({
        id: "ts-traced",
        name: "traced",
        steps: [{ id: "a", type: "task", taskType: "ts-traced" }],
      });
      const run = await tracedClient.executeWorkflow(created.id, { wait: true, timeoutMs: 30_000 });
      assert.equal(run.status, WorkflowStatus.COMPLETED, run.error);
      const task = await seen.promise;
      const logged = traced.log
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line) as Record<string, unknown>)
        .find((line) => line["message"] === "workflow created" && line["run_id"] === created.id);
      assert.ok(logged, `the run's creation in the log:\n${traced.log}`);
      const traceId = String(logged["trace_id"]);
      assert.match(task.traceparent ?? "", new RegExp(`^00-${traceId}-[0-9a-f]{16}-03$`));
      assert.deepEqual(Object.keys(task.traceContext), ["traceparent"]);
      assert.equal(task.traceContext["traceparent"], task.traceparent);
    } finally {
      await worker.stop(1_000);
      await running;
      tracedClient.close();
      assert.equal(await traced.stop(), 0, traced.log);
    }
  });
});
