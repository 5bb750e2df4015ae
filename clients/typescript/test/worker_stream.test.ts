// The worker's results on its StreamTasks stream, against the scripted server of
// support/fake_workers.ts: a result and the credit it frees in one message, answered by a
// TaskReport; a refused answer handled as the calls' errors are; a result left unanswered when
// the stream breaks or ends, and one finished after stop(), reported by call. Each test waits on
// what the fake or the worker's log says, with a deadline, never on sleeps.

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, test } from "node:test";

import { durationMs } from "@bufbuild/protobuf/wkt";

import {
  Code,
  TaskError,
  Worker,
  type StreamTasksRequest,
  type TaskHandler,
  type WorkerOptions,
} from "../src/index.js";
import { FakeWorkerService, task, type StreamRecord } from "./support/fake_workers.js";
import { Lines, deferred, within } from "./support/waiting.js";

// Each wait has its own deadline (5 s); this bounds a test that fails some other way.
const LIMIT = { timeout: 15_000 };

let fake: FakeWorkerService;
let lines: Lines;
/** Workers a test started: stopped after it too, should it fail before it stops them. */
let workers: { worker: Worker; running: Promise<void> }[] = [];

beforeEach(async () => {
  fake = await new FakeWorkerService().start();
  lines = new Lines();
  workers = [];
});

afterEach(async () => {
  for (const { worker, running } of workers) {
    await worker.stop(100);
    await running.catch(() => {});
  }
  await fake.stop();
});

/** A worker on the fake serving task type "t" with `handler`, its first stream open. */
async function startWorker(
  handler: TaskHandler,
  options: WorkerOptions = {},
): Promise<{ worker: Worker; running: Promise<void> }> {
  const open = deferred();
  const worker = new Worker({
    baseUrl: fake.baseUrl,
    workerId: "w-1",
    concurrency: 1,
    initialBackoffMs: 10,
    maxBackoffMs: 50,
    logger: lines.logger(),
    onStreamOpen: () => open.resolve(),
    ...options,
  });
  worker.register("t", handler);
  const running = worker.run();
  workers.push({ worker, running });
  await within(5_000, "the worker's stream", open.promise);
  return { worker, running };
}

async function stopWorker(worker: Worker, running: Promise<void>): Promise<void> {
  await within(5_000, "stop() to return", worker.stop(5_000));
  await running;
}

/** A stream message, as plain fields to compare. */
function shape(request: StreamTasksRequest): object {
  return {
    credits: request.credits,
    completed: request.completed.map((r) => ({ token: r.taskToken, output: r.output })),
    failed: request.failed.map((r) => ({
      token: r.taskToken,
      error: r.error,
      nonRetryable: r.nonRetryable,
      retryAfterMs: r.retryAfter === undefined ? undefined : durationMs(r.retryAfter),
    })),
  };
}

/** The worker's first stream, once the fake has it. */
async function firstStream(): Promise<StreamRecord> {
  await fake.until("the stream", () => fake.streams.length > 0);
  return fake.streams[0]!;
}

describe("results on the stream", () => {
  test("each result goes with the credit it frees, in one message; no call", LIMIT, async () => {
    fake.add(task("a"), task("b"), task("c"));
    const { worker, running } = await startWorker(
      (info) => {
        if (info.token === "c") throw new TaskError("busy", { retryAfterMs: 1500 });
        return { done: info.token };
      },
      { concurrency: 2 },
    );
    const stream = await firstStream();
    await fake.until("three answers", () => stream.answers.length === 3);
    await stopWorker(worker, running);

    assert.equal(fake.completeCalls.length, 0, "no CompleteTask call");
    assert.equal(fake.failCalls.length, 0, "no FailTask call");
    const [first, ...rest] = stream.requests;
    assert.deepEqual(first?.taskTypes, ["t"]);
    assert.equal(first?.workerId, "w-1");
    assert.equal(first?.credits, 2, "the first message grants `concurrency`");
    // Then one message per task, no credit on its own: the two free slots' tasks first, in
    // either order, then the one their credits let the server send.
    const results = rest.map(shape);
    assert.equal(results.length, 3, JSON.stringify(results));
    const done = (token: string): object => ({
      credits: 1,
      completed: [{ token, output: { done: token } }],
      failed: [],
    });
    assert.deepEqual(
      results.slice(0, 2).map((r) => JSON.stringify(r)).sort(),
      [JSON.stringify(done("a")), JSON.stringify(done("b"))],
    );
    assert.deepEqual(results[2], {
      credits: 1,
      completed: [],
      failed: [{ token: "c", error: "busy", nonRetryable: false, retryAfterMs: 1500 }],
    });
    assert.ok(stream.halfClosed && stream.ended, "stop() half-closed it and it ended");
    assert.ok(!lines.seen.some((line) => /by call/.test(line.message)));
  });

  test("a result unanswered when the stream breaks goes again by CompleteTask", LIMIT, async () => {
    fake.add(task("a"));
    fake.streamAnswers.set("a", "never");
    const { worker, running } = await startWorker(() => ({ shout: "A" }));
    const stream = await firstStream();
    await fake.until("the result on the stream", () => stream.results.length === 1);
    assert.equal(fake.completeCalls.length, 0, "nothing by call while the answer is awaited");

    fake.breakStreams();
    await fake.until("the CompleteTask call", () => fake.completeCalls.length === 1);
    await fake.until("a second stream", () => fake.streams.length === 2);
    await lines.wait(/task stream ended unanswered/);
    const second = fake.streams[1]!;
    await fake.until("the second stream's first message", () => second.requests.length > 0);
    await stopWorker(worker, running);

    const [call] = fake.completeCalls;
    assert.equal(call?.taskToken, "a");
    assert.deepEqual(call?.output, { shout: "A" }, "the same result");
    assert.equal(fake.completeCalls.length, 1, "once");
    assert.equal(fake.failCalls.length, 0);
    assert.equal(stream.results.length, 1);
    assert.equal(second.requests[0]?.credits, 1, "the reported task's slot is free again");
    assert.deepEqual(second.results, [], "not sent on the new stream too");
  });

  test("a refused answer (FAILED_PRECONDITION) is logged, not retried", LIMIT, async () => {
    fake.add(task("a"));
    const message = "the task was handed to another worker";
    fake.streamAnswers.set("a", { code: Code.FailedPrecondition, message });
    const { worker, running } = await startWorker(() => ({ late: true }));
    await within(5_000, "the warning", lines.wait(/task result refused: its lease is gone/));
    await stopWorker(worker, running);

    const warning = lines.seen.find((line) => /lease is gone/.test(line.message));
    assert.equal(warning?.level, "warn");
    assert.equal(warning?.fields["code"], "FAILED_PRECONDITION");
    assert.equal(warning?.fields["error"], message);
    assert.equal(warning?.fields["workflowId"], "wf-a");
    assert.equal(fake.completeCalls.length, 0, "not reported again by call");
    assert.equal(fake.failCalls.length, 0);
    assert.equal((await firstStream()).results.length, 1, "nor on the stream");
    assert.ok(!lines.seen.some((line) => /task completed/.test(line.message)));
  });

  test("an output refused (INVALID_ARGUMENT) fails the task by FailTask", LIMIT, async () => {
    fake.add(task("a"));
    fake.streamAnswers.set("a", { code: Code.InvalidArgument, message: "output: too large" });
    const { worker, running } = await startWorker(() => ({ huge: "..." }));
    await fake.until("the FailTask call", () => fake.failCalls.length === 1);
    await stopWorker(worker, running);

    const [call] = fake.failCalls;
    assert.equal(call?.taskToken, "a");
    assert.equal(call?.error, "the server refused the task's output: output: too large");
    assert.equal(call?.nonRetryable, true);
    assert.equal(fake.completeCalls.length, 0, "the output is not sent again");
    assert.ok(lines.seen.some((line) => /task output refused/.test(line.message)));
  });

  test("a result over 1 MiB goes by CompleteTask, its credit on the stream", LIMIT, async () => {
    fake.add(task("a"));
    const big = "x".repeat(1024 * 1024 + 1);
    const { worker, running } = await startWorker(() => ({ big }));
    await fake.until("the CompleteTask call", () => fake.completeCalls.length === 1);
    await stopWorker(worker, running);

    assert.equal(fake.completeCalls[0]?.taskToken, "a");
    assert.equal((fake.completeCalls[0]?.output as { big?: string }).big?.length, big.length);
    const stream = fake.streams[0]!;
    assert.deepEqual(stream.results, [], "a message this large could break the stream");
  });

  test("after stop() (a half-closed stream) a result goes by CompleteTask", LIMIT, async () => {
    fake.add(task("a"));
    const started = deferred();
    const gate = deferred();
    const { worker, running } = await startWorker(async () => {
      started.resolve();
      await gate.promise;
      return { after: "stop" };
    });
    await within(5_000, "the handler to start", started.promise);
    const stream = await firstStream();
    const stopping = worker.stop(5_000);
    await fake.until("the half-close", () => stream.halfClosed);
    gate.resolve();
    await within(5_000, "stop() to return", stopping);
    await running;

    assert.deepEqual(
      fake.completeCalls.map((c) => [c.taskToken, c.output]),
      [["a", { after: "stop" }]],
    );
    assert.deepEqual(stream.results, [], "nothing on the half-closed stream");
    assert.ok(stream.ended);
  });

  test("stop() waits for the answer, or for the call when none comes", LIMIT, async () => {
    fake.add(task("a"));
    // The fake ends a half-closed stream once each task has a result, answered or not.
    fake.streamAnswers.set("a", "never");
    const { worker, running } = await startWorker(() => ({ n: 1 }));
    const stream = await firstStream();
    await fake.until("the result on the stream", () => stream.results.length === 1);
    await stopWorker(worker, running);

    assert.ok(stream.ended);
    assert.deepEqual(
      fake.completeCalls.map((c) => [c.taskToken, c.output]),
      [["a", { n: 1 }]],
      "reported by call before stop() returned",
    );
  });
});
